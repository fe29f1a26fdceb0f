"""The descriptor grammar, its token-level processor and the regex form."""

from __future__ import annotations

import re

import numpy as np
import pytest

from text4seg import SCHEMES, decode, encode, mask_to_grid, wrap
from text4seg.decoding.constrain import (
    DescriptorLogitsProcessor,
    TokenTable,
    descriptor_regex,
    make_grammar,
)
from text4seg.descriptors import SEG_CLOSE, SEG_OPEN, get_scheme
from text4seg.descriptors.grammar import END

torch = pytest.importorskip("torch")


def _answer(scheme="rrle", label="red circle", size=4):
    m = np.zeros((size, size), bool)
    m[1:3, 1:4] = True
    return "Sure, here it is.\n" + wrap(encode(mask_to_grid(m, size, labels=label), scheme))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_grammar_accepts_encoded_answers(scheme):
    g = make_grammar(scheme, 4, ["red circle"])
    assert g.accepts(_answer(scheme))
    assert g.accepts(wrap(encode(np.full((4, 4), "red circle"), scheme)))  # object fills the grid


@pytest.mark.parametrize(
    "bad",
    [
        "<seg>others *4\n others *4\n others *4\n</seg>",  # 3 rows of 4
        "<seg>others *3\n others *4\n others *4\n others *4\n</seg>",  # row sums to 3
        "<seg>others *5\n others *4\n others *4\n others *4\n</seg>",  # overflow
        "<seg>dog *4\n others *4\n others *4\n others *4\n</seg>",  # label not allowed
        "<seg>others *04\n others *4\n others *4\n others *4\n</seg>",  # leading zero
        "<seg>others *4\nothers *4\n others *4\n others *4\n</seg>",  # missing row space
        "<seg>others *4\n others *4\n others *4\n others *4</seg>",  # missing trailing newline
        "<seg>others *2|others *2\n others *4\n others *4\n others *4\n</seg>",  # bad run separator
    ],
)
def test_grammar_rejects_malformed_descriptors(bad):
    assert not make_grammar("rrle", 4, ["red circle"]).accepts(bad)


def test_unknown_scheme_names_the_registered_ones():
    with pytest.raises(ValueError, match="zigzag.*compact.*full.*irle.*rrle"):
        make_grammar("zigzag", 4)
    with pytest.raises(ValueError, match="zigzag.*rrle"):
        descriptor_regex("zigzag", 4)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_state_has_a_character_that_lowers_the_cost_by_one(scheme):
    # the budget guarantee: from any state the cheapest completion is walkable one character at a time
    g = make_grammar(scheme, 4, ["cat", "ca"])
    chars = "abcdefghijklmnopqrstuvwxyz *|\n<>/0123456789:-,="
    s = g.start()
    grid = np.array([["cat", "ca", "others", "others"], ["others"] * 4, ["ca"] * 4, ["cat"] * 4])
    text = "hi <se" + wrap(encode(grid, scheme))
    for c in text:
        if s.phase != END:
            nxt = [g.step(s, x) for x in chars]
            assert any(n is not None and g.cost(n) == g.cost(s) - 1 for n in nxt), s
        s = g.step(s, c)
        assert s is not None
    assert s.phase == END and g.cost(s) == 1


def test_minimum_cost_is_the_all_background_answer():
    g = make_grammar("rrle", 4, ["cat"])
    assert g.cost(g.start()) == len("<seg>cat *4\n cat *4\n cat *4\n cat *4\n</seg>") + 1


@pytest.mark.parametrize("size", [4, (3, 12), (16, 16)])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_minimum_cost_is_the_schemes_fewest_characters(scheme, size):
    labels = ["cat", "a dog"]
    rows, cols = (size, size) if isinstance(size, int) else size
    g = make_grammar(scheme, size, labels)
    fewest = get_scheme(scheme).budget(rows, cols, labels).fewest
    assert g.cost(g.start()) == len(SEG_OPEN) + fewest + len(SEG_CLOSE) + 1


CHARS = list("abcdefghijklmnopqrstuvwxyz *|\n<>/0123456789:-,=") + ["<seg>", "</seg>", "others", " *1", "| "]


def _table():
    return TokenTable([None] + CHARS, eos_ids=[0]), {t: i + 1 for i, t in enumerate(CHARS)}


def _rollout(proc, table, batch, steps, rng):
    ids = torch.zeros((batch, 3), dtype=torch.long)  # a 3-token "prompt"
    done = [False] * batch
    texts = [""] * batch
    for _ in range(steps):
        scores = torch.as_tensor(rng.normal(size=(batch, len(table.strings))), dtype=torch.float32)
        scores = proc(ids, scores)
        nxt = scores.argmax(-1)
        for i in range(batch):
            if not done[i]:
                if nxt[i].item() == 0:
                    done[i] = True
                else:
                    texts[i] += table.strings[nxt[i].item()]
        ids = torch.cat([ids, nxt[:, None]], 1)
        if all(done):
            break
    return texts, done


