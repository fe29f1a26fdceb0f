"""The compact descriptor scheme (``scheme="compact"``): a sparse, lossless, still human-readable form.

Why it is shorter
-----------------
Paper R-RLE spends its tokens on three things a model need not write: the background (every row of
``others *16`` costs 5 Qwen tokens), the label (a referring expression repeated in every run), and rows
that repeat the row above. The compact form writes the labels once, then only the rows that hold
foreground, as column spans, and merges identical consecutive rows into one line::

    line 1      the labels, joined by "| "  (``others`` alone when the grid has no foreground)
    each line   ROWS ":" SPANS
                ROWS  = r | r0-r1           0-based, inclusive; rows not written are background
                SPANS = span ("," span)*    span = c | c0-c1, then "=k" for the k-th label (k >= 2)

Worked example (the 4 x 4 dog of :mod:`text4seg.descriptors.rrle`)::

    R-RLE   "others *4\\n others *1| dog *2| others *1\\n others *1| dog *3\\n others *4\\n"   (28 tokens)
    compact "dog\\n1:1-2\\n2:1-3\\n"                                                       (14 tokens)

and a two-label map, rows 0-3 sky, rows 4-7 sky with a boat at columns 5-9 of rows 5-6::

    "sky| boat\\n0-4:0-15\\n5-6:0-4,5-9=2,10-15\\n7:0-15\\n"

(Qwen2 tokens, measured by ``benchmarks/tokens.py``.) Digits are single tokens in Qwen's vocabulary, so
every span costs 3-5 tokens whatever the label length; no spaces are written, since each costs a token.

What a model must learn to write it: the label once, then for each object row the first and last column
of each span (absolute positions, which the model reads off the image tokens) and when a row equals the
one above (a range). It never counts cells: an error in one line cannot shift another row or column, and
a truncated answer loses only the rows it did not reach.

Decoding follows the codec's contract: the lenient decoder never raises, repairs per line (a bad line is
skipped, out-of-range rows and columns are clipped, overlaps keep the later span), reports each repair,
and is linear in the input; the strict decoder raises :class:`~.core.DescriptorError` naming
the row, column and text.

Constrained decoding (the character grammar, the regex, the exact EBNF and the budget) is
:mod:`text4seg.descriptors.compact_grammar`.
"""

from __future__ import annotations

import re

import numpy as np

from text4seg.descriptors.compact_grammar import budget, ebnf, grammar, regex
from text4seg.descriptors.core import BACKGROUND, RUN_SEP, DescriptorError, Repair, Scheme, normalize_label
from text4seg.descriptors.runs import grid_runs

_NUM = r"(\d{1,7})"
_LINE = re.compile(r"\s*" + _NUM + r"(?:\s*-\s*" + _NUM + r")?\s*:(.*)")
_SPAN = re.compile(r"\s*" + _NUM + r"(?:\s*-\s*" + _NUM + r")?(?:\s*=\s*" + _NUM + r")?\s*")
_STRICT_LINE = re.compile(r"(0|[1-9]\d*)(?:-([1-9]\d*))?:(.+)")
_STRICT_SPAN = re.compile(r"(0|[1-9]\d*)(?:-([1-9]\d*))?(?:=([2-9]|[1-9]\d+))?")


def _span_text(start: int, end: int, k: int) -> str:
    s = str(start) if start == end else f"{start}-{end}"
    return s if k == 1 else f"{s}={k}"


def encode(grid) -> str:
    """Write a grid of labels in the compact form (labels normalised, as by :func:`text4seg.encode`)."""
    rows = grid_runs(grid)
    index: dict[str, int] = {}
    lines: list[tuple[int, int, str]] = []  # (first row, last row, spans)
    for r, runs in enumerate(rows):
        spans, col = [], 0
        for lab, n in runs:
            if lab != BACKGROUND:
                k = index.setdefault(lab, len(index) + 1)
                spans.append(_span_text(col, col + n - 1, k))
            col += n
        if not spans:
            continue
        text = ",".join(spans)
        if lines and lines[-1][1] == r - 1 and lines[-1][2] == text:
            lines[-1] = (lines[-1][0], r, text)
        else:
            lines.append((r, r, text))
    if not index:
        return BACKGROUND + "\n"
    head = RUN_SEP.join(index)
    body = "".join(f"{a}:{t}\n" if a == b else f"{a}-{b}:{t}\n" for a, b, t in lines)
    return head + "\n" + body


def _to_runs(codes: np.ndarray, names: list[str]) -> list[tuple[str, int]]:
    """Row-major runs of an int code grid (code 0 = background)."""
    out: list[tuple[str, int]] = []
    for row in codes.tolist():
        prev, n = row[0], 0
        for c in row:
            if c == prev:
                n += 1
            else:
                out.append((names[prev], n))
                prev, n = c, 1
        out.append((names[prev], n))
    return out


def _parse_head(line: str) -> list[str]:
    return [normalize_label(x) for x in line.split("|")]


