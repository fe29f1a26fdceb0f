"""Constrained decoding: only well-formed descriptor text inside ``<seg>...</seg>``, token by token.

Each scheme writes its grammar once, as a state machine over characters (``Scheme.grammar``: ``start``,
``step``, ``cost``; see :mod:`text4seg.descriptors.grammar`). This module lifts any of them to tokens:

* :class:`TokenTable` + :meth:`TokenGrammar.allowed`: a token is allowed in a state iff the grammar
  accepts all of its characters from that state (cached per state);
* :class:`DescriptorLogitsProcessor`: a ``transformers`` ``LogitsProcessor`` for batched ``generate``
  (one grammar per batch row);
* :class:`RequestLogitsProcessor`: the same for engines that call ``fn(token_ids, logits)`` per request
  (vLLM's per-request logits-processor form);
* :func:`descriptor_regex`: the scheme's regex form for ``structured_outputs_regex`` (vLLM); exact for
  ``full``, looser for the others (see each scheme's ``regex``).

``FREE`` text before ``<seg>`` is any text not containing ``<seg>``; special tokens are never allowed;
EOS only at the end.

Budget: the processor knows ``max_new_tokens`` and never lets a row enter a state from which the rest
cannot be finished in the tokens left (cost = characters still needed, a safe bound when every single
character is a token, as in byte-level BPE). So with it on, every answer parses with
``decode(..., strict=True)``, whatever the model's weights, and unlike xgrammar's masks (:mod:`.xgr`)
it stays so below the default budget of a query (:func:`text4seg.descriptors.max_answer_tokens`, shared
by both engines), down to the shortest answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from text4seg.descriptors.core import DEFAULT_SCHEME, MAX_FREE, SEG_OPEN, Size, grid_shape
from text4seg.descriptors.grammar import END, FREE, Grammar
from text4seg.descriptors.schemes import get_scheme


def make_grammar(scheme: str, size: Size = 16, labels: Iterable[str] = ()) -> Grammar:
    """The character-level grammar of ``scheme`` (a key of the registry) for one query."""
    rows, cols = grid_shape(size)
    return get_scheme(scheme).grammar(rows, cols, tuple(labels))


@lru_cache(maxsize=256)
def grammar_for(scheme: str, size: tuple[int, int], labels: tuple[str, ...]) -> TokenGrammar:
    """Shared (cached) token grammar per (scheme, size, labels), so the per-state caches are reused."""
    return TokenGrammar(make_grammar(scheme, size, labels))


class TokenTable:
    """The vocabulary as text: ``strings[id]`` (None for special or empty tokens) and the EOS ids.

    ``by_first[c]`` lists the ids whose text starts with ``c``.
    """

    def __init__(self, strings: Sequence[str | None], eos_ids: Iterable[int]):
        self.strings = list(strings)
        self.eos_ids = sorted({int(i) for i in eos_ids})
        by_first: dict[str, list[int]] = {}
        for i, t in enumerate(self.strings):
            if t:
                by_first.setdefault(t[0], []).append(i)
        self.by_first = by_first
        self.first_chars = sorted(by_first)

    def items(self):
        return ((i, t) for i, t in enumerate(self.strings) if t)

    @classmethod
    def from_tokenizer(cls, tokenizer, eos_ids: Iterable[int] | None = None) -> TokenTable:
        """Decode every token on its own (SentencePiece ``▁`` word starts keep their space)."""
        n = len(tokenizer)
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        special |= {i for i, tok in added.items() if getattr(tok, "special", True)}  # not plain added words
        ids = list(range(n))
        texts = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
        pieces = tokenizer.convert_ids_to_tokens(ids)
        strings: list[str | None] = []
        for i, t, p in zip(ids, texts, pieces):
            if i in special or not t or "\ufffd" in t:
                strings.append(None)
                continue
            if isinstance(p, str) and p.startswith("\u2581") and not t.startswith(" "):
                t = " " + t
            strings.append(t)
        if eos_ids is None:
            eos_ids = [tokenizer.eos_token_id]
        return cls(strings, [i for i in eos_ids if i is not None])


class TokenGrammar:
    """A character grammar (``start``/``step``/``cost``) lifted to tokens, with per-state caches."""

    def __init__(self, grammar):
        self.grammar = grammar
        self._allowed_cache: dict = {}
        self._token_cache: dict = {}

    def start(self):
        return self.grammar.start()

    def cost(self, s) -> int:
        return self.grammar.cost(s)

    def allowed(self, s, table: TokenTable) -> tuple[np.ndarray, np.ndarray]:
        """``(token ids, cost after each)`` allowed from ``s`` (cached per state). EOS only in END."""
        hit = self._allowed_cache.get(s)
        if hit is not None:
            return hit
        g = self.grammar
        if s.phase == END:
            ids = np.asarray(table.eos_ids, np.int64)
            out = (ids, np.zeros(len(ids), np.int64))
        else:
            ids_l, costs = [], []
            if s.phase == FREE:
                free_cost = g.cost(g.start())
                nxt = SEG_OPEN[len(s.buf)]
                for i, t in table.items():
                    if "<" not in t and t[0] != nxt:
                        ids_l.append(i)
                        costs.append(free_cost)
                        continue
                    e = g.advance(s, t)
                    if e is not None:
                        ids_l.append(i)
                        costs.append(g.cost(e))
            else:
                for c in table.first_chars:
                    if g.step(s, c) is None:
                        continue
                    for i in table.by_first[c]:
                        e = g.advance(s, table.strings[i])
                        if e is not None:
                            ids_l.append(i)
                            costs.append(g.cost(e))
            out = (np.asarray(ids_l, np.int64), np.asarray(costs, np.int64))
        self._allowed_cache[s] = out
        return out

    def advance_token(self, s, token_id: int, table: TokenTable):
        """State after one token (cached); None for a token the grammar rejects (or EOS)."""
        key = (s, token_id)
        if key in self._token_cache:
            return self._token_cache[key]
        t = table.strings[token_id] if 0 <= token_id < len(table.strings) else None
        e = None if t is None else self.grammar.advance(s, t)
        self._token_cache[key] = e
        return e


class TimedProcessor:
    """Base of the grammar logits processors: ``__call__`` runs the subclass's ``_call(input_ids, scores)``
    and adds its wall time to ``seconds`` and one to ``calls`` (the overhead benchmark reads them)."""

    seconds: float = 0.0  # time spent in this processor
    calls: int = 0

    def __call__(self, input_ids, scores):
        t0 = time.perf_counter()
        try:
            return self._call(input_ids, scores)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def _call(self, input_ids, scores):
        raise NotImplementedError


class DescriptorLogitsProcessor(TimedProcessor):
    """``transformers`` logits processor: row ``i`` of the batch follows the grammar of ``specs[i]``.

    Args:
        table: the vocabulary (:class:`TokenTable`).
        specs: per batch row ``(scheme, size, labels)``.
        max_new_tokens: the generation budget; every row finishes (``</seg>`` then EOS) within it.
        max_free_tokens: after this many tokens of free text, only tokens that move towards ``<seg>``
            are allowed (None: free text may use the whole budget minus what the block needs).

    Greedy / sampling with one sequence per row (no beams). The first call records the prompt length.
    """

    def __init__(
        self,
        table: TokenTable,
        specs: Sequence[tuple],
        max_new_tokens: int,
        max_free_tokens: int | None = MAX_FREE,
    ):
        self.table = table
        self.max_free_tokens = max_free_tokens
        self.grammars = [
            grammar_for(sch, grid_shape(size), tuple(sorted(labels))) for sch, size, labels in specs
        ]
        self.max_new_tokens = int(max_new_tokens)
        for g, (sch, size, _) in zip(self.grammars, specs):
            need = g.cost(g.start())
            if need > self.max_new_tokens:
                rows, cols = grid_shape(size)
                raise ValueError(
                    f"max_new_tokens={self.max_new_tokens} is below the {need} tokens a "
                    f"{rows}x{cols} {sch} answer may need; raise it"
                )
        self.prompt_len: int | None = None
        self.states: list = []
        self._torch_cache: dict = {}

    def _call(self, input_ids, scores):
        torch = __import__("torch")
        b = input_ids.shape[0]
        if b != len(self.grammars):
            raise ValueError(f"batch has {b} rows, the processor was built for {len(self.grammars)}")
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
            self.states = [g.start() for g in self.grammars]
        else:
            last = input_ids[:, -1].tolist()
            for i, g in enumerate(self.grammars):
                if self.states[i] is not None:
                    self.states[i] = g.advance_token(self.states[i], last[i], self.table)
        step = input_ids.shape[1] - self.prompt_len
        remaining = self.max_new_tokens - step
        force = self.max_free_tokens is not None and step >= self.max_free_tokens
        for i, g in enumerate(self.grammars):
            s = self.states[i]
            if s is None:  # finished (EOS) or left the grammar: leave the row alone
                continue
            key = (id(g), s)
            cached = self._torch_cache.get(key)
            if cached is None:
                ids, costs = g.allowed(s, self.table)
                cached = (
                    torch.as_tensor(ids, device=scores.device),
                    torch.as_tensor(costs, device=scores.device),
                )
                self._torch_cache[key] = cached
            ids, costs = cached
            limit = remaining - 1
            if force and s.phase == FREE:
                limit = min(limit, g.cost(s) - 1)  # free text is over: walk into <seg>
            keep = ids[(costs <= limit) & (ids < scores.shape[1])]
            row = torch.full_like(scores[i], float("-inf"))
            row[keep] = scores[i, keep]
            scores[i] = row
        return scores


class RequestLogitsProcessor:
    """Per-request form ``fn(token_ids, logits) -> logits`` (vLLM's per-request logits processors):
    ``token_ids`` are the tokens generated so far for this request, ``logits`` a 1-D tensor."""

    def __init__(self, table: TokenTable, scheme: str, size, labels: Sequence[str], max_new_tokens: int):
        self.table = table
        self.grammar = grammar_for(scheme, grid_shape(size), tuple(sorted(labels)))
        self.max_new_tokens = int(max_new_tokens)
        self._states: list = [self.grammar.start()]

    def __call__(self, token_ids: Sequence[int], logits):
        torch = __import__("torch")
        g = self.grammar
        while len(self._states) <= len(token_ids):
            s = self._states[-1]
            tok = token_ids[len(self._states) - 1]
            self._states.append(None if s is None else g.advance_token(s, int(tok), self.table))
        s = self._states[len(token_ids)]
        if s is None:
            return logits
        ids, costs = g.allowed(s, self.table)
        keep = ids[costs <= self.max_new_tokens - len(token_ids) - 1]
        out = torch.full_like(logits, float("-inf"))
        keep_t = torch.as_tensor(keep, device=logits.device)
        out[keep_t] = logits[keep_t]
        return out


def descriptor_regex(scheme: str = DEFAULT_SCHEME, size: Size = 16, labels: Iterable[str] = ()) -> str:
    """A regex for a whole answer (free text without ``<``, then the ``<seg>`` block): the scheme's.

    Exact for ``full``; for ``rrle``/``irle`` the counts are 1..cols without the row-sum condition, and
    for ``compact`` rows and columns are in range but not checked for order (use the logits processors
    for those).
    """
    rows, cols = grid_shape(size)
    return get_scheme(scheme).regex(rows, cols, tuple(labels))
