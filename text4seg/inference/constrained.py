"""Constrained decoding inside :class:`~text4seg.inference.predict.Predictor`: the engine, each batch's
logits processor, the answer budget and its cap by the model's context.

Engines (``constrained_engine``) apply the same per-scheme grammar: ``"xgrammar"``
(:mod:`~text4seg.decoding.xgr`: the scheme's exact EBNF compiled per query, about 1 ms per step on a
152k vocabulary, ``benchmarks/constrain.py``) and ``"own"`` (:mod:`~text4seg.decoding.constrain`: the
character-level grammars in Python, tens to hundreds of ms per step on a real vocabulary; it stays the
differential reference of ``tests/test_xgr_grammar.py``). ``"auto"`` (default) takes xgrammar when it is
importable and otherwise says once that it falls back to the own engine.

Budget: :meth:`ConstrainedDecoder.bound` is :func:`~text4seg.descriptors.max_answer_tokens`: with
``max_new_tokens`` at least this, every answer of either engine is complete and parses with
``decode(..., strict=True)``. It is a character bound (3,083 tokens for a 16x16 R-RLE query on ``cat``),
so ``Predictor`` caps it by the model's context (:func:`context_room`: the engine's ``max_model_len``, else
the config's ``max_position_embeddings``, minus the batch's prompt, as ms-swift does). Below the bound the
own engine still closes the block in time (it knows the tokens left); xgrammar's masks do not, so its
free text shrinks by what the budget lacks, and only when even the longest block does not fit can an
answer be cut (the lenient decoder then repairs it). :meth:`ConstrainedDecoder.check_room` says so once,
naming the query.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Sequence

from text4seg.data.queries import Query
from text4seg.descriptors import MAX_FREE, max_answer_tokens
from text4seg.inference.engine import prompt_tokens

CONSTRAINED_ENGINES = ("auto", "xgrammar", "own")


def context_room(engine, inputs: dict) -> tuple[int, int] | None:
    """``(context, prompt)`` tokens of one batch on an ms-swift engine: its ``max_model_len`` (else the
    model config's ``max_position_embeddings``) and the padded prompt length; None when unknown."""
    ctx = getattr(engine, "max_model_len", None)
    if not ctx:
        cfg = getattr(getattr(engine, "model", None), "config", None)
        cfg = getattr(cfg, "text_config", None) or cfg
        ctx = getattr(cfg, "max_position_embeddings", None)
    if not ctx:
        return None
    return int(ctx), prompt_tokens(engine, inputs)


def logits_width(model, tokenizer) -> int | None:
    """The model's logits width when it exceeds the tokenizer's vocabulary (padded embeddings), else None."""
    try:
        width = int(model.get_output_embeddings().weight.shape[0])
    except (AttributeError, TypeError):
        return None
    return width if width > len(tokenizer) else None


class ConstrainedDecoder:
    """The constrained-decoding settings of a predictor and the vocabularies it built.

    Args:
        engine: one of :data:`CONSTRAINED_ENGINES`.
        max_free: the bound on the text before ``<seg>`` (characters with xgrammar, tokens with the own
            engine; part of :meth:`bound`).
    """

    def __init__(self, engine: str = "auto", max_free: int = MAX_FREE):
        if engine not in CONSTRAINED_ENGINES:
            raise ValueError(f"constrained_engine must be one of {list(CONSTRAINED_ENGINES)}, got {engine!r}")
        self.engine = engine
        self.max_free = int(max_free)
        self._used: str | None = None
        self._backend = None  # xgrammar: vocabulary + compiled-grammar LRU
        self._table = None  # own engine: vocabulary
        self._warned = False

    def bound(self, q: Query) -> int:
        """The answer budget of ``q`` (:func:`~text4seg.descriptors.max_answer_tokens`)."""
        return max_answer_tokens(q.scheme, q.grid, q.labels, self.max_free)

    def engine_used(self) -> str:
        """``"xgrammar"`` or ``"own"`` (``"auto"`` resolved on first use; a fallback is printed once)."""
        if self._used is None:
            name = self.engine
            if name == "auto":
                name = "xgrammar" if importlib.util.find_spec("xgrammar") is not None else "own"
                if name == "own":
                    print(
                        "predict: xgrammar is not installed, constrained decoding uses the own engine "
                        "(slower on real vocabularies; pip install 'text4seg[train]')",
                        file=sys.stderr,
                    )
            self._used = name
        return self._used

    def free_within(self, batch: Sequence[Query], max_new: int) -> int:
        """The free-text bound that keeps every answer of ``batch`` within ``max_new`` tokens: ``max_free``,
        less what the budget lacks (negative: not even the longest block fits)."""
        return min([self.max_free] + [max_new - self.bound(q) + self.max_free for q in batch])

    def processor(
        self, batch: Sequence[Query], max_new: int, tokenizer, eos_ids: Sequence[int], width: int | None
    ):
        """The ``transformers`` logits processor of one batch: row ``i`` follows ``batch[i]``'s grammar
        within ``max_new`` tokens. ``width``: the logits width when it exceeds the vocabulary.

        xgrammar's masks do not see the tokens left, so below the bound its free text shrinks to
        :meth:`free_within` (every answer still complete); the own engine closes the block in time itself.
        """
        specs = [(q.scheme, q.grid, q.labels) for q in batch]
        if self.engine_used() == "xgrammar":
            from text4seg.decoding.xgr import XgrBackend, XgrLogitsProcessor

            if self._backend is None:
                self._backend = XgrBackend(tokenizer, width, list(eos_ids))
            free = max(0, self.free_within(batch, max_new))  # below 0: reported by check_room
            return XgrLogitsProcessor(
                self._backend, specs, max_new, free, allow_short_budget=True, background=True
            )
        from text4seg.decoding.constrain import DescriptorLogitsProcessor, TokenTable

        if self._table is None:
            self._table = TokenTable.from_tokenizer(tokenizer, eos_ids)
        return DescriptorLogitsProcessor(self._table, specs, max_new, max_free_tokens=self.max_free)

    def check_room(self, batch: Sequence[Query], max_new: int, room: tuple[int, int] | None = None) -> None:
        """Warn once (per decoder) when a query's :meth:`bound` exceeds the ``max_new`` tokens it may
        generate, saying what follows; ``room``: :func:`context_room` of the batch (named as the cause
        when it is)."""
        if self._warned:
            return
        for q in batch:
            need = self.bound(q)
            if max_new >= need:
                continue
            why = "max_new_tokens"
            if room is not None and room[0] - room[1] <= max_new:
                why = f"the model's context of {room[0]} tokens minus the {room[1]}-token prompt"
            free = self.free_within(batch, max_new)
            if self.engine_used() == "own":
                tail = "the own engine closes the block within them (every answer still parses strictly)"
            elif free >= 0:
                tail = (
                    f"xgrammar's free text shrinks to {free} characters (every answer still parses strictly)"
                )
            else:
                tail = (
                    "even xgrammar's longest block does not fit: a longer answer is cut (decoded leniently)"
                )
            warnings.warn(
                f"query {q.id!r} turn {q.turn}: {max_new} new tokens ({why}) are below the bound of "
                f"{need} for a constrained {q.scheme} answer; {tail} (said once)",
                RuntimeWarning,
                stacklevel=3,
            )
            self._warned = True
            return