def lenient(body: str, rows: int, cols: int, repairs: list) -> list[tuple[str, int]]:
    """Parse compact text into row-major ``(label, count)`` runs covering ``rows * cols`` cells."""
    codes = np.zeros((rows, cols), dtype=np.int64)
    lines = [ln for ln in body.split("\n", rows * 4 + 2)[: rows * 4 + 1] if ln.strip()]
    if not lines:
        repairs.append(Repair("missing_rows", None, "no labels and no rows"))
        return [(BACKGROUND, rows * cols)]
    names = [BACKGROUND]
    head = lines.pop(0)  # the label line (always first, so any label text round-trips)
    if head.strip() != BACKGROUND:
        names += [lab if lab != BACKGROUND else "object" for lab in _parse_head(head)[: rows * cols]]
    elif lines:
        repairs.append(Repair("extra_rows", None, "rows after an empty ('others') label line"))
        return [(BACKGROUND, rows * cols)]
    if len(lines) > rows:
        repairs.append(Repair("extra_rows", None, f"{len(lines)} row lines for {rows} rows"))
        lines = lines[:rows]
    written = np.zeros(rows, dtype=bool)
    for line in lines:
        m = _LINE.fullmatch(line)
        if not m:
            repairs.append(Repair("bad_line", None, line[:40]))
            continue
        r0 = int(m.group(1))
        r1 = int(m.group(2)) if m.group(2) else r0
        if r1 < r0 or r0 >= rows:
            repairs.append(Repair("out_of_range", r0, line[:40]))
            continue
        if r1 >= rows:
            repairs.append(Repair("out_of_range", r0, f"rows {r0}-{r1} clipped to {rows - 1}"))
            r1 = rows - 1
        if written[r0 : r1 + 1].any():
            repairs.append(Repair("overlap", r0, "row written twice: the later line wins"))
        written[r0 : r1 + 1] = True
        codes[r0 : r1 + 1] = 0
        for piece in m.group(3).split(",", cols):
            s = _SPAN.fullmatch(piece)
            if not s:
                repairs.append(Repair("bad_span", r0, piece[:40]))
                continue
            c0 = int(s.group(1))
            c1 = int(s.group(2)) if s.group(2) else c0
            k = int(s.group(3)) if s.group(3) else 1
            if k >= len(names):
                repairs.append(Repair("bad_span", r0, f"label {k} of {len(names) - 1}"))
                continue
            if c1 < c0 or c0 >= cols:
                repairs.append(Repair("out_of_range", r0, piece[:40]))
                continue
            if c1 >= cols:
                repairs.append(Repair("out_of_range", r0, f"columns {c0}-{c1} clipped to {cols - 1}"))
                c1 = cols - 1
            codes[r0 : r1 + 1, c0 : c1 + 1] = k
    return _to_runs(codes, names)


def strict(body: str, rows: int, cols: int) -> list[tuple[str, int]]:
    if not body.endswith("\n"):
        raise DescriptorError("descriptor text must end with a newline", text=body[-20:])
    head, *lines = body[:-1].split("\n")
    if head == BACKGROUND:
        if lines:
            raise DescriptorError("an empty grid ('others') has no row lines", row=0, text=lines[0])
        return [(BACKGROUND, rows * cols)]
    names = head.split(RUN_SEP)
    for lab in names:
        if lab != normalize_label(lab) or lab == BACKGROUND or "|" in lab:
            raise DescriptorError("malformed label in the label line", text=lab)
    if len(set(names)) != len(names):
        raise DescriptorError("a label is listed twice", text=head)
    codes = np.zeros((rows, cols), dtype=np.int64)
    next_row = 0
    for line in lines:
        m = _STRICT_LINE.fullmatch(line)
        if not m:
            raise DescriptorError("expected 'ROWS:SPANS'", row=next_row, text=line)
        r0 = int(m.group(1))
        r1 = int(m.group(2)) if m.group(2) else r0
        if r0 < next_row or r1 < r0 or r1 >= rows:
            raise DescriptorError(f"rows must ascend within 0-{rows - 1}", row=r0, text=line)
        next_col = 0
        for span in m.group(3).split(","):
            s = _STRICT_SPAN.fullmatch(span)
            if not s:
                raise DescriptorError("expected 'c', 'c0-c1' or 'c0-c1=k'", row=r0, col=next_col, text=span)
            c0 = int(s.group(1))
            c1 = int(s.group(2)) if s.group(2) else c0
            k = int(s.group(3)) if s.group(3) else 1
            if c0 < next_col or c1 < c0 or c1 >= cols:
                raise DescriptorError(f"spans must ascend within 0-{cols - 1}", row=r0, col=c0, text=span)
            if k > len(names):
                raise DescriptorError(
                    f"label {k} but the label line has {len(names)}", row=r0, col=c0, text=span
                )
            codes[r0 : r1 + 1, c0 : c1 + 1] = k
            next_col = c1 + 1
        next_row = r1 + 1
    return _to_runs(codes, [BACKGROUND, *names])


COMPACT = Scheme(
    "sparse spans, labels once (text4seg)", encode, lenient, strict, grammar, regex, budget, ebnf
)
