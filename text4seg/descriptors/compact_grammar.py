"""The constrained-decoding grammar of the compact scheme (see :mod:`text4seg.descriptors.compact`).

Language accepted for a ``rows x cols`` grid and allowed labels ``L`` (the query's targets)::

    FREE* "<seg>" ( "others\\n" | HEAD "\\n" LINE* ) "</seg>" EOS
    HEAD = l1 ("| " l2)*                 distinct labels of L
    LINE = ROWS ":" SPAN ("," SPAN)* "\\n"
    ROWS = r | r0 "-" r1                 ascending, r0 < r1 <= rows - 1, never overlapping earlier lines
    SPAN = c | c0 "-" c1, then "=" k     ascending within the line, c1 <= cols - 1, 2 <= k <= len(HEAD)

Numbers are written without leading zeros. Every accepted answer decodes with
``decode(text, size, "compact", strict=True)``. The class plugs into :mod:`.constrain`'s token
machinery (``allowed``, ``advance_token``, the logits processors) through ``start``, ``step`` and
``cost``; ``cost`` is the fewest characters (plus one for EOS) that finish the answer from a state.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

from text4seg.descriptors.codec import BACKGROUND, SEG_CLOSE, SEG_OPEN, normalize_label
from text4seg.descriptors.constrain import DescriptorGrammar, Layout
from text4seg.descriptors.grid import grid_shape

# phases (FREE and END share their values with text4seg.descriptors.constrain)
FREE, END = 0, 4
HEAD, LINE, R0, R1, C0, C1, K, LIT = 10, 11, 12, 13, 14, 15, 16, 17
_CLOSE = len(SEG_CLOSE) + 1  # "</seg>" then EOS
_DIGITS = "0123456789"


class CState(NamedTuple):
    """``buf``: text of the current label / number / pending literal (LIT); ``used``: HEAD labels so
    far; ``lo``: next free row (lines) or column (spans); ``first``: r0 or c0 of a range; ``r_hi``: the
    last row of the current line; ``then``: the phase after a LIT."""

    phase: int
    buf: str = ""
    used: tuple = ()
    lo: int = 0
    first: int = 0
    r_hi: int = 0
    then: int = 0


@lru_cache(maxsize=4096)
def _extra_digits(buf: str, lo: int, hi: int) -> int | None:
    """Fewest digits to append to ``buf`` so it reads a number in ``[lo, hi]`` (None: impossible)."""
    best = None
    for v in range(max(lo, 0), hi + 1):
        t = str(v)
        if t.startswith(buf):
            extra = len(t) - len(buf)
            best = extra if best is None else min(best, extra)
    return best


def _complete(buf: str, lo: int, hi: int) -> bool:
    return bool(buf) and (buf == "0" or buf[0] != "0") and lo <= int(buf) <= hi


class CompactGrammar(DescriptorGrammar):
    """Character-level grammar of compact answers for one query. Overrides ``start``, ``step`` and
    ``cost``; the token-level methods (``allowed``, ``advance_token``, ``accepts``) are inherited."""

    scheme = "compact"

    def __init__(self, scheme: str = "compact", size: int | tuple[int, int] = 16, labels: Iterable[str] = ()):
        rows, cols = grid_shape(size)
        self.layout = Layout(rows, cols, True)
        self.rows, self.cols = rows, cols
        self.targets = sorted({normalize_label(x) for x in labels} - {BACKGROUND})
        self.labels = sorted({*self.targets, BACKGROUND})
        self._allowed_cache: dict = {}
        self._token_cache: dict = {}

    # ---------------------------------------------------------------------------------- characters
    def start(self) -> CState:
        return CState(FREE)

    def _head_options(self, used: tuple) -> list[str]:
        opts = [x for x in self.targets if x not in used]
        return opts + [BACKGROUND] if not used else opts

    def _line_start(self, lo: int) -> CState:
        return CState(LINE, lo=lo)

    def step(self, s: CState, c: str) -> CState | None:
        ph, rows, cols = s.phase, self.rows, self.cols
        if ph == FREE:
            m = s.buf + c
            if SEG_OPEN.startswith(m):
                return CState(HEAD) if m == SEG_OPEN else CState(FREE, m)
            return CState(FREE, "<" if c == "<" else "")
        if ph == LIT:
            if c != s.buf[0]:
                return None
            if len(s.buf) > 1:
                return s._replace(buf=s.buf[1:])
            if s.then == END:
                return CState(END)
            return CState(s.then, used=s.used, lo=s.lo)
        if ph == HEAD:
            opts = self._head_options(s.used)
            if s.buf in opts and c in "|\n":
                if s.buf == BACKGROUND:
                    return CState(LIT, "</seg>", then=END) if c == "\n" else None
                used = (*s.used, s.buf)
                if c == "|":
                    return CState(LIT, " ", used=used, then=HEAD) if self._head_options(used) else None
                return CState(LINE, used=used, lo=0)
            q = s.buf + c
            return s._replace(buf=q) if any(o.startswith(q) for o in opts) else None
        if ph == LINE:
            if c == "<":
                return CState(LIT, SEG_CLOSE[1:], then=END)
            if c in _DIGITS and s.lo < rows and _extra_digits(c, s.lo, rows - 1) is not None:
                return CState(R0, c, s.used, s.lo)
            return None
        if ph in (R0, R1, C0, C1, K):
            lo, hi = self._range(s)
            if c in _DIGITS:
                q = s.buf + c
                if q[0] == "0" and len(q) > 1:
                    return None
                return s._replace(buf=q) if _extra_digits(q, lo, hi) is not None else None
            if not _complete(s.buf, lo, hi):
                return None
            v = int(s.buf)
            if ph == R0:
                if c == "-" and v < rows - 1:
                    return CState(R1, "", s.used, s.lo, first=v)
                return CState(C0, "", s.used, 0, r_hi=v) if c == ":" else None
            if ph == R1:
                return CState(C0, "", s.used, 0, r_hi=v) if c == ":" else None
            if ph == C0 and c == "-":
                return CState(C1, "", s.used, s.lo, first=v, r_hi=s.r_hi) if v < cols - 1 else None
            end_col = v if ph in (C0, C1) else s.lo - 1  # K: the span's last column is already in lo
            if ph in (C0, C1) and c == "=":
                if len(s.used) < 2:
                    return None
                return CState(K, "", s.used, end_col + 1, r_hi=s.r_hi)
            if c == ",":
                return CState(C0, "", s.used, end_col + 1, r_hi=s.r_hi) if end_col + 1 < cols else None
            if c == "\n":
                return CState(LINE, used=s.used, lo=s.r_hi + 1)
            return None
        return None  # END

    def _range(self, s: CState) -> tuple[int, int]:
        if s.phase == R0:
            return s.lo, self.rows - 1
        if s.phase == R1:
            return s.first + 1, self.rows - 1
        if s.phase == C0:
            return s.lo, self.cols - 1
        if s.phase == C1:
            return s.first + 1, self.cols - 1
        return 2, len(s.used)  # K

    def cost(self, s: CState) -> int:
        """Fewest characters, plus 1 for EOS, that finish the answer from ``s``."""
        ph = s.phase
        if ph == END:
            return 1
        if ph == FREE:
            return len(SEG_OPEN) - len(s.buf) + self.cost(CState(HEAD))
        if ph == LIT:
            if s.then == END:
                return len(s.buf) + 1
            return len(s.buf) + self.cost(CState(s.then, used=s.used, lo=s.lo))
        if ph == HEAD:
            best = min(len(o) - len(s.buf) for o in self._head_options(s.used) if o.startswith(s.buf))
            return best + 1 + _CLOSE
        if ph == LINE:
            return _CLOSE
        lo, hi = self._range(s)
        extra = _extra_digits(s.buf, lo, hi) if s.buf else 1
        extra = 10**6 if extra is None else extra
        if ph in (R0, R1):  # then ":" one digit "\n" and the close
            return extra + 3 + _CLOSE
        return extra + 1 + _CLOSE  # "\n" and the close


def _number_rx(hi: int) -> str:
    """Regex for an integer 0..hi without leading zeros."""
    return "(?:" + "|".join(str(v) for v in range(hi, -1, -1)) + ")"


def compact_regex(size: int | tuple[int, int] = 16, labels: Iterable[str] = ()) -> str:
    """A regex for a whole compact answer (free text without ``<``, then the block).

    Rows and columns are in range and labels allowed; the order and overlap rules and the label index
    bound are left to :class:`CompactGrammar` (a regex of them would be huge).
    """
    import re

    rows, cols = grid_shape(size)
    targets = sorted({normalize_label(x) for x in labels} - {BACKGROUND}, key=len, reverse=True)
    r, c = _number_rx(rows - 1), _number_rx(cols - 1)
    span = f"{c}(?:-{c})?(?:=[2-9][0-9]*)?"
    line = f"{r}(?:-{r})?:{span}(?:,{span})*\\n"
    empty = re.escape(BACKGROUND) + "\\n"
    if not targets:
        body = empty
    else:
        lab = "(?:" + "|".join(re.escape(t) for t in targets) + ")"
        body = f"(?:{empty}|{lab}(?:\\| {lab})*\\n(?:{line})*)"
    return "[^<]*" + re.escape(SEG_OPEN) + body + re.escape(SEG_CLOSE)
