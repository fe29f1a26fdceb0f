"""The xgrammar logits processors: random logits always give strictly decodable answers within the
default budget (tiny and real Qwen vocabularies), and the compiled-grammar cache stays within its cap."""

from __future__ import annotations

import numpy as np
import pytest

from text4seg import decode
from text4seg.descriptors import max_answer_tokens

xgr = pytest.importorskip("xgrammar")
torch = pytest.importorskip("torch")

from text4seg.decoding.xgr import XgrBackend, XgrLogitsProcessor, XgrRequestProcessor  # noqa: E402

SCHEMES = ("rrle", "irle", "full", "compact")
PIECES = [*"abcdefghijklmnopqrstuvwxyz *|\n<>/-:,=0123456789"]
PIECES += ["<seg>", "</seg>", "others", " *1", "| ", "cat", "dog", "\n ", "12", ":0-", "a dog"]
PIECES += [
    ">a",
    "g>o",
    "eg>c",
    "<seg>d",
    "x<seg>",
    "x<seg>o",
    "<s",
    "<se",
    "seg>",
    ">1",
    ">\n",
]  # run past <seg>


@pytest.fixture(scope="module")
def tiny():
    strings = ["</s>", *PIECES]
    info = xgr.TokenizerInfo(strings, xgr.VocabType.RAW, stop_token_ids=[0])
    return XgrBackend(info), strings


def _rollout(proc, width, steps, batch, rng, eos_ids):
    ids = torch.zeros((batch, 3), dtype=torch.long)  # a 3-token "prompt"
    done = [False] * batch
    out: list[list[int]] = [[] for _ in range(batch)]
    for _ in range(steps):
        scores = proc(ids, torch.as_tensor(rng.normal(size=(batch, width)), dtype=torch.float32))
        nxt = scores.argmax(-1)
        for i in range(batch):
            if not done[i]:
                t = int(nxt[i])
                done[i] = t in eos_ids
                if not done[i]:
                    out[i].append(t)
        ids = torch.cat([ids, nxt[:, None]], 1)
        if all(done):
            break
    return out, done


@pytest.mark.parametrize("scheme", SCHEMES)
def test_random_logits_give_strictly_decodable_answers_within_the_default_budget_tiny_vocab(tiny, scheme):
    backend, strings = tiny
    specs = [(scheme, 4, ["cat"]), (scheme, 4, ["a dog", "cat"]), (scheme, 4, [])]
    proc = XgrLogitsProcessor(backend, specs)
    assert proc.max_new_tokens == max(max_answer_tokens(s, z, lab) for s, z, lab in specs)
    rng = np.random.default_rng(0)
    for _ in range(3):
        proc = XgrLogitsProcessor(backend, specs)
        answers, done = _rollout(proc, len(strings) + 5, proc.max_new_tokens, 3, rng, {0})
        assert all(done)
        for toks, (_, _, labels) in zip(answers, specs):
            res = decode("".join(strings[t] for t in toks), 4, scheme, strict=True)
            assert set(res.labels) <= set(labels)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_random_logits_give_strictly_decodable_answers_on_the_real_qwen_vocabulary(scheme):
    from support.tiny_qwen import qwen_tokenizer_fast

    tok = qwen_tokenizer_fast()
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    backend = XgrBackend(tok, vocab_size=152064, stop_token_ids=[eos])
    specs = [(scheme, 4, ["red circle"]), (scheme, (2, 3), ["cat", "東京の猫"])]  # byte tokens split 東
    proc = XgrLogitsProcessor(backend, specs, max_free_chars=32)
    answers, done = _rollout(proc, 152064, proc.max_new_tokens, 2, np.random.default_rng(1), {eos})
    assert all(done)
    for toks, (_, size, labels) in zip(answers, specs):
        assert len(toks) < proc.max_new_tokens
        res = decode(tok.decode(toks), size, scheme, strict=True)
        assert set(res.labels) <= set(labels)


def test_per_request_processor_gives_strictly_decodable_answers(tiny):
    backend, strings = tiny
    proc = XgrRequestProcessor(backend, "rrle", 4, ["cat"])
    rng = np.random.default_rng(4)
    toks: list[int] = []
    for _ in range(proc.max_new_tokens):
        t = int(proc(toks, torch.as_tensor(rng.normal(size=len(strings)), dtype=torch.float32)).argmax())
        if t == 0:
            break
        toks.append(t)
    assert t == 0
    assert set(decode("".join(strings[i] for i in toks), 4, strict=True).labels) <= {"cat"}


