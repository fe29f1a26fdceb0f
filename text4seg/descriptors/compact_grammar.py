"""Constrained decoding of the compact scheme (:mod:`text4seg.descriptors.compact`): its character
grammar, regex, exact EBNF and budget.

Character grammar
-----------------
:class:`CompactGrammar` accepts, for a ``rows x cols`` grid and allowed labels ``L`` (the query's
targets)::

    FREE* "<seg>" ( "others\\n" | HEAD "\\n" LINE* ) "</seg>" EOS
    HEAD = l1 ("| " l2)*                 distinct labels of L
    LINE = ROWS ":" SPAN ("," SPAN)* "\\n"
    ROWS = r | r0 "-" r1                 ascending, r0 < r1 <= rows - 1, never overlapping earlier lines
    SPAN = c | c0 "-" c1, then "=" k     ascending within the line, c1 <= cols - 1, 2 <= k <= len(HEAD)

Numbers are written without leading zeros. Every accepted answer decodes with
``decode(text, size, "compact", strict=True)``.

Exact EBNF
----------
:func:`ebnf` states the same language: ``"others\\n"`` (empty grid), or the label line (distinct allowed
labels joined by ``"| "``) and ``"\\n"``, then lines ``ROWS ":" SPANS "\\n"``: rows ascending and not
overlapping, spans ascending within ``0..cols-1``, a span's label index ``=k`` in ``2..len(label line)``;
numbers without leading zeros.

With many labels: the label line is a sequence of *distinct* labels, which an EBNF can only state with one
rule per subset of labels already used (``2**m`` rules for ``m`` labels), and the span rules are repeated
for every possible label-line length (the ``=k`` bound). Block compile time on the Qwen vocabulary (last
table of ``benchmarks/constrain.py``, 2 loaded cores): 6 ms for 1 label, 15 ms for 2, 30 ms for 4, 60 ms
for 6, 180 ms for 8 (any order); above :data:`COMPACT_ANY_ORDER_MAX` = 8 the label line must list the
chosen labels in sorted order (``m**2`` rules: 80 ms for 9, 200 ms for 16, 750 ms for 32), still exact
for strict decoding but narrower than the character grammar (it rejects other orders). Compiled grammars
are cached per label set, so a fixed semantic vocabulary pays this once; referring queries (one label)
stay far below the 25 ms target.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from text4seg.descriptors.core import (
    BACKGROUND,
    MAX_FREE,
    RUN_SEP,
    SEG_CLOSE,
    SEG_OPEN,
    Budget,
    allowed_labels,
    normalize_label,
)
from text4seg.descriptors.ebnf import answer_rules, ebnf_literal
from text4seg.descriptors.grammar import END, FREE, Grammar, seg_prefix

COMPACT_ANY_ORDER_MAX = 8  # the EBNF's label line in any order up to this many labels, else sorted

# CompactGrammar's own phases (FREE and END are text4seg.descriptors.grammar's)
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


class CompactGrammar(Grammar):
    """Character-level grammar of compact answers for one query (see the module docstring)."""

    def __init__(self, rows: int, cols: int, labels: Sequence[str] = ()):
        self.rows, self.cols = rows, cols
        self.targets = sorted({normalize_label(x) for x in labels} - {BACKGROUND})

    def start(self) -> CState:
        return CState(FREE)

    def _head_options(self, used: tuple) -> list[str]:
        opts = [x for x in self.targets if x not in used]
        return opts + [BACKGROUND] if not used else opts

    def step(self, s: CState, c: str) -> CState | None:
        ph, rows, cols = s.phase, self.rows, self.cols
        if ph == FREE:
            m = seg_prefix(s.buf, c)
            return CState(HEAD) if m == SEG_OPEN else CState(FREE, m)
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


def regex(rows: int, cols: int, labels: Sequence[str] = ()) -> str:
    """A regex for a whole compact answer (free text without ``<``, then the block).

    Rows and columns are in range and labels allowed; the order and overlap rules and the label index
    bound are left to :class:`CompactGrammar` (a regex of them would be huge).
    """
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


def budget(rows: int, cols: int, labels: Sequence[str] = ()) -> Budget:
    """Characters of the shortest and longest block :class:`CompactGrammar` accepts.

    Shortest: ``others`` or the shortest target, then ``"\\n"``. Longest: every target in the label
    line, then one line per row, each listing every column as a span of its own with the widest
    ``=k`` (single rows and single columns beat ranges by at least the separator they add).
    """
    targets = {normalize_label(x) for x in labels} - {BACKGROUND}
    empty = len(BACKGROUND) + 1
    if not targets:
        return Budget(empty, empty)
    k = 1 + len(str(len(targets))) if len(targets) > 1 else 0  # "=k", k <= the number of labels
    head = sum(len(t) for t in targets) + len(RUN_SEP) * (len(targets) - 1) + 1
    spans = sum(len(str(col)) + k for col in range(cols)) + cols - 1  # "," between spans
    lines = sum(len(str(row)) + len(":") + spans + 1 for row in range(rows))
    return Budget(min(empty, min(len(t) for t in targets) + 1), max(empty, head + lines))


def grammar(rows: int, cols: int, labels: Sequence[str] = ()) -> CompactGrammar:
    return CompactGrammar(rows, cols, labels)


def _span_rules(n: int, rows: int, cols: int) -> list[str]:
    """EBNF rules for the spans and row lines after a label line of ``n`` labels (prefix ``{n}``)."""
    out = []
    kx = ""
    if n >= 2:
        out.append(f"k{n} ::= " + " | ".join(ebnf_literal(str(k)) for k in range(2, n + 1)))
        kx = f'("=" k{n})'
    for c in range(cols):
        # t: after a span ending at column c; s: a span starting exactly at c; sp: a span starting >= c;
        # e: the end column of a range, >= c
        parts = []
        if kx:
            parts.append(kx + "?")
        if c + 1 < cols:
            parts.append(f'("," sp{n}_{c + 1})?')
        out.append(f"t{n}_{c} ::= " + (" ".join(parts) if parts else '""'))
        dash = f' | "{c}-" e{n}_{c + 1}' if c + 1 < cols else ""
        out.append(f's{n}_{c} ::= "{c}" t{n}_{c}{dash}')
        out.append(f"sp{n}_{c} ::= " + " | ".join(f"s{n}_{x}" for x in range(c, cols)))
        out.append(f"e{n}_{c} ::= " + " | ".join(f'"{x}" t{n}_{x}' for x in range(c, cols)))
    for r in range(rows):
        # q: a line whose rows start exactly at r; l: the lines from row >= r on (possibly none)
        rng = [f'"{r}-{r1}:" sp{n}_0 "\\n" l{n}_{r1 + 1}' for r1 in range(r + 1, rows)]
        out.append(f"q{n}_{r} ::= " + " | ".join([f'"{r}:" sp{n}_0 "\\n" l{n}_{r + 1}', *rng]))
    for r in range(rows + 1):
        out.append(f"l{n}_{r} ::= " + " | ".join(['""', *(f"q{n}_{x}" for x in range(r, rows))]))
    return out


def ebnf(
    rows: int,
    cols: int,
    labels: Sequence[str] = (),
    max_free: int | None = MAX_FREE,
    any_order_max: int = COMPACT_ANY_ORDER_MAX,
) -> str:
    """Exact grammar of a compact answer (see the module docstring for many labels)."""
    targets = [x for x in allowed_labels(labels) if x != BACKGROUND]
    m = len(targets)
    lits = [ebnf_literal(x) for x in targets]
    empty = ebnf_literal(BACKGROUND + "\n")
    if not m:
        return answer_rules([f"body ::= {empty}"], max_free)
    rules: list[str] = []
    for n in range(1, m + 1):
        rules += _span_rules(n, rows, cols)
    if m <= any_order_max:
        # h{U}: the label line after the labels in bit set U (any order, each at most once)
        full = (1 << m) - 1
        for used in range(full):
            alts = []
            n = bin(used).count("1") + 1
            for i in range(m):
                if used >> i & 1:
                    continue
                nxt = used | 1 << i
                more = f' | "| " h{nxt}' if nxt != full else ""
                alts.append(f'{lits[i]} ("\\n" l{n}_0{more})')
            rules.append(f"h{used} ::= " + " | ".join(alts))
        rules.append(f"body ::= {empty} | h0")
    else:
        # g{i}_{n}: label i is the n-th of the label line; later labels have larger indices
        for n in range(1, m + 1):
            for i in range(n - 1, m):
                later = [f'"| " g{j}_{n + 1}' for j in range(i + 1, m)] if n < m else []
                rules.append(f"g{i}_{n} ::= {lits[i]} (" + " | ".join([f'"\\n" l{n}_0', *later]) + ")")
        rules.append(f"body ::= {empty} | " + " | ".join(f"g{i}_1" for i in range(m)))
    return answer_rules(rules, max_free)
