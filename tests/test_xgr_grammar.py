"""Differential test: the exact EBNF grammars (compiled by xgrammar) accept and reject the same answers
as the own character-level grammar (text4seg.decoding.constrain.make_grammar), for every scheme."""

from __future__ import annotations

import random

import numpy as np
import pytest

from text4seg import decode, encode, wrap
from text4seg.decoding.constrain import make_grammar
from text4seg.descriptors import get_scheme
from text4seg.descriptors.codec import answer_ebnf
from text4seg.descriptors.compact_grammar import COMPACT_ANY_ORDER_MAX
from text4seg.descriptors.ebnf import ebnf_literal

xgr = pytest.importorskip("xgrammar")

SCHEMES = ("rrle", "irle", "full", "compact")
SIZE = (3, 4)
LABELS = ["cat", "ca", 'a "b\\']  # a label that is a prefix of another; quote and backslash escaped
ALPHABET = sorted(set("".join(LABELS) + "others *|\n<>/-:,=0123456789seg é"))


@pytest.fixture(scope="module")
def compiler():
    vocab = ["</s>", *ALPHABET]
    info = xgr.TokenizerInfo(vocab, xgr.VocabType.RAW, stop_token_ids=[0])
    return xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)


def _pair(compiler, scheme, size=SIZE, labels=LABELS):
    own = make_grammar(scheme, size, labels)
    compiled = compiler.compile_grammar(answer_ebnf(scheme, size, labels))

    def lib(text: str) -> bool:
        m = xgr.GrammarMatcher(compiled)
        return m.accept_string(text) and m.is_completed()

    return own, lib


def _plain_free(text: str) -> bool:
    """Free text without '<' and non-ASCII characters (where the grammars differ on purpose, see ebnf)."""
    free = text.split("<seg>", 1)[0]
    return "<" not in free and free.isascii()


def _random_grid(rng: random.Random, size, labels) -> np.ndarray:
    rows, cols = size
    g = np.full((rows, cols), "others", dtype=object)
    for _ in range(rng.randint(0, 4)):
        r0, c0 = rng.randrange(rows), rng.randrange(cols)
        g[r0 : rng.randint(r0 + 1, rows), c0 : rng.randint(c0 + 1, cols)] = rng.choice(labels)
    return g.astype(str)


def _random_walk(own, rng: random.Random) -> str:
    """An answer of the own grammar: a free prefix without '<', then a random walk of the block that
    takes a random allowed character, or (one time in three) one that lowers the cost to finish."""
    text = "".join(rng.choice("ab .\n") for _ in range(rng.randint(0, 12))) + "<seg>"
    s = own.advance(own.start(), text)
    while s.phase != 4:
        nxt = [(c, own.step(s, c)) for c in ALPHABET]
        nxt = [(c, e) for c, e in nxt if e is not None]
        if rng.random() < 1 / 3:
            best = min(own.cost(e) for _, e in nxt)
            nxt = [(c, e) for c, e in nxt if own.cost(e) == best]
        c, s = rng.choice(nxt)
        text += c
    return text


def _edits(text: str, rng: random.Random, n: int) -> list[str]:
    """``n`` random one-character deletions, insertions and substitutions of ``text``."""
    out = []
    for _ in range(n):
        i = rng.randrange(len(text))
        kind = rng.randrange(3)
        c = rng.choice(ALPHABET)
        out.append(text[:i] + text[i + 1 :] if kind == 0 else text[:i] + c + text[i + (kind == 2) :])
    return out


@pytest.mark.parametrize("scheme", SCHEMES)
def test_both_grammars_agree_on_random_walks_their_prefixes_and_edits(compiler, scheme):
    own, lib = _pair(compiler, scheme)
    rng = random.Random(scheme)
    for _ in range(40):
        text = _random_walk(own, rng)
        assert own.accepts(text) and lib(text), text
        assert decode(text, SIZE, scheme, strict=True).grid.shape == SIZE
        for cut in range(len(text)):  # every proper prefix is incomplete for both
            assert not own.accepts(text[:cut]) and not lib(text[:cut])
        for bad in _edits(text, rng, 25):
            if _plain_free(bad):
                assert own.accepts(bad) == lib(bad), bad


@pytest.mark.parametrize("scheme", SCHEMES)
def test_both_grammars_accept_random_well_formed_encodings(compiler, scheme):
    own, lib = _pair(compiler, scheme)
    rng = random.Random(1)
    for _ in range(60):
        text = "Sure, here.\n" + wrap(encode(_random_grid(rng, SIZE, LABELS), scheme))
        assert own.accepts(text) and lib(text), text
        longest = len("<seg></seg>") + get_scheme(scheme).budget(*SIZE, LABELS).most
        assert len(text) - len("Sure, here.\n") <= longest


