"""COCO run-length encoding (RLE) of binary masks: the one pair of helpers of the whole project.

JSON form (what built rows store in ``text4seg.gt.masks`` and results files in ``coarse``/``refined``)::

    {"size": [height, width], "counts": "<compressed string>"}

``counts`` is pycocotools' compressed string (column-major runs, starting with background) as ``str``.
Worked example: the 2 x 3 mask ``[[0, 1, 1], [0, 1, 0]]`` read column-major is ``0 0 1 1 1 0``: runs
``[2, 3, 1]`` (background first), which pycocotools compresses to ``{"size": [2, 3], "counts": "231"}``.
:func:`rle_to_mask` also accepts ``bytes`` counts and uncompressed ``list`` counts (the form COCO uses
for crowd annotations).
pycocotools is imported lazily (extra ``data``).
"""

from __future__ import annotations

import re
from itertools import accumulate, compress

import numpy as np

from text4seg._lazy import require
from text4seg.data.images import check_image_size


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO RLE ``{"size": [h, w], "counts": str}`` of an ``(H, W)`` bool mask (pycocotools)."""
    mask_util = require("pycocotools.mask")
    m = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) mask, got shape {m.shape}")
    return rle_to_json(mask_util.encode(m))


def check_rle(rle, where: str = "rle") -> tuple[int, int]:
    """``(height, width)`` of a COCO RLE after checking its form, before anything is allocated.

    ``size`` must be ``[height, width]`` within :func:`text4seg.data.images.check_image_size`'s limits;
    ``counts`` a ``str``/``bytes`` (compressed, ASCII) whose runs cover exactly ``height * width`` pixels
    (pycocotools' decoder writes past the mask otherwise), or a list of non-negative ints summing to it.
    ``ValueError`` quoting the bad value, prefixed with ``where`` (file, line, id and
    field of the caller).
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(
            f"{where}: expected a COCO RLE {{'size': [h, w], 'counts': ...}}, got {str(rle)[:80]!r}"
        )
    size = rle["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"{where}.size: expected [height, width], got {str(size)[:80]!r}")
    h, w = check_image_size(size[0], size[1], f"{where}.size")
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        if isinstance(counts, str):
            raw = counts.encode("ascii") if counts.isascii() else b"\x00"  # not ASCII: refused below
        else:
            raw = counts
        if _compressed_total(raw, h * w) != h * w:
            raise ValueError(f"{where}.counts: the compressed runs do not cover size {h}x{w}")
    elif isinstance(counts, list):
        if not all(type(c) is int and c >= 0 for c in counts):
            bad = next(c for c in counts if not (type(c) is int and c >= 0))
            raise ValueError(
                f"{where}.counts: run lengths must be non-negative integers, got {str(bad)[:40]!r}"
            )
        if sum(counts) != h * w:
            raise ValueError(f"{where}.counts: runs sum to {sum(counts)}, size {h}x{w} needs {h * w}")
    else:
        raise ValueError(
            f"{where}.counts: expected a string or a list of run lengths, got {type(counts).__name__}"
        )
    return h, w


def rle_to_mask(rle: dict, where: str = "rle") -> np.ndarray:
    """``(H, W)`` bool mask of a COCO RLE (``counts`` as ``str``, ``bytes`` or an uncompressed list),
    checked first by :func:`check_rle` (``where`` prefixes its errors)."""
    h, w = check_rle(rle, where)
    mask_util = require("pycocotools.mask")
    counts = rle["counts"]
    if isinstance(counts, list):
        obj = mask_util.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        obj = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_util.decode(obj).astype(bool)


_ALPHABET = bytes(range(48, 48 + 64))  # "0".."o": a value's continuation bytes (c & 0x20), then a last one
_CONTINUED = bytes(range(80, 112))  # "P".."o": a continuation byte (more of the value follows)
_CONTINUATIONS = re.compile(rb"[P-o]+")
_LAST = bytes(1 if 48 <= c < 80 else 0 for c in range(256))  # 1 where a byte ends a value
# each byte of the alphabet as a signed byte: a last byte ("0".."O") its signed 5-bit value (the sign
# bit 0x10 extends), a continuation byte its low 5 bits (0..31)
_DIGIT = bytes(
    (((c - 48) & 0x1F) - (32 if c < 80 and (c - 48) & 0x10 else 0)) & 0xFF if 48 <= c < 112 else 0
    for c in range(256)
)
_NUMPY_FROM = 256  # bytes: longer strings are summed with numpy


def _compressed_total(counts: bytes, limit: int) -> int:
    """Sum of the run lengths of a pycocotools compressed counts string, decoded as its C reader does
    (``rleFrString``); -1 when a byte is outside the alphabet, a run ends early or a run is negative or
    over ``limit`` (the C decoder would write past the mask: a crash, not an error).

    The same result as the byte-by-byte reader :func:`_compressed_total_py` on every input, in C loops:
    ``bytes.translate`` checks the alphabet (and the last byte must end a value) and gives every byte's
    5-bit digit as a signed byte (``memoryview.cast``), so a value of one byte (most of them) is its
    digit; the few values of several bytes (a run of continuation bytes, found by a regex) are put
    together in Python (past 13 bytes: -1, as the byte reader); the delta coding
    (``runs[i] = x[i] + runs[i - 2]`` from ``i = 3``) is one running sum per parity. Every failure of the
    byte reader is -1 wherever it happens, so checking every run after the sums gives its verdict."""
    if counts.translate(None, _ALPHABET) or (counts and counts[-1] >= 80):
        return -1
    if len(counts) > _NUMPY_FROM:
        return _compressed_total_np(counts, limit)
    digits = memoryview(counts.translate(_DIGIT)).cast("b").tolist()
    if len(counts.translate(None, _CONTINUED)) == len(counts):
        x = digits  # every value one byte
    else:
        for m in _CONTINUATIONS.finditer(counts):
            a, b = m.span()  # continuation bytes a..b-1, the value's last byte b
            if b - a > 12:  # 14 bytes or more: 65 bits, no run of a checked size needs that many
                return -1
            value = digits[b] << (5 * (b - a))  # the signed last digit carries the sign
            for k in range(a, b):
                value |= digits[k] << (5 * (k - a))
            digits[b] = value
        x = list(compress(digits, counts.translate(_LAST)))  # each value at its last byte
    runs = x[:1]
    runs += accumulate(x[1:2] + x[3::2])
    runs += accumulate(x[2::2])
    if not runs:
        return 0
    if min(runs) < 0:
        return -1
    total = sum(runs)
    return total if total <= limit or max(runs) <= limit else -1  # runs >= 0 summing <= limit: none over


def _compressed_total_np(counts: bytes, limit: int) -> int:
    """:func:`_compressed_total` of a long string whose alphabet is checked, vectorised with numpy (the
    same sums per parity); a value over 12 bytes (60 bits, crafted input only) goes to the byte reader."""
    c = np.frombuffer(counts, dtype=np.uint8) - np.uint8(48)
    ends = ((c & 0x20) == 0).nonzero()[0]
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    length = ends - starts + 1
    if length.max() > 12:
        return _compressed_total_py(counts, limit)
    shift = 5 * (np.arange(c.size) - np.repeat(starts, length))
    x = np.add.reduceat((c & 0x1F).astype(np.int64) << shift, starts)
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.int64(1) << (5 * length[negative])  # sign extension: x |= -1 << (5 * k)
    # until the first run out of range every partial sum is exact (|x| < 2**60, runs <= limit)
    runs = x.copy()
    runs[1::2] = np.cumsum(x[1::2])
    runs[2::2] = np.cumsum(x[2::2])
    if runs.min() < 0 or runs.max() > limit:
        return -1
    return int(runs.sum()) if runs.size * limit < 2**62 else sum(runs.tolist())


def _compressed_total_py(counts: bytes, limit: int) -> int:
    """The byte-by-byte reader behind :func:`_compressed_total` (its reference and its fallback)."""
    runs: list[int] = []
    i = 0
    while i < len(counts):
        x, k, more = 0, 0, True
        while more:
            if i >= len(counts) or not 48 <= counts[i] < 48 + 64:
                return -1
            c = counts[i] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if k > 13:  # 65 bits: no run of a checked size needs that many
                return -1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if not 0 <= x <= limit:
            return -1
        runs.append(x)
    return sum(runs)


def rle_to_json(rle: dict) -> dict:
    """``{"size": [h, w], "counts": str}`` of a pycocotools RLE (``bytes`` counts become ``str``)."""
    c = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": c.decode("ascii") if isinstance(c, bytes) else c,
    }
