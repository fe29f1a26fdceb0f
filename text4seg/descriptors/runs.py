"""Run-length machinery shared by the ``rrle``, ``irle`` and ``full`` schemes (``full`` is runs of 1).

* :func:`run_starts` / :func:`grid_runs`: the runs of equal labels of a grid (the encoders' hot path);
* :func:`parse_runs`, :func:`fit`, :func:`fast_row`, :func:`decode_rows`: the lenient decoder. Rows are
  split first, then each row is repaired on its own, so a bad row never shifts the rows after it: a run
  without a count counts 1, a run that overflows the row is cut, a short row is padded with its last
  label, extra rows are dropped and missing rows become ``others``. Work is linear in the input (rows and
  runs beyond the grid are not parsed);
* :func:`strict_rows`, :func:`strict_runs`: the strict decoder, raising
  :class:`~text4seg.descriptors.core.DescriptorError` naming the row, column and text of the first defect.

A run is a ``(label, count)`` pair; runs are row-major.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from text4seg.descriptors.core import (
    BACKGROUND,
    MAX_LABEL_CHARS,
    ROW_SEP,
    RUN_SEP,
    DescriptorError,
    Repair,
    as_grid,
    normalize_grid,
    normalize_label,
)

_MAX_COUNT_DIGITS = 7
_LEAD_COUNT = re.compile(r"[ \t]*(\d*)")
_GLUE = ",;"  # unknown run separators the lenient parser also accepts
_STRICT_RUN = re.compile(r"(.+) \*([1-9]\d*)")


def normal_text(text: str) -> bool:
    """True when no label in ``text`` (rows that :func:`fast_row` accepted: labels without ``*``, ``|``
    or outer spaces) changes under ``normalize_label``: no whitespace but single spaces (every other
    whitespace character is not printable), no ``<`` or ``>``. A few other unprintable characters
    also give False: "not certain", never a wrong True."""
    return text.isprintable() and "  " not in text and "<" not in text and ">" not in text


_COUNTS = {str(n): n for n in range(1, 1025)}  # canonical counts up to 1024 (no "0", "07", "+7", "٧")


class _Run(NamedTuple):
    label: str
    count: int


# ------------------------------------------------------------------------------------------- encoding
def run_starts(grid, row_wise: bool) -> tuple[list[str], list[int], int]:
    """``(labels, starts, cols)``: the normalised label and first cell of every run, row-major, with the
    cell count appended to ``starts`` (so run k covers ``starts[k]:starts[k + 1]``).

    Runs are found on the raw labels with one vectorised comparison (``row_wise`` also breaks them at
    every row start). A grid whose labels change under normalisation is normalised first, so labels
    that normalise alike merge into one run.
    """
    arr = as_grid(grid)
    cols = arr.shape[1]
    flat = arr.ravel()
    n = flat.shape[0]
    change = np.empty(n, dtype=bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    if row_wise:
        change[::cols] = True
    idx = change.nonzero()[0]
    labels = flat[idx].tolist()
    if any(normalize_label(lab) != lab for lab in set(labels)):
        return run_starts(normalize_grid(arr), row_wise)
    starts = idx.tolist()
    starts.append(n)
    return labels, starts, cols


def grid_runs(grid, row_wise: bool = True) -> list[list[tuple[str, int]]]:
    """Runs of equal normalised labels: one list of ``(label, count)`` per row (``row_wise``), or one
    list for the row-major flattened grid."""
    labels, starts, cols = run_starts(grid, row_wise)
    out: list[list[tuple[str, int]]] = []
    for lab, s, e in zip(labels, starts, starts[1:]):
        if not out or (row_wise and s % cols == 0):
            out.append([])
        out[-1].append((lab, e - s))
    return out


# ------------------------------------------------------------------------------------------ lenient
def parse_runs(row: str, max_cells: int, counted: bool, repairs: list[Repair], r: int | None) -> list[_Run]:
    """Lenient run parser: linear in ``len(row)``.

    Splits on ``|`` first; inside a piece, every ``*`` ends a run, its digits are the count and whatever
    follows is the next label (this recovers runs glued by unknown separators such as ``,`` or ``;``).
    A piece without ``*`` is one cell (reported as ``missing_count`` when ``counted``). Stops once
    ``max_cells`` cells are covered, so text beyond the row is never parsed.
    """
    runs: list[_Run] = []
    total = 0
    for piece in row.split("|", max_cells):
        if not piece.strip():
            repairs.append(Repair("bad_separator", r, "empty run"))
            continue
        parts = piece.split("*", max_cells)
        label = parts[0]
        for tail in parts[1:]:
            m = _LEAD_COUNT.match(tail)
            runs.append(_make_run(label, m.group(1), repairs, r))
            total += runs[-1].count
            label = tail[m.end() :].lstrip().lstrip(_GLUE)
            if total > max_cells:
                return runs
        if len(parts) == 1 or label.strip():
            if counted:
                repairs.append(Repair("missing_count", r, label.strip()[:40]))
            runs.append(_make_run(label, None, repairs, r))
            total += 1
        if total > max_cells:
            break
    return runs


def _make_run(label: str, digits: str | None, repairs: list[Repair], r: int | None) -> _Run:
    text = label.strip()
    if len(text) > MAX_LABEL_CHARS:
        repairs.append(Repair("long_label", r, text[:40]))
        text = text[:MAX_LABEL_CHARS].strip()
    if not text:
        text = BACKGROUND
        repairs.append(Repair("empty_label", r, label[:40]))
    if digits is None:
        return _Run(text, 1)
    if digits == "":
        repairs.append(Repair("missing_count", r, text[:40]))
        return _Run(text, 1)
    significant = digits.lstrip("0")
    if not significant or len(significant) > _MAX_COUNT_DIGITS:
        repairs.append(Repair("bad_count", r, digits[:20]))
        return _Run(text, 10**_MAX_COUNT_DIGITS if significant else 0)
    return _Run(text, int(significant))


def fit(runs: list[_Run], n: int, repairs: list[Repair], r: int | None) -> list[_Run]:
    """Crop or pad runs to exactly ``n`` cells (padding repeats the last label)."""
    total = 0
    out: list[_Run] = []
    for run in runs:
        if run.count > 0:
            take = min(run.count, n - total)
            out.append(_Run(run.label, take))
            total += take
            if total == n:
                break
    claimed = sum(run.count for run in runs)
    if claimed > n:
        repairs.append(Repair("row_long", r, f"{claimed} cells for {n}"))
    elif claimed < n:
        repairs.append(Repair("row_short", r, f"{claimed} cells for {n}"))
        out.append(_Run(out[-1].label if out else BACKGROUND, n - total))
    return out


def fast_row(line: str, cols: int, counted: bool) -> list[_Run] | None:
    """A well-formed row parsed with plain splits; None when anything needs the lenient parser.

    Accepts exactly what the lenient parser would read without a repair, so both give the same runs.
    """
    out: list[_Run] = []
    total = 0
    runs = line.split(RUN_SEP)
    # no "*" or "|" in a label: the line's are the runs' " *" (counted) and the separators' "| "
    if line.count("*") != (len(runs) if counted else 0) or line.count("|") != len(runs) - 1:
        return None
    for run in runs:
        if counted:
            label, sep, digits = run.rpartition(" *")
            count = _COUNTS.get(digits)  # the usual counts, canonical; else the checks below
            if count is None:
                if (
                    not sep
                    or not (digits.isascii() and digits.isdigit())
                    or digits[0] == "0"
                    or len(digits) > 7
                ):
                    return None
                count = int(digits)
        else:
            label, count = run, 1
        if not label or label[0].isspace() or label[-1].isspace() or len(label) > MAX_LABEL_CHARS:
            return None
        out.append((label, count))
        total += count
    return out if total == cols else None


def _split_rows(body: str, rows: int, repairs: list[Repair]) -> list[str]:
    text = body.strip("\n")
    lines = [ln for ln in text.split("\n", rows * 4) if ln.strip()][: rows + 1]
    if len(lines) > rows:
        repairs.append(Repair("extra_rows", None, f"more than {rows} rows"))
        lines = lines[:rows]
    elif len(lines) < rows:
        repairs.append(Repair("missing_rows", None, f"{len(lines)} rows for {rows}"))
    return lines


def decode_rows(body: str, rows: int, cols: int, repairs: list[Repair], counted: bool) -> list[_Run]:
    """Lenient decoder of ``rows`` lines of runs (``counted``: ``label *count``; else one label a cell)."""
    return checked_rows(body, rows, cols, repairs, counted)[0]


def checked_rows(
    body: str, rows: int, cols: int, repairs: list[Repair], counted: bool
) -> tuple[list[_Run], bool]:
    """:func:`decode_rows` and whether :func:`strict_decode_rows` accepts ``body`` (with the same runs).

    True only where that is certain from this decode: ``body`` is exactly the ``rows`` lines read here
    (stripped) joined by ``"\\n "`` and ended by ``"\\n"`` (what the strict row split gives back), every
    row read by :func:`fast_row` (which the strict parser accepts with the
    same runs: ASCII counts without a leading zero, labels without ``*``, ``|`` or outer spaces, cells
    summing to ``cols``) and every label normalised (:func:`normal_text` of the rows). False
    means "not certain": the caller runs the strict decoder.
    """
    out: list[_Run] = []
    lines = _split_rows(body, rows, repairs)
    stripped = [line.strip() for line in lines]
    clean = True
    seen: dict[str, list] = {}  # well-formed rows repeat (background rows above all): parse each once
    for r, line in enumerate(stripped):
        runs = seen.get(line)
        if runs is None:
            runs = fast_row(line, cols, counted)
            if runs is None:
                runs = fit(parse_runs(line, cols, counted, repairs, r), cols, repairs, r)
                clean = False
            else:
                seen[line] = runs
        out.extend(runs)
    if len(lines) < rows:
        out.append(_Run(BACKGROUND, (rows - len(lines)) * cols))
    # the strict layout: the rows read here joined by "\n " and ended by "\n", nothing else; then
    # no row holds a label normalize_label would change (one search over them all)
    clean = clean and not repairs and body == ROW_SEP.join(stripped) + "\n"
    return out, clean and normal_text("".join(stripped))


# ------------------------------------------------------------------------------------------- strict
def strict_rows(body: str, rows: int) -> list[str]:
    """The ``rows`` lines of ``body`` (joined by ``"\\n "``, ending with ``"\\n"``), without the space."""
    if not body.endswith("\n"):
        raise DescriptorError("descriptor text must end with a newline", text=body[-20:])
    lines = body[:-1].split("\n")
    if len(lines) != rows:
        raise DescriptorError(f"expected {rows} rows, found {len(lines)}", row=min(len(lines), rows))
    for r, line in enumerate(lines):
        if r and not line.startswith(" "):
            raise DescriptorError("rows after the first must start with one space", row=r, text=line)
    return [line[1:] if r else line for r, line in enumerate(lines)]


def strict_runs(line: str, r: int | None, cols: int, counted: bool) -> list[_Run]:
    """The runs of one line covering exactly ``cols`` cells, joined by ``"| "``."""
    out: list[_Run] = []
    col = 0
    for run in line.split(RUN_SEP):
        if counted:
            m = _STRICT_RUN.fullmatch(run)
            if not m:
                raise DescriptorError("expected 'label *count'", row=r, col=col, text=run)
            label, count = m.group(1), int(m.group(2))
        else:
            label, count = run, 1
        if label != normalize_label(label) or len(label) > MAX_LABEL_CHARS:
            raise DescriptorError("malformed label", row=r, col=col, text=run)
        if col + count > cols:
            raise DescriptorError(f"runs exceed the {cols} cells of the row", row=r, col=col, text=run)
        out.append(_Run(label, count))
        col += count
    if col != cols:
        raise DescriptorError(f"runs cover {col} of {cols} cells", row=r, col=col, text=line)
    return out


def strict_decode_rows(body: str, rows: int, cols: int, counted: bool) -> list[_Run]:
    """Strict decoder of ``rows`` lines of runs (``counted``: ``label *count``; else one label a cell)."""
    lines = strict_rows(body, rows)
    return [run for r, line in enumerate(lines) for run in strict_runs(line, r, cols, counted)]