def _default_budget(scheme, size, labels):
    from text4seg.data.queries import Query
    from text4seg.inference.constrained import ConstrainedDecoder
    from text4seg.inference.predict import Predictor

    predictor = Predictor.__new__(Predictor)  # no model: budget() reads only these two settings
    predictor.max_new_tokens, predictor.decoder = None, ConstrainedDecoder("own")
    return predictor.budget(Query("q", "img.png", "?", labels=list(labels), grid=size, scheme=scheme))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_random_logits_always_give_strictly_parsable_answers(scheme):
    table, _ = _table()
    size, budget = 4, 160
    rng = np.random.default_rng(0)
    specs = [(scheme, size, ["cat"]), (scheme, size, ["a dog"]), (scheme, size, [])]
    proc = DescriptorLogitsProcessor(table, specs, budget)
    texts, done = _rollout(proc, table, 3, budget, rng)
    assert all(done)
    for t, (_, _, labels) in zip(texts, specs):
        res = decode(t, size, scheme, strict=True)
        assert set(res.labels) <= set(labels)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_default_budget_of_a_16x16_query_fits_the_grammar_and_gives_strict_answers(scheme):
    # the old default (rows * 16 + 64 = 320) was below what a 16x16 full answer needs: the processor raised
    table, _ = _table()
    specs = [(scheme, (16, 16), ["cat"]), (scheme, (16, 16), ["a dog", "cat"])]
    budget = max(_default_budget(*spec) for spec in specs)
    proc = DescriptorLogitsProcessor(table, specs, budget)
    texts, done = _rollout(proc, table, 2, budget, np.random.default_rng(5))
    assert all(done)
    for t, (_, size, labels) in zip(texts, specs):
        assert set(decode(t, size, scheme, strict=True).labels) <= set(labels)


def test_explicit_max_new_tokens_is_the_budget():
    from text4seg.data.queries import Query
    from text4seg.inference.constrained import ConstrainedDecoder
    from text4seg.inference.predict import Predictor

    predictor = Predictor.__new__(Predictor)
    predictor.max_new_tokens, predictor.decoder = 77, ConstrainedDecoder("own")
    assert predictor.budget(Query("q", "img.png", "?", grid=(16, 16), scheme="full")) == 77


def test_tight_budget_forces_the_block_early():
    table, _ = _table()
    g = make_grammar("rrle", 4, [])
    need = g.cost(g.start())
    proc = DescriptorLogitsProcessor(table, [("rrle", 4, [])], need)
    texts, done = _rollout(proc, table, 1, need, np.random.default_rng(1))
    assert done[0] and decode(texts[0], 4, strict=True).is_empty


def test_free_text_is_cut_after_max_free_tokens():
    table, _ = _table()
    proc = DescriptorLogitsProcessor(table, [("rrle", 4, [])] * 2, 400, max_free_tokens=3)
    ids = torch.zeros((2, 1), dtype=torch.long)
    rng = np.random.default_rng(2)
    for _ in range(8):  # 3 free tokens, then at most 5 tokens spell "<seg>"
        scores = proc(ids, torch.as_tensor(rng.normal(size=(2, len(table.strings))), dtype=torch.float32))
        ids = torch.cat([ids, scores.argmax(-1)[:, None]], 1)
    for row in ids[:, 1:].tolist():
        assert "<seg>" in "".join(table.strings[i] for i in row)


def test_budget_below_minimum_is_a_clear_error():
    table, _ = _table()
    with pytest.raises(ValueError, match="max_new_tokens=5"):
        DescriptorLogitsProcessor(table, [("rrle", 16, [])], 5)


def test_regex_matches_encoded_answers_and_rejects_wrong_labels():
    rx = re.compile(descriptor_regex("rrle", 4, ["red circle"]))
    assert rx.fullmatch(_answer())
    assert not rx.fullmatch(_answer(label="dog"))
    full = re.compile(descriptor_regex("full", 4, ["red circle"]))
    assert full.fullmatch(_answer("full"))


def test_per_request_processor_gives_strictly_parsable_answers():
    from text4seg.decoding.constrain import RequestLogitsProcessor

    table, _ = _table()
    proc = RequestLogitsProcessor(table, "rrle", 4, ["cat"], max_new_tokens=100)
    rng = np.random.default_rng(4)
    toks: list[int] = []
    for _ in range(100):
        logits = proc(toks, torch.as_tensor(rng.normal(size=len(table.strings)), dtype=torch.float32))
        t = int(logits.argmax())
        if t == 0:
            break
        toks.append(t)
    assert t == 0
    assert set(decode("".join(table.strings[i] for i in toks), 4, strict=True).labels) <= {"cat"}


def test_token_table_keeps_plain_added_tokens_and_drops_special_ones():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AddedToken, PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(["<eos>", *"abcdefghijklmnopqrstuvwxyz |*\n<>/0123456789"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    fast.add_tokens([AddedToken("| cat", special=False), AddedToken("<|im_start|>", special=True)])
    table = TokenTable.from_tokenizer(fast)
    ids = fast.convert_tokens_to_ids(["| cat", "<|im_start|>"])
    assert table.strings[ids[0]] == "| cat"  # a one-token cell stays usable by the grammar
    assert table.strings[ids[1]] is None