def test_finished_rows_are_left_alone(tiny):
    backend, strings = tiny
    proc = XgrLogitsProcessor(backend, [("rrle", 1, [])] * 2, max_free_chars=0)
    seq = [strings.index(x) for x in ("<seg>", "others", " *1", "\n", "</seg>")]
    ids = torch.zeros((2, 1), dtype=torch.long)
    for t in [*seq, 0]:
        proc(ids, torch.zeros((2, len(strings))))
        ids = torch.cat([ids, torch.tensor([[t], [t]])], 1)
    scores = torch.randn(2, len(strings))
    assert torch.equal(proc(ids, scores.clone()), scores)  # after EOS nothing is masked


def test_a_budget_below_the_longest_answer_is_a_clear_error(tiny):
    backend, _ = tiny
    need = max_answer_tokens("rrle", 16, ["cat"])
    with pytest.raises(ValueError, match=f"max_new_tokens=100 is below the {need} tokens"):
        XgrLogitsProcessor(backend, [("rrle", 16, ["cat"])], max_new_tokens=100)
    assert (
        XgrLogitsProcessor(backend, [("rrle", 16, ["cat"])], 100, allow_short_budget=True).max_new_tokens
        == 100
    )


def test_compiled_grammar_cache_never_grows_beyond_its_cap(tiny):
    backend = XgrBackend(tiny[0].info, cache_size=3)
    first = backend.compiled("rrle", 4, ["label 0"])
    for i in range(1, 50):
        backend.compiled("rrle", 4, [f"label {i}"])
        backend.compiled("rrle", 4, ["label 0"])  # kept: recently used
        assert len(backend) <= 3
    assert backend.compiled("rrle", 4, ["label 0"]) is first
    assert backend.compiles == 50  # every other label compiled once, label 0 never again


def test_importing_text4seg_imports_no_xgrammar():
    import subprocess
    import sys

    code = "import sys, text4seg, text4seg.descriptors; print('xgrammar' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_numpy_mask_application_equals_xgrammars_kernel(dtype):
    from text4seg.decoding.xgr import _apply

    gen = torch.Generator().manual_seed(0)
    vocab, width, rows = 100, 104, [0, 2]  # logits padded beyond the vocabulary; row 1 unconstrained
    bitmask = torch.randint(-(2**31), 2**31 - 1, (3, 4), dtype=torch.int32, generator=gen)
    scores = torch.randn(3, width, generator=gen).to(getattr(torch, dtype))
    ref = scores.clone()
    ref[rows, vocab:] = float("-inf")
    xgr.apply_token_bitmask_inplace(ref, bitmask, vocab_size=vocab, indices=rows)
    _apply(scores, bitmask, rows, vocab)
    assert torch.equal(scores, ref)


