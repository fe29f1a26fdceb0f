"""Constrained decoding: only well-formed descriptor text inside ``<seg>...</seg>``.

The grammar is written once, as a small state machine over characters (:class:`DescriptorGrammar`).
Everything else is built on it:

* :class:`TokenTable` + :meth:`DescriptorGrammar.allowed`: a token is allowed in a state iff the grammar
  accepts all of its characters from that state (cached per state);
* :class:`DescriptorLogitsProcessor`: a ``transformers`` ``LogitsProcessor`` for batched ``generate``
  (one grammar per batch row);
* :class:`RequestLogitsProcessor`: the same for engines that call ``fn(token_ids, logits)`` per request
  (vLLM's per-request logits-processor form);
* :func:`descriptor_regex`: a regex form for ``structured_outputs_regex`` (vLLM). It is exact for the
  ``full`` scheme; for run-length schemes a regex cannot state "counts sum to the row width" at a
  reasonable size, so there it checks everything but the row sums.

Language accepted (scheme ``rrle``, ``rows x cols`` grid, allowed labels = the query's target labels,
normalised, plus ``others``)::

    FREE* "<seg>" ROW ("\\n " ROW){rows-1} "\\n" "</seg>" EOS
    ROW = LABEL " *" COUNT ("| " LABEL " *" COUNT)*   with the COUNTs (no leading 0) summing to cols

``FREE`` is any text not containing ``<seg>``; special tokens are never allowed; EOS only at the end.
``irle`` is one row of ``rows*cols`` cells; ``full`` writes every cell's label, no counts. A run-length
scheme plugs in by adding a :class:`Layout` factory to :data:`LAYOUTS`; any other grammar with the same
``start``/``step``/``cost`` interface by an entry in :data:`GRAMMARS` (``compact``:
:mod:`text4seg.descriptors.compact_grammar`).

Budget: the processor knows ``max_new_tokens`` and never lets a row enter a state from which the rest
cannot be finished in the tokens left (cost = characters still needed, a safe bound when every single
character is a token, as in byte-level BPE). So with it on, every answer parses with
``decode(..., strict=True)``, whatever the model's weights.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from text4seg.descriptors.codec import BACKGROUND, SEG_CLOSE, SEG_OPEN, normalize_label
from text4seg.descriptors.grid import grid_shape

FREE, LABEL, COUNT, LIT, END = range(5)
_DIGITS = "0123456789"


class Layout(NamedTuple):
    """A scheme's layout: ``rows`` lines of ``cols`` cells; ``counted`` runs or one label per cell."""

    rows: int
    cols: int
    counted: bool


LAYOUTS: dict[str, Callable[[int, int], Layout]] = {
    "rrle": lambda r, c: Layout(r, c, True),
    "irle": lambda r, c: Layout(1, r * c, True),
    "full": lambda r, c: Layout(r, c, False),
}


class State(NamedTuple):
    """Grammar state. ``buf``: FREE matched prefix of ``<seg>``; LABEL label prefix; COUNT digits;
    LIT pending literal (then END when ``row == rows``, else LABEL at ``(row, col)``)."""

    phase: int
    row: int = 0
    col: int = 0
    buf: str = ""


