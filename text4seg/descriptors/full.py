"""The ``full`` scheme (full length: a label per cell).

Format
------
Every cell's label, cells joined by ``"| "``, rows joined by ``"\\n "``, then ``"\\n"``. Labels are
normalised; ``others`` is background.

Worked example (the 4 x 4 dog of :mod:`text4seg.descriptors.rrle`)::

    "others| others| others| others\\n others| dog| dog| others\\n"
    " others| dog| dog| dog\\n others| others| others| others\\n"

Decoding reads it as runs of one cell (:mod:`text4seg.descriptors.runs`); the grammar, regex (exact
here) and budget are :mod:`text4seg.descriptors.grammar`'s with a ``rows x cols`` layout without counts;
the exact EBNF (:func:`ebnf`): ``cols`` labels per row joined by ``"| "``, rows as in R-RLE.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from text4seg.descriptors.core import MAX_FREE, ROW_SEP, RUN_SEP, as_grid, normalize_label
from text4seg.descriptors.ebnf import answer_rules, label_rule, rows_rule
from text4seg.descriptors.grammar import Layout, run_scheme
from text4seg.descriptors.runs import checked_rows, decode_rows, strict_decode_rows


def encode(grid) -> str:
    """Full-length text of a 2-D grid of labels."""
    rows = [RUN_SEP.join([normalize_label(x) for x in row]) for row in as_grid(grid).tolist()]
    return ROW_SEP.join(rows) + "\n"


lenient = partial(decode_rows, counted=False)
strict = partial(strict_decode_rows, counted=False)
checked = partial(checked_rows, counted=False)


def layout(rows: int, cols: int) -> Layout:
    """The run layout of a ``rows x cols`` grid in this scheme."""
    return Layout(rows, cols, False)


def ebnf(rows: int, cols: int, labels: Sequence[str] = (), max_free: int | None = MAX_FREE) -> str:
    """Exact grammar of a full-length answer: ``cols`` labels per row."""
    row = "lab" + ' "| " lab' * (cols - 1)
    return answer_rules([label_rule(labels), f"row ::= {row}", rows_rule("row", rows)], max_free)


FULL = run_scheme("full length, a label per cell", encode, lenient, strict, layout, ebnf, checked)
