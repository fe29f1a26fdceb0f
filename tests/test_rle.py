"""The compressed-RLE check (`text4seg.data.rle._compressed_total`): the table/numpy reader gives the
byte-by-byte reader's result (the C reader's sums, -1 where pycocotools would write past the mask) on
real, mutated and random strings, short and long."""

import random

import numpy as np
import pytest

from text4seg.data.rle import _compressed_total, _compressed_total_py, check_rle, mask_to_rle

pytest.importorskip("pycocotools")


def _mutations(raw: bytes, rng: random.Random, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        b = bytearray(raw)
        op = rng.randrange(5)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(40, 120)  # in and out of the alphabet
        elif op == 1:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(48, 112))
        elif op == 2 and b:
            del b[rng.randrange(len(b))]
        elif op == 3:
            b[rng.randrange(len(b) + 1) :] = bytes([48 + 0x20] * rng.randrange(1, 16)) + b"0"  # long value
        else:
            b += bytes(rng.randrange(48, 112) for _ in range(rng.randrange(1, 20)))
        out.append(bytes(b))
    return out


def test_the_fast_rle_check_equals_the_byte_reader_on_real_mutated_and_random_strings():
    rng = random.Random(0)
    checked = 0
    for t in range(400):
        h, w = rng.randint(1, 90), rng.randint(1, 90)
        mask = np.random.default_rng(t).random((h, w)) < rng.random()
        raw = mask_to_rle(mask)["counts"].encode()
        assert _compressed_total(raw, h * w) == _compressed_total_py(raw, h * w) == h * w
        for b in [raw, *_mutations(raw, rng, 8)]:
            for limit in (h * w, h * w - 1, 2**26):
                assert _compressed_total(b, limit) == _compressed_total_py(b, limit), (b, limit)
                checked += 1
    for _ in range(3000):
        size = rng.choice([rng.randrange(0, 40), rng.randrange(250, 600)])  # both readers
        b = bytes(rng.choice([rng.randrange(48, 112), rng.randrange(80, 112), 80, 96]) for _ in range(size))
        for limit in (0, 1, 100, 2**26, 2**40):
            assert _compressed_total(b, limit) == _compressed_total_py(b, limit), (b, limit)
    assert checked > 10_000


def test_long_rle_strings_are_checked_exactly_like_short_ones():
    rng = random.Random(1)
    mask = np.random.default_rng(1).random((200, 300)) < 0.5
    raw = mask_to_rle(mask)["counts"].encode()
    assert len(raw) > 1000
    assert check_rle({"size": [200, 300], "counts": raw.decode()}) == (200, 300)
    for b in _mutations(raw, rng, 200):
        for limit in (60_000, 59_999):
            assert _compressed_total(b, limit) == _compressed_total_py(b, limit)
    with pytest.raises(ValueError, match="do not cover size 200x301"):
        check_rle({"size": [200, 301], "counts": raw.decode()}, "f.jsonl:3")