class DescriptorGrammar:
    """The descriptor grammar of one query (see the module docstring).

    Args:
        scheme: a key of :data:`LAYOUTS`; size: grid size ``int`` or ``(rows, cols)``;
        labels: allowed target labels (normalised with :func:`~text4seg.descriptors.codec.normalize_label`);
            ``others`` is always allowed.
    """

    def __init__(self, scheme: str = "rrle", size: int | tuple[int, int] = 16, labels: Iterable[str] = ()):
        if scheme not in LAYOUTS:
            raise ValueError(f"no constrained grammar for scheme {scheme!r}; available: {sorted(LAYOUTS)}")
        rows, cols = grid_shape(size)
        self.scheme = scheme
        self.layout = lay = LAYOUTS[scheme](rows, cols)
        self.labels = sorted({normalize_label(x) for x in labels} | {BACKGROUND})
        suffix = " *" if lay.counted else ""
        self._targets = {lab + suffix for lab in self.labels}
        comp: dict[str, int] = {}
        for t in self._targets:
            for k in range(len(t)):
                comp[t[:k]] = min(comp.get(t[:k], 10**9), len(t) - k)
            if not lay.counted:
                comp[t] = 0  # a complete label waits for its separator
        self._comp = comp  # label prefix -> fewest characters to complete a target
        lmin = min(len(t) for t in self._targets)
        if lay.counted:
            self._row_rest = lambda m: lmin + len(str(m))
        else:
            self._row_rest = lambda m: m * lmin + 2 * (m - 1)
        tail = [0] * lay.rows
        tail[-1] = len("\n" + SEG_CLOSE) + 1
        for r in range(lay.rows - 2, -1, -1):
            tail[r] = 2 + self._row_rest(lay.cols) + tail[r + 1]
        self._tail = tail
        self._allowed_cache: dict = {}
        self._token_cache: dict = {}

    # ---------------------------------------------------------------------------------- characters
    def start(self) -> State:
        return State(FREE)

    def _after_cells(self, row: int, col: int, c: str) -> State | None:
        lay = self.layout
        if col < lay.cols:
            return State(LIT, row, col, " ") if c == "|" else None
        if c != "\n":
            return None
        return State(LIT, row + 1, 0, " ") if row + 1 < lay.rows else State(LIT, lay.rows, 0, SEG_CLOSE)

    def step(self, s: State, c: str) -> State | None:
        """The state after character ``c``, or None when the grammar rejects it."""
        ph = s.phase
        if ph == FREE:
            m = s.buf + c
            if SEG_OPEN.startswith(m):
                return State(LABEL) if m == SEG_OPEN else State(FREE, 0, 0, m)
            return State(FREE, 0, 0, "<" if c == "<" else "")
        if ph == LABEL:
            q = s.buf + c
            if self.layout.counted:
                if q in self._targets:
                    return State(COUNT, s.row, s.col, "")
            elif c in "|\n" and s.buf in self._targets:
                return self._after_cells(s.row, s.col + 1, c)
            return State(LABEL, s.row, s.col, q) if q in self._comp else None
        if ph == COUNT:
            if c in _DIGITS:
                d = s.buf + c
                if d[0] == "0" or int(d) > self.layout.cols - s.col:
                    return None
                return State(COUNT, s.row, s.col, d)
            if not s.buf:
                return None
            return self._after_cells(s.row, s.col + int(s.buf), c)
        if ph == LIT:
            if c != s.buf[0]:
                return None
            if len(s.buf) > 1:
                return State(LIT, s.row, s.col, s.buf[1:])
            return State(END) if s.row >= self.layout.rows else State(LABEL, s.row, s.col, "")
        return None  # END takes no characters

    def advance(self, s: State | None, text: str) -> State | None:
        for c in text:
            if s is None:
                return None
            s = self.step(s, c)
        return s

    def accepts(self, text: str) -> bool:
        """True when ``text`` is a complete answer (all of it, up to but excluding EOS)."""
        s = self.advance(self.start(), text)
        return s is not None and s.phase == END

    def cost(self, s: State) -> int:
        """Fewest characters (plus 1 for EOS) needed to finish from ``s``; 0 after EOS (None state)."""
        lay, tail = self.layout, self._tail
        if s.phase == END:
            return 1
        if s.phase == FREE:
            return len(SEG_OPEN) - len(s.buf) + self.cost(State(LABEL))
        if s.phase == LIT:
            return len(s.buf) + (1 if s.row >= lay.rows else self.cost(State(LABEL, s.row, s.col, "")))
        m = lay.cols - s.col
        if s.phase == LABEL:
            comp = self._comp.get(s.buf, 0)
            if lay.counted:
                return comp + len(str(m)) + tail[s.row]
            return comp + (tail[s.row] if m == 1 else 2 + self._row_rest(m - 1) + tail[s.row])
        # COUNT
        if not s.buf:
            return len(str(m)) + tail[s.row]
        v, best = int(s.buf), 10**9
        if v == m:
            best = tail[s.row]
        elif v < m:
            best = 2 + self._row_rest(m - v) + tail[s.row]
        sm = str(m)
        if sm.startswith(s.buf) and len(sm) > len(s.buf):
            best = min(best, len(sm) - len(s.buf) + tail[s.row])
        return best

    # -------------------------------------------------------------------------------------- tokens
    def allowed(self, s: State, table: TokenTable) -> tuple[np.ndarray, np.ndarray]:
        """``(token ids, cost after each)`` allowed from ``s`` (cached per state). EOS only in END."""
        hit = self._allowed_cache.get(s)
        if hit is not None:
            return hit
        if s.phase == END:
            ids = np.asarray(table.eos_ids, np.int64)
            out = (ids, np.zeros(len(ids), np.int64))
        else:
            ids_l, costs = [], []
            if s.phase == FREE:
                free_cost = self.cost(State(FREE))
                nxt = SEG_OPEN[len(s.buf)]
                for i, t in table.items():
                    if "<" not in t and t[0] != nxt:
                        ids_l.append(i)
                        costs.append(free_cost)
                        continue
                    e = self.advance(s, t)
                    if e is not None:
                        ids_l.append(i)
                        costs.append(self.cost(e))
            else:
                for c in table.first_chars:
                    if self.step(s, c) is None:
                        continue
                    for i in table.by_first[c]:
                        e = self.advance(s, table.strings[i])
                        if e is not None:
                            ids_l.append(i)
                            costs.append(self.cost(e))
            out = (np.asarray(ids_l, np.int64), np.asarray(costs, np.int64))
        self._allowed_cache[s] = out
        return out

    def advance_token(self, s: State, token_id: int, table: TokenTable) -> State | None:
        """State after one token (cached); None for a token the grammar rejects (or EOS)."""
        key = (s, token_id)
        if key in self._token_cache:
            return self._token_cache[key]
        t = table.strings[token_id] if 0 <= token_id < len(table.strings) else None
        e = None if t is None else self.advance(s, t)
        self._token_cache[key] = e
        return e


