"""The compact scheme's constrained grammar accepts exactly strict-valid compact answers."""

import random

import numpy as np
import pytest

from text4seg import decode, encode, wrap
from text4seg.decoding.constrain import TokenTable, grammar_for, make_grammar
from text4seg.descriptors.grammar import END

LABELS = ["red circle", "red", "blue square"]


def random_grid(rng: np.random.Generator, rows: int, cols: int, labels: list[str]) -> np.ndarray:
    g = np.full((rows, cols), "others", dtype=object)
    for lab in labels:
        if rng.random() < 0.7:
            r0, c0 = rng.integers(0, rows), rng.integers(0, cols)
            g[r0 : r0 + rng.integers(1, rows + 1), c0 : c0 + rng.integers(1, cols + 1)] = lab
    return g


@pytest.mark.parametrize("size", [(16, 16), (4, 7), (32, 32), (1, 1)])
def test_grammar_accepts_every_encoded_grid(size):
    rng = np.random.default_rng(0)
    for _ in range(40):
        g = random_grid(rng, *size, LABELS)
        text = "Here you go.\n" + wrap(encode(g, "compact"))
        assert make_grammar("compact", size, LABELS).accepts(text), text


def test_grammar_rejects_what_strict_decoding_rejects():
    g = make_grammar("compact", 4, ["dog"])
    assert g.accepts("<seg>dog\n1:1-2\n2:1-3\n</seg>")
    for bad in [
        "<seg>dog\n2:1\n1:1\n</seg>",  # rows must ascend
        "<seg>dog\n1:2-1\n</seg>",  # backwards span
        "<seg>dog\n1:1-4\n</seg>",  # beyond the grid
        "<seg>dog\n1:1=2\n</seg>",  # a second label that the head does not list
        "<seg>cat\n1:1\n</seg>",  # not an allowed label
        "<seg>dog\n01:1\n</seg>",  # leading zero
        "<seg>others\n1:1\n</seg>",  # rows after an empty head
        "<seg>dog| dog\n1:1\n</seg>",  # a label twice
    ]:
        assert not g.accepts(bad), bad


def char_table() -> TokenTable:
    chars = list("0123456789:-,=| \n<>/segothrdcilbuaq.") + [
        "<seg>",
        "</seg>",
        "others",
        "red",
        " circle",
        "12",
    ]
    return TokenTable(chars + [None], eos_ids=[len(chars)])


@pytest.mark.parametrize("seed", range(20))
def test_random_walks_through_allowed_tokens_always_decode_strictly(seed):
    table = char_table()
    eos = table.eos_ids[0]
    size = (6, 9)
    g = grammar_for("compact", size, ("red", "red circle"))
    rng = random.Random(seed)
    budget = 120
    s, out = g.start(), []
    for used in range(budget):
        ids, costs = g.allowed(s, table)
        ok = [int(i) for i, c in zip(ids, costs) if c <= budget - used - 1]
        assert ok, (s, "".join(out))
        tok = rng.choice(ok)
        if tok == eos:
            break
        out.append(table.strings[tok])
        s = g.advance_token(s, tok, table)
        assert s is not None
    else:
        pytest.fail("no EOS within the budget")
    assert s.phase == END
    res = decode("".join(out), size, "compact", strict=True)
    assert set(res.labels) <= {"red circle", "red"}


def test_logits_processor_with_random_logits_gives_strict_compact_answers():
    torch = pytest.importorskip("torch")
    from text4seg.decoding.constrain import DescriptorLogitsProcessor

    table = char_table()
    eos = table.eos_ids[0]
    specs = [("compact", (5, 7), ["red circle"]), ("compact", (5, 7), ["red", "red circle"])]
    proc = DescriptorLogitsProcessor(table, specs, max_new_tokens=90)
    rng = np.random.default_rng(3)
    ids = torch.zeros((2, 2), dtype=torch.long)
    texts, done = ["", ""], [False, False]
    for _ in range(90):
        scores = proc(ids, torch.as_tensor(rng.normal(size=(2, len(table.strings))), dtype=torch.float32))
        nxt = scores.argmax(-1)
        for i in range(2):
            if not done[i]:
                done[i] = nxt[i].item() == eos
                texts[i] += "" if done[i] else table.strings[nxt[i].item()]
        ids = torch.cat([ids, nxt[:, None]], 1)
        if all(done):
            break
    assert all(done)
    for text, (_, size, labels) in zip(texts, specs):
        assert set(decode(text, size, "compact", strict=True).labels) <= set(labels)
