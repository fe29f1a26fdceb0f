"""The ``irle`` scheme (image-wise run-length).

Format
------
The row-major flattened grid as one row of runs ``"<label> *<count>"`` (``*1`` included), runs joined
by ``"| "``, then ``"\\n"``. Labels are normalised; ``others`` is background.

Worked example (the 4 x 4 dog of :mod:`text4seg.descriptors.rrle`)::

    "others *5| dog *2| others *2| dog *3| others *4\\n"

A lenient decode also accepts the one row wrapped over several lines. The grammar, regex and budget
are :mod:`text4seg.descriptors.grammar`'s run-length ones with a ``1 x (rows * cols)`` counted layout;
the exact EBNF (:func:`ebnf`) is R-RLE's with one row of ``rows * cols`` cells.
"""

from __future__ import annotations

from collections.abc import Sequence

from text4seg.descriptors.core import MAX_FREE, RUN_SEP, DescriptorError
from text4seg.descriptors.ebnf import answer_rules, label_rule, rows_rule
from text4seg.descriptors.grammar import Layout, count_rules, run_scheme
from text4seg.descriptors.runs import fast_row, fit, normal_text, parse_runs, run_starts, strict_runs


def encode(grid) -> str:
    """I-RLE text of a 2-D grid of labels."""
    labels, starts, _ = run_starts(grid, row_wise=False)
    parts = [f"{RUN_SEP}{lab} *{e - s}" for lab, s, e in zip(labels, starts, starts[1:])]
    parts[0] = parts[0][2:]  # no separator before the first run
    return "".join(parts) + "\n"


def lenient(body: str, rows: int, cols: int, repairs: list) -> list:
    return checked(body, rows, cols, repairs)[0]


def checked(body: str, rows: int, cols: int, repairs: list) -> tuple[list, bool]:
    """The lenient runs and whether :func:`strict` accepts ``body`` with the same runs: one line ending
    with the newline, read whole by :func:`fast_row` (its runs are the strict parser's), with normalised
    labels (False: not certain)."""
    n = rows * cols
    flat_text = " ".join(body.strip().split("\n", n))  # a wrapped one-line answer
    runs = fast_row(flat_text, n, True)
    if runs is None:
        return fit(parse_runs(flat_text, n, True, repairs, None), n, repairs, None), False
    clean = body[:-1] == flat_text and body.endswith("\n") and not repairs
    return runs, clean and normal_text(flat_text)


def strict(body: str, rows: int, cols: int) -> list:
    if not body.endswith("\n") or "\n" in body[:-1]:
        raise DescriptorError("irle text must be one line ending with a newline", text=body[:80])
    return strict_runs(body[:-1], None, rows * cols, True)


def layout(rows: int, cols: int) -> Layout:
    """The run layout of a ``rows x cols`` grid in this scheme."""
    return Layout(1, rows * cols, True)


def ebnf(rows: int, cols: int, labels: Sequence[str] = (), max_free: int | None = MAX_FREE) -> str:
    """Exact grammar of an I-RLE answer: one row of ``rows * cols`` cells (its sum enforced)."""
    n = rows * cols
    return answer_rules([label_rule(labels), *count_rules(n), rows_rule(f"r{n}", 1)], max_free)


IRLE = run_scheme("image-wise run-length", encode, lenient, strict, layout, ebnf, checked)
