"""Character-level grammars for constrained decoding, and the one shared by the run-length schemes.

A grammar is a state machine over characters for the answers of one query (a scheme, a grid, the
allowed labels): ``start()`` is the state before the answer, ``step(state, c)`` the state after one
character (None: rejected), ``cost(state)`` the fewest characters, plus one for EOS, that finish the
answer from ``state``. States are hashable NamedTuples whose ``phase`` field is :data:`FREE` while the
answer is still in the sentence before ``<seg>`` and :data:`END` once ``</seg>`` is written; other phases
are each grammar's own. :mod:`text4seg.decoding.constrain` lifts any such grammar to tokens.

:class:`RunGrammar` is the grammar of the ``rrle``, ``irle`` and ``full`` schemes, given the scheme's
:class:`Layout` (``rrle``, ``rows x cols`` grid, allowed labels = the query's targets plus ``others``)::

    FREE* "<seg>" ROW ("\\n " ROW){rows-1} "\\n" "</seg>" EOS
    ROW = LABEL " *" COUNT ("| " LABEL " *" COUNT)*   with the COUNTs (no leading 0) summing to cols

``FREE`` is any text not containing ``<seg>``. ``irle`` is one row of ``rows*cols`` cells; ``full`` writes
every cell's label, no counts. :func:`count_rules` are the exact EBNF rules of a counted row (the row
sum), shared by the ``rrle`` and ``irle`` emitters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

from text4seg.descriptors.core import ROW_SEP, RUN_SEP, SEG_CLOSE, SEG_OPEN, Budget, Scheme, allowed_labels
from text4seg.descriptors.ebnf import ebnf_literal

FREE, END = 0, 4  # phases every grammar shares (the logits processors test them)
LABEL, COUNT, LIT = 1, 2, 3  # RunGrammar's own phases
_DIGITS = "0123456789"


def seg_prefix(buf: str, c: str) -> str:
    """In free text: the prefix of ``<seg>`` matched after ``buf`` then ``c`` (``<seg>`` itself when the
    tag is complete)."""
    m = buf + c
    if SEG_OPEN.startswith(m):
        return m
    return "<" if c == "<" else ""


class Grammar:
    """Base class: subclasses define ``start``, ``step`` and ``cost`` (see the module docstring)."""

    def start(self):
        raise NotImplementedError

    def step(self, s, c: str):
        raise NotImplementedError

    def cost(self, s) -> int:
        raise NotImplementedError

    def advance(self, s, text: str):
        """The state after every character of ``text`` (None once one is rejected)."""
        for c in text:
            if s is None:
                return None
            s = self.step(s, c)
        return s

    def accepts(self, text: str) -> bool:
        """True when ``text`` is a complete answer (all of it, up to but excluding EOS)."""
        s = self.advance(self.start(), text)
        return s is not None and s.phase == END


class Layout(NamedTuple):
    """A run-length scheme's layout: ``rows`` lines of ``cols`` cells; ``counted`` runs or one label per
    cell."""

    rows: int
    cols: int
    counted: bool


class State(NamedTuple):
    """:class:`RunGrammar` state. ``buf``: FREE matched prefix of ``<seg>``; LABEL label prefix; COUNT
    digits; LIT pending literal (then END when ``row == rows``, else LABEL at ``(row, col)``)."""

    phase: int
    row: int = 0
    col: int = 0
    buf: str = ""


class RunGrammar(Grammar):
    """The grammar of rows of runs (``rrle``, ``irle``, ``full``) for one query.

    Args:
        layout: the scheme's :class:`Layout` of the grid.
        labels: allowed target labels (normalised); ``others`` is always allowed.
    """

    def __init__(self, layout: Layout, labels: Sequence[str] = ()):
        self.layout = lay = layout
        self.labels = allowed_labels(labels)
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
            m = seg_prefix(s.buf, c)
            return State(LABEL) if m == SEG_OPEN else State(FREE, 0, 0, m)
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

    def cost(self, s: State) -> int:
        """Fewest characters (plus 1 for EOS) needed to finish from ``s``."""
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


def run_regex(layout: Layout, labels: Sequence[str]) -> str:
    """A regex of a whole answer (free text without ``<``, then the ``<seg>`` block) of a run layout.

    Exact without counts (``full``); with counts, each is 1..cols but the row-sum condition is left to
    :class:`RunGrammar` (a regex of it would be huge).
    """
    lab = "(?:" + "|".join(re.escape(x) for x in sorted(allowed_labels(labels), key=len, reverse=True)) + ")"
    if layout.counted:
        n = len(str(layout.cols))
        cell = lab + r" \*[1-9][0-9]{0," + str(n - 1) + "}"
        row = cell + r"(?:\| " + cell + ")*"
    else:
        row = lab + (r"(?:\| " + lab + f"){{{layout.cols - 1}}}" if layout.cols > 1 else "")
    body = row + ("(?:\\n " + row + f"){{{layout.rows - 1}}}" if layout.rows > 1 else "") + "\\n"
    return "[^<]*" + re.escape(SEG_OPEN) + body + re.escape(SEG_CLOSE)


def run_budget(layout: Layout, labels: Sequence[str]) -> Budget:
    """Characters of the shortest and the longest block the :class:`RunGrammar` of ``layout`` accepts.

    Longest: every cell a run of its own (``label *1``, ``"| "`` between) with the longest label;
    shortest: one run per row (``label *cols``) with the shortest label; without counts every cell is a
    label. Rows are joined by ``"\\n "`` and the block ends with ``"\\n"``.
    """
    lens = [len(x) for x in allowed_labels(labels)]
    cols = layout.cols
    if layout.counted:
        longest = cols * (max(lens) + len(" *1") + len(RUN_SEP)) - len(RUN_SEP)
        shortest = min(lens) + len(" *") + len(str(cols))
    else:
        longest, shortest = (cols * (n + len(RUN_SEP)) - len(RUN_SEP) for n in (max(lens), min(lens)))
    block = (layout.rows - 1) * len(ROW_SEP) + len("\n")
    return Budget(layout.rows * shortest + block, layout.rows * longest + block)


def count_rules(cells: int) -> list[str]:
    """EBNF rules ``r{c}``: runs ``lab " *" COUNT`` joined by ``"| "`` covering exactly ``c`` cells, for
    c = 1..cells (one rule per number of cells left enforces the row sum)."""
    out = []
    for c in range(1, cells + 1):
        alts = [ebnf_literal(str(c))] + [f'"{k}| " r{c - k}' for k in range(1, c)]
        out.append(f'r{c} ::= lab " *" (' + " | ".join(alts) + ")")
    return out


def run_scheme(
    doc: str, encode, lenient, strict, layout: Callable[[int, int], Layout], ebnf, checked=None
) -> Scheme:
    """A run-length :class:`~text4seg.descriptors.core.Scheme` whose grammar, regex and budget are this
    module's, for the layout ``layout(rows, cols)`` of a ``rows x cols`` grid; ``ebnf`` is the scheme
    module's exact grammar emitter; ``checked`` its lenient decoder with the strict verdict."""

    def grammar(rows: int, cols: int, labels: Sequence[str] = ()) -> RunGrammar:
        return RunGrammar(layout(rows, cols), labels)

    def regex(rows: int, cols: int, labels: Sequence[str] = ()) -> str:
        return run_regex(layout(rows, cols), labels)

    def budget(rows: int, cols: int, labels: Sequence[str] = ()) -> Budget:
        return run_budget(layout(rows, cols), labels)

    return Scheme(doc, encode, lenient, strict, grammar, regex, budget, ebnf, checked)
