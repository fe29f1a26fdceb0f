"""The scheme registry: every scheme's budget, regex and grammar agree with its encoder, and a scheme
registered at run time is used by encode/decode, the grammars, the regexes, the exact EBNF and the answer
budget."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import text4seg
from text4seg.decoding.constrain import descriptor_regex, make_grammar
from text4seg.descriptors import (
    SCHEMES,
    SEG_CLOSE,
    SEG_OPEN,
    Scheme,
    get_scheme,
    max_answer_tokens,
    wrap,
)
from text4seg.descriptors.codec import answer_ebnf
from text4seg.descriptors.grammar import END

LABELS = ["cat", "a dog"]


def longest_block(scheme: str, size: tuple[int, int], labels: list[str]) -> int:
    """Characters of the longest block the scheme's grammar accepts, found by walking every state."""
    g = make_grammar(scheme, size, labels)
    alphabet = sorted(set("".join(labels)) | set("others0123456789 *|\n:-,=</seg>"))
    memo: dict = {}

    def longest(s) -> int:  # characters from s to the end of "</seg>"
        if s.phase == END:
            return 0
        if s not in memo:
            nxt = [g.step(s, c) for c in alphabet]
            memo[s] = max(1 + longest(n) for n in nxt if n is not None)
        return memo[s]

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    return longest(g.advance(g.start(), SEG_OPEN)) - len(SEG_CLOSE)


@pytest.mark.parametrize("labels", [LABELS, [], ["a", "bb", "ccc"]])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (3, 2), (4, 4)])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_budget_is_the_shortest_and_longest_block_the_grammar_accepts(scheme, size, labels):
    budget = get_scheme(scheme).budget(*size, labels)
    g = make_grammar(scheme, size, labels)
    assert budget.fewest == g.cost(g.start()) - len(SEG_OPEN) - len(SEG_CLOSE) - 1
    assert budget.most == longest_block(scheme, size, labels)


@pytest.mark.parametrize("size", [(16, 16), (5, 24), (32, 32)])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_encoded_grid_fits_the_budget_and_the_regex(scheme, size):
    rng = np.random.default_rng(7)
    budget = get_scheme(scheme).budget(*size, LABELS)
    rx = re.compile(descriptor_regex(scheme, size, LABELS))
    options = np.array(["others", *LABELS])
    for k in range(30):
        cells = rng.integers(0, 3, size) if k % 2 else np.repeat(rng.integers(0, 3, (size[0], 1)), size[1], 1)
        text = text4seg.encode(options[cells], scheme)
        assert budget.fewest <= len(text) <= budget.most
        assert rx.fullmatch("Sure.\n" + wrap(text))
    assert not rx.fullmatch(wrap(text4seg.encode(np.full(size, "a fish"), scheme)))


def test_answer_budget_adds_the_sentence_the_tags_and_eos():
    most = get_scheme("full").budget(16, 16, ["cat"]).most
    assert max_answer_tokens("full", 16, ["cat"], max_free=64) == 64 + len("<seg></seg>") + most + 1


def test_answer_budget_counts_labels_in_utf8_bytes():
    # a byte-level token may hold one byte of a character: "東京の猫 *1\n" is 16 bytes
    assert max_answer_tokens("rrle", 1, ["東京の猫"], max_free=0) == len("<seg></seg>") + 16 + 1
    assert max_answer_tokens("compact", 2, ["é"]) > max_answer_tokens("compact", 2, ["e"])


def test_a_registered_scheme_is_used_everywhere(monkeypatch):
    # what a new scheme module provides (here borrowed from full, the calls recorded)
    calls = []
    full = SCHEMES["full"]

    def encode(grid) -> str:
        calls.append("encode")
        return full.encode(grid)

    def grammar(rows, cols, labels=()):
        calls.append("grammar")
        return full.grammar(rows, cols, labels)

    def ebnf(rows, cols, labels=(), max_free=256):
        calls.append("ebnf")
        return full.ebnf(rows, cols, labels, max_free)

    toy = Scheme(
        doc="toy: full length",
        encode=encode,
        lenient=full.lenient,
        strict=full.strict,
        grammar=grammar,
        regex=full.regex,
        budget=full.budget,
        ebnf=ebnf,
    )
    monkeypatch.setitem(SCHEMES, "toy", toy)
    g = np.array([["cat", "others"], ["others", "cat"]])
    text = text4seg.encode(g, "toy")
    assert (text4seg.decode(wrap(text), 2, "toy", strict=True).grid == g).all()
    assert make_grammar("toy", 2, ["cat"]).accepts(wrap(text))
    assert re.fullmatch(descriptor_regex("toy", 2, ["cat"]), wrap(text))
    assert max_answer_tokens("toy", 2, ["cat"]) == max_answer_tokens("full", 2, ["cat"])
    assert answer_ebnf("toy", 2, ["cat"], 8) == answer_ebnf("full", 2, ["cat"], 8)
    assert calls == ["encode", "grammar", "ebnf"]
    with pytest.raises(ValueError, match=r"'zip'.*'toy'"):
        text4seg.encode(g, "zip")