def _compact_grammar(scheme: str, size, labels):
    from text4seg.descriptors.compact_grammar import CompactGrammar

    return CompactGrammar(scheme, size, labels)


# scheme -> grammar class (or factory) with the interface of DescriptorGrammar
GRAMMARS: dict[str, Callable] = {
    **{name: DescriptorGrammar for name in LAYOUTS},
    "compact": _compact_grammar,
}


def make_grammar(scheme: str, size: int | tuple[int, int] = 16, labels: Iterable[str] = ()):
    """The grammar of ``scheme`` (a key of :data:`GRAMMARS`) for one query."""
    if scheme not in GRAMMARS:
        raise ValueError(f"no constrained grammar for scheme {scheme!r}; available: {sorted(GRAMMARS)}")
    return GRAMMARS[scheme](scheme, size, labels)


@lru_cache(maxsize=256)
def grammar_for(scheme: str, size: tuple[int, int], labels: tuple[str, ...]):
    """Shared (cached) grammar per (scheme, size, labels), so the per-state token caches are reused."""
    return make_grammar(scheme, size, labels)


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


class DescriptorLogitsProcessor:
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
        self, table: TokenTable, specs: Sequence[tuple], max_new_tokens: int, max_free_tokens: int | None = 64
    ):
        self.table = table
        self.max_free_tokens = max_free_tokens
        self.grammars = [
            grammar_for(sch, grid_shape(size), tuple(sorted(labels))) for sch, size, labels in specs
        ]
        self.max_new_tokens = int(max_new_tokens)
        for g in self.grammars:
            need = g.cost(g.start())
            if need > self.max_new_tokens:
                raise ValueError(
                    f"max_new_tokens={self.max_new_tokens} is below the {need} tokens a "
                    f"{g.layout.rows}x{g.layout.cols} {g.scheme} answer may need; raise it"
                )
        self.prompt_len: int | None = None
        self.states: list[State | None] = []
        self._torch_cache: dict = {}
        self.seconds = 0.0  # time spent in this processor (for the overhead benchmark)
        self.calls = 0

    def __call__(self, input_ids, scores):
        t0 = time.perf_counter()
        try:
            return self._call(input_ids, scores)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

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
        self._states: list[State | None] = [self.grammar.start()]

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


def descriptor_regex(
    scheme: str = "rrle", size: int | tuple[int, int] = 16, labels: Iterable[str] = ()
) -> str:
    """A regex for a whole answer (free text without ``<``, then the ``<seg>`` block).

    Exact for ``full``; for ``rrle``/``irle`` the counts are 1..cols without the row-sum condition, and
    for ``compact`` rows and columns are in range but not checked for order (use the logits processors
    for those).
    """
    if scheme == "compact":
        from text4seg.descriptors.compact_grammar import compact_regex

        return compact_regex(size, labels)
    g = DescriptorGrammar(scheme, size, labels)
    lay = g.layout
    lab = "(?:" + "|".join(re.escape(x) for x in sorted(g.labels, key=len, reverse=True)) + ")"
    if lay.counted:
        n = len(str(lay.cols))
        cell = lab + r" \*[1-9][0-9]{0," + str(n - 1) + "}"
        row = cell + r"(?:\| " + cell + ")*"
    else:
        row = lab + (r"(?:\| " + lab + f"){{{lay.cols - 1}}}" if lay.cols > 1 else "")
    body = row + ("(?:\\n " + row + f"){{{lay.rows - 1}}}" if lay.rows > 1 else "") + "\\n"
    return "[^<]*" + re.escape(SEG_OPEN) + body + re.escape(SEG_CLOSE)
