"""Request bodies that carry the descriptor grammar to inference servers.

``vllm serve`` (OpenAI-compatible chat API) takes the exact EBNF grammar (:func:`.codec.answer_ebnf`) as
a structured output: ``{"structured_outputs": {"grammar": ...}}`` (the field vLLM's docs name since
``guided_grammar`` was removed in v0.12; older servers read the top-level ``"guided_grammar"``, see
``legacy``). The grammar is in xgrammar's EBNF dialect, so the server's structured-output backend must be
xgrammar (its default ``auto`` tries xgrammar first).

``swift deploy`` (ms-swift 4.x, vLLM backend) cannot carry a grammar: its chat request
(``swift.infer_engine.protocol.ChatCompletionRequest``, i.e. ``RequestConfig``) has one structured-output
field, ``structured_outputs_regex``, which ``VllmEngine`` turns into ``StructuredOutputsParams(regex=...)``.
So :func:`swift_deploy_body` sends :func:`~text4seg.decoding.constrain.descriptor_regex` (exact for
``full``; for the run-length schemes and ``compact`` it does not check row sums / order). An exact
regex for R-RLE row sums would need one alternative per composition of the row (2**(cols-1)), so there is
no useful regex form. ms-swift GRPO rollouts take one ``structured_outputs_regex`` from the training
arguments for every rollout (``rlhf_trainers/rollout_mixin.py`` builds one ``RequestConfig``), so neither a
grammar nor a per-query label set reaches them without patching ms-swift.

Budget: ``max_tokens`` defaults to :func:`~.codec.max_answer_tokens`, the bound under which every answer
the grammar allows is complete (see :mod:`.xgr`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from text4seg.descriptors.codec import answer_ebnf, max_answer_tokens
from text4seg.descriptors.core import MAX_FREE


def vllm_chat_body(
    model: str,
    messages: Sequence[dict],
    scheme: str = "rrle",
    size: int | tuple[int, int] = 16,
    labels: Iterable[str] = (),
    max_tokens: int | None = None,
    max_free_chars: int = MAX_FREE,
    legacy: bool = False,
    **extra,
) -> dict:
    """A ``/v1/chat/completions`` body for ``vllm serve`` with the exact answer grammar.

    ``legacy``: the pre-0.11 field ``guided_grammar`` instead of ``structured_outputs``. ``extra`` fields
    (``temperature``, ...) are copied in.
    """
    labels = list(labels)
    grammar = answer_ebnf(scheme, size, labels, max_free_chars)
    body = {
        "model": model,
        "messages": list(messages),
        "max_tokens": max_tokens or max_answer_tokens(scheme, size, labels, max_free_chars),
        **extra,
    }
    if legacy:
        body["guided_grammar"] = grammar
    else:
        body["structured_outputs"] = {"grammar": grammar}
    return body


def swift_deploy_body(
    model: str,
    messages: Sequence[dict],
    scheme: str = "rrle",
    size: int | tuple[int, int] = 16,
    labels: Iterable[str] = (),
    max_tokens: int | None = None,
    **extra,
) -> dict:
    """A ``/v1/chat/completions`` body for ``swift deploy --infer_backend vllm``: the descriptor regex
    (the only structured output ms-swift passes on; not exact for run-length row sums)."""
    from text4seg.decoding.constrain import descriptor_regex

    labels = list(labels)
    return {
        "model": model,
        "messages": list(messages),
        "max_tokens": max_tokens or max_answer_tokens(scheme, size, labels),
        "structured_outputs_regex": descriptor_regex(scheme, size, labels),
        **extra,
    }
