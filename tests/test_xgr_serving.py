"""Request bodies for servers carry a grammar (vLLM) or the regex (swift deploy) that accepts answers."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from text4seg import encode, wrap
from text4seg.decoding.bodies import swift_deploy_body, vllm_chat_body
from text4seg.descriptors import max_answer_tokens

MESSAGES = [{"role": "user", "content": "Segment the cat."}]


def _answer(scheme: str) -> str:
    g = np.full((4, 4), "others", dtype=object)
    g[1:3, 0:2] = "cat"
    return "Sure.\n" + wrap(encode(g.astype(str), scheme))


BREAK = {  # a wrong row sum (run-length, full) or a column beyond the grid (compact)
    "rrle": ("*4", "*3"),
    "irle": ("*4", "*3"),
    "full": ("others| ", ""),
    "compact": ("0-1", "0-4"),
}


@pytest.mark.parametrize("scheme", sorted(BREAK))
def test_vllm_body_carries_a_grammar_that_accepts_the_answer_and_rejects_a_wrong_row_sum(scheme):
    xgr = pytest.importorskip("xgrammar")
    body = json.loads(json.dumps(vllm_chat_body("m", MESSAGES, scheme, 4, ["cat"], temperature=0)))
    assert body["max_tokens"] == max_answer_tokens(scheme, 4, ["cat"]) and body["temperature"] == 0
    info = xgr.TokenizerInfo(["</s>", "a"], xgr.VocabType.RAW, stop_token_ids=[0])
    compiled = xgr.GrammarCompiler(info, cache_enabled=False).compile_grammar(
        body["structured_outputs"]["grammar"]
    )
    good = _answer(scheme)
    bad = good.replace(*BREAK[scheme], 1)
    assert bad != good
    for text, ok in ((good, True), (bad, False)):
        m = xgr.GrammarMatcher(compiled)
        assert (m.accept_string(text) and m.is_completed()) == ok


def test_legacy_vllm_body_uses_guided_grammar():
    body = vllm_chat_body("m", MESSAGES, "rrle", 4, ["cat"], legacy=True)
    assert "structured_outputs" not in body and body["guided_grammar"].startswith("root ::=")


def test_swift_deploy_body_carries_the_descriptor_regex():
    body = swift_deploy_body("m", MESSAGES, "rrle", 4, ["cat"])
    assert re.fullmatch(body["structured_outputs_regex"], _answer("rrle"))
    assert not re.fullmatch(body["structured_outputs_regex"], _answer("rrle").replace("cat", "dog"))