def _masks_along(backend_a, backend_b, scheme, size, labels, tokens, max_free_chars=64):
    """Both backends' masks at every step of ``tokens`` (must be accepted by both)."""
    rows = [be.row(scheme, size, labels, max_free_chars) for be in (backend_a, backend_b)]
    bm = xgr.allocate_token_bitmask(2, backend_a.info.vocab_size)
    for t in tokens:
        for i, row in enumerate(rows):
            row.fill(bm, i)
        assert torch.equal(bm[0], bm[1]), t
        alive = [row.accept(t) for row in rows]
        assert alive[0] == alive[1]
        if not alive[0]:
            assert t in backend_a.info.stop_token_ids  # the walk ends with EOS, never with a rejection
            return
    raise AssertionError("the token walk did not end with EOS")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_split_decoding_masks_equal_the_whole_answer_grammars_masks_tiny_vocab(tiny, scheme):
    # random walks through the whole-answer grammar's masks, with tokens that run past "<seg>"
    info, strings = tiny[0].info, tiny[1]
    split, whole = XgrBackend(info, split=True), XgrBackend(info, split=False)
    rng = np.random.default_rng(3)
    past = {i for i, t in enumerate(strings) if t in (">a", "g>o", "eg>c", "<seg>d", "x<seg>o", ">1", ">\n")}
    used = 0
    for n in range(24):
        labels = ["a dog", "cat"][: n % 3]
        row = whole.row(scheme, 3, labels, 8)
        bm = xgr.allocate_token_bitmask(1, info.vocab_size)
        tokens = []
        while True:
            row.fill(bm, 0)
            allowed = np.flatnonzero(
                np.unpackbits(bm.numpy().view(np.uint8), bitorder="little")[: len(strings)]
            )
            t = int(rng.choice(allowed))
            tokens.append(t)
            if not row.accept(t):
                break
        _masks_along(split, whole, scheme, 3, labels, tokens, 8)
        used += bool(past & set(tokens))
    assert used  # some walks wrote a token that runs past "<seg>"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_split_decoding_masks_equal_the_whole_answer_grammars_masks_qwen(scheme):
    from support.tiny_qwen import qwen_tokenizer_fast

    from text4seg import encode, wrap

    tok = qwen_tokenizer_fast()
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    split = XgrBackend(tok, vocab_size=152064, stop_token_ids=[eos], split=True)
    whole = XgrBackend(split.info, split=False)
    for label in ("a dog", "others", "1 cat"):  # Qwen writes "<seg>a dog" as "<", "seg", ">a", " dog"
        g = np.full((3, 4), "others", dtype=object)
        g[1:, 1:3] = label
        text = "Sure:" + wrap(encode(g.astype(str), scheme))
        _masks_along(split, whole, scheme, (3, 4), [label], [*tok.encode(text), eos])


def test_a_batch_of_new_labels_is_compiled_before_the_first_step_and_no_step_compiles(tiny):
    backend = XgrBackend(tiny[0].info, compile_threads=4)
    specs = [("rrle", 4, [f"new label {i}"]) for i in range(6)]
    proc = XgrLogitsProcessor(backend, specs)
    assert backend.compiles == 6  # side by side on the compile threads, before generation starts
    for i in range(6):  # which tokens running past "<seg>" may start each block: decided already
        assert set(backend.block("rrle", 4, [f"new label {i}"])._starts) >= set(backend.tails())
    _rollout(proc, len(tiny[1]) + 5, 40, 6, np.random.default_rng(5), {0})
    assert backend.compiles == 6


@pytest.mark.parametrize("background", [False, True])
def test_grammars_compiled_side_by_side_give_the_masks_of_grammars_compiled_one_by_one(tiny, background):
    info, strings = tiny[0].info, tiny[1]
    specs = [(s, 3, labels) for s in SCHEMES for labels in (["a dog", "cat"], ["cat"])]
    one = XgrLogitsProcessor(XgrBackend(info, compile_threads=1), specs)
    many = XgrLogitsProcessor(XgrBackend(info, compile_threads=4), specs, background=background)
    rng = np.random.default_rng(6)
    ids = torch.zeros((len(specs), 2), dtype=torch.long)
    for _ in range(60):
        scores = torch.as_tensor(rng.normal(size=(len(specs), len(strings) + 3)), dtype=torch.float32)
        a, b = one(ids, scores.clone()), many(ids, scores.clone())
        assert torch.equal(a, b)
        ids = torch.cat([ids, a.argmax(-1)[:, None]], 1)


def test_primed_block_starts_equal_fresh_matchers_on_every_qwen_token_running_past_seg():
    from support.tiny_qwen import qwen_tokenizer_fast

    from text4seg.decoding.xgr_rows import Block

    tok = qwen_tokenizer_fast()
    backend = XgrBackend(tok, vocab_size=152064, stop_token_ids=[tok.convert_tokens_to_ids("<|im_end|>")])
    tails = backend.tails()
    for scheme, labels in (("rrle", ["a dog", "1 cat"]), ("compact", ["others", "東京"]), ("full", ["x"])):
        compiled = backend.block(scheme, 4, labels).compiled
        primed = Block(compiled)
        primed.prime(tails)
        fresh = {t: bool(xgr.GrammarMatcher(compiled).accept_string(t)) for t in tails}
        assert {t: primed.accepts_start(t) for t in tails} == fresh
        assert any(fresh.values()) or scheme != "rrle"  # ">a" starts "a dog"