DOG = "dog"
MALFORMED = {  # the malformed families of tests/test_codec.py and tests/test_compact.py (4 x 4, "dog")
    "rrle": [
        "others *4\n others *1| dog *2| others *1\n others *1| dog *x\n others *4\n",  # bad count
        "others *4\n others *1| dog *2| others *2\n others *1| dog *3\n others *4\n",  # row sum 5
        "others *4\n others *1| dog *2\n others *1| dog *3\n others *4\n",  # row sum 3
        "others *4\n others *4\n others *4\n",  # missing row
        "others *4\n others *4\n others *4\nothers *4\n",  # row without its space
        "others *4\n others *1| dog*3\n others *4\n others *4\n",  # no space before *
        "others *4\n others *4\n others *4\n others *4\n others *4\n",  # extra row
        "others *04\n others *4\n others *4\n others *4\n",  # leading zero
        "others *2|others *2\n others *4\n others *4\n others *4\n",  # bad run separator
        "others *2, others *2\n others *4\n others *4\n others *4\n",  # unknown separator
        "others *4\n others *4\n others *4\n others *4",  # no final newline
        "cat *4\n others *4\n others *4\n others *4\n",  # label not allowed
        "",  # empty block
    ],
    "full": [
        "others| others| others| others\n others| dog| dog\n others| others| others| others\n"
        " others| others| others| others\n",  # short row
        "others| others| others| others| others\n others| others| others| others\n"
        " others| others| others| others\n others| others| others| others\n",  # long row
        "others| others| others| others\n others| others| others| others\n",  # missing rows
        "others|others| others| others\n others| others| others| others\n"
        " others| others| others| others\n others| others| others| others\n",  # bad separator
    ],
    "compact": [
        "dog\n2:1-3\n1:1-2\n",  # rows must ascend
        "dog\n1:2-1\n",  # backwards span
        "dog\n1:1-4\n",  # column beyond the grid
        "dog\n1:1=2\n",  # unknown label index
        "dog\n1: 1\n",  # a space is not canonical
        "dog\n1:1\n7:0\n",  # row beyond the grid
        "dog\n1:01\n",  # leading zero
        "dog| dog\n1:1\n",  # a label twice
        "dog\n1:1,1\n",  # overlapping spans
        "dog\n1:1\n1:2\n",  # a row written twice
        "others\n1:1\n",  # rows after the empty label line
        "dog\n1:1",  # no final newline
        "dog\n1:1=1\n",  # label index 1 is written without =
    ],
}
MALFORMED["irle"] = [
    "others *5| dog *2| others *2| dog *3| others *3\n",  # 15 cells
    "others *5| dog *2| others *2| dog *3| others *5\n",  # 17 cells
    "others *5| dog *2| others *2| dog *3| others *4",  # no final newline
    "others *5| dog *2| others *2\n dog *3| others *4\n",  # two rows
    "others *5| dog *2| others *2| dog *3| others *04\n",  # leading zero
]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_both_grammars_reject_every_malformed_family(compiler, scheme):
    own, lib = _pair(compiler, scheme, 4, [DOG])
    for body in MALFORMED[scheme]:
        for text in ("Sure." + wrap(body), "<seg>" + body, "Sure." + wrap(body) + "<seg>"):
            assert not own.accepts(text) and not lib(text), text
        if "cat" not in body:  # the decoder does not know the allowed labels; the rest it rejects too
            with pytest.raises(ValueError):
                decode(wrap(body), 4, scheme, strict=True)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_both_grammars_agree_on_every_one_character_edit_of_an_answer(compiler, scheme):
    own, lib = _pair(compiler, scheme, 4, [DOG])
    grid = np.full((4, 4), "others", dtype=object)
    grid[1:3, 1:3] = DOG
    text = "Ok " + wrap(encode(grid.astype(str), scheme))
    assert own.accepts(text) and lib(text)
    for i in range(len(text)):
        for c in ["", *ALPHABET]:
            for bad in (text[:i] + c + text[i + 1 :], text[:i] + c + text[i:]):
                if _plain_free(bad):
                    assert own.accepts(bad) == lib(bad), (i, c, bad)


def test_free_text_is_bounded_ascii_without_angle_brackets(compiler):
    compiled = compiler.compile_grammar(answer_ebnf("rrle", 1, [], max_free=5))
    for free, ok in (("", True), ("abcde", True), ("abcdef", False), ("a<b", False), ("é", False)):
        m = xgr.GrammarMatcher(compiled)
        assert (m.accept_string(free + "<seg>others *1\n</seg>") and m.is_completed()) == ok, free


def test_compact_with_many_labels_keeps_the_given_order_and_stays_strictly_decodable(compiler):
    labels = [f"l{i}" for i in range(COMPACT_ANY_ORDER_MAX + 1)]
    own, lib = _pair(compiler, "compact", 4, labels)
    rng = random.Random(5)
    for _ in range(40):
        text = _random_walk(own, rng)
        head = text.split("<seg>", 1)[1].split("\n", 1)[0].split("| ")
        assert lib(text) == (head == sorted(head)), text  # a subset of the own grammar: sorted heads
        if lib(text):
            decode(text, 4, "compact", strict=True)


def test_rrle_grammar_is_the_worked_example_of_the_module_docstring():
    import text4seg.descriptors.ebnf as ebnf

    doc = ebnf.__doc__.split("Worked example")[1].split("::\n\n", 1)[1].split("\n\naccepts")[0]
    expected = "\n".join(line.strip() for line in doc.splitlines()).replace("\\\\", "\\") + "\n"
    assert answer_ebnf("rrle", (2, 3), ["cat"]) == expected


def test_ebnf_literal_escapes_quotes_backslashes_and_control_characters():
    assert ebnf_literal('a"b\\c\nd\x01') == '"a\\"b\\\\c\\nd\\u0001"'


def test_unknown_scheme_names_the_registered_ones():
    with pytest.raises(ValueError, match="'zigzag'.*'rrle'"):
        answer_ebnf("zigzag", 4)
