"""The ``rrle`` scheme (row-wise run-length; the default, and what the released Text4Seg models write).

Format
------
Each grid row is a list of runs ``"<label> *<count>"`` (the count is always written, ``*1`` included),
runs joined by ``"| "``; rows joined by ``"\\n "`` (a newline, then one space); a final ``"\\n"``.
Labels are normalised (:func:`text4seg.descriptors.core.normalize_label`); ``others`` is background.

Worked example (4 x 4, a dog in the middle)::

    others  others  others  others
    others  dog     dog     others      "others *4\\n others *1| dog *2| others *1\\n"
    others  dog     dog     dog         " others *1| dog *3\\n others *4\\n"
    others  others  others  others

This text must stay byte-identical: the released Text4Seg models were trained on it.
The lenient and strict decoders are :mod:`text4seg.descriptors.runs`'; the grammar, regex and budget
are :mod:`text4seg.descriptors.grammar`'s run-length ones with a ``rows x cols`` counted layout. The exact
EBNF (:func:`ebnf`; worked example in :mod:`text4seg.descriptors.ebnf`): ``rows`` rows joined by
``"\\n "``, then ``"\\n"``; a row is runs ``LABEL " *" COUNT`` joined by ``"| "`` whose counts (1..cols, no
leading zero) sum to exactly ``cols``, enforced by one rule per number of cells left:
``r{c} ::= lab " *" ("c" | "k| " r{c-k} ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from text4seg.descriptors.core import MAX_FREE, ROW_SEP, RUN_SEP
from text4seg.descriptors.ebnf import answer_rules, label_rule, rows_rule
from text4seg.descriptors.grammar import Layout, count_rules, run_scheme
from text4seg.descriptors.runs import checked_rows, decode_rows, run_starts, strict_decode_rows


def encode(grid) -> str:
    """R-RLE text of a 2-D grid of labels (the hot path: one comprehension over the runs)."""
    labels, starts, cols = run_starts(grid, row_wise=True)
    parts = [
        f"{RUN_SEP if s % cols else ROW_SEP}{lab} *{e - s}" for lab, s, e in zip(labels, starts, starts[1:])
    ]
    parts[0] = parts[0][2:]  # no separator before the first run
    return "".join(parts) + "\n"


lenient = partial(decode_rows, counted=True)
strict = partial(strict_decode_rows, counted=True)
checked = partial(checked_rows, counted=True)


def layout(rows: int, cols: int) -> Layout:
    """The run layout of a ``rows x cols`` grid in this scheme."""
    return Layout(rows, cols, True)


def ebnf(rows: int, cols: int, labels: Sequence[str] = (), max_free: int | None = MAX_FREE) -> str:
    """Exact grammar of an R-RLE answer (row sums enforced)."""
    return answer_rules([label_rule(labels), *count_rules(cols), rows_rule(f"r{cols}", rows)], max_free)


RRLE = run_scheme("row-wise run-length (paper)", encode, lenient, strict, layout, ebnf, checked)
