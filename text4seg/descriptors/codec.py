"""Semantic descriptors: a grid of text labels <-> text, and back from untrusted model output.

The format
----------
A mask is sampled to a ``rows x cols`` grid (16 x 16 by default, see :mod:`.grid`); every cell
holds a text label, ``others`` for background. Three schemes write the grid as text:

``rrle`` (row-wise run-length, the default; what the released Text4Seg models write)
    Each row is a list of runs ``"<label> *<count>"`` (the count is always written, ``*1`` included),
    runs joined by ``"| "``; rows joined by ``"\\n "`` (a newline, then one space); a final ``"\\n"``.

``irle`` (image-wise run-length)
    The row-major flattened grid as one row of runs, then ``"\\n"``.

``full`` (full length)
    Every cell's label, cells joined by ``"| "``, rows joined by ``"\\n "``, then ``"\\n"``.

An answer wraps the text as ``"<seg>" + text + "</seg>"``, after a template sentence.

Worked example (4 x 4, a dog in the middle)::

    others  others  others  others
    others  dog     dog     others      rrle: "others *4\\n others *1| dog *2| others *1\\n"
    others  dog     dog     dog               " others *1| dog *3\\n others *4\\n"
    others  others  others  others      irle: "others *5| dog *2| others *2| dog *3| others *4\\n"

    full: "others| others| others| others\\n others| dog| dog| others\\n ..."

Label normalisation (applied by :func:`encode`, so ``decode(encode(g)).grid`` equals
``normalize_grid(g)`` exactly): ``|`` becomes ``/``, ``*`` becomes ``+``, ``<`` and ``>`` become ``(``
and ``)``, every run of whitespace (newlines included) becomes one space, leading and trailing spaces are
dropped, and an empty label becomes ``object``. Background is the literal ``others``.

Decoding model output
---------------------
:func:`decode` is lenient by default and never raises on a ``str``. It takes the first ``<seg>`` block
(later blocks are ignored and reported; a missing ``</seg>`` is accepted), or the whole text when there
is no tag. Rows are split first, then each row is repaired on its own, so a bad row never shifts the rows
after it: a run without a count counts 1, a run that overflows the row is cut, a short row is padded
with its last label, extra rows are dropped and missing rows become ``others``. Each repair is reported
in :attr:`Decoded.repairs`. Work is linear in the input (rows and runs beyond the grid are not parsed).
``strict=True`` raises :class:`DescriptorError` naming the row, column and text at the first defect.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from typing import NamedTuple

import numpy as np

BACKGROUND = "others"
SEG_OPEN, SEG_CLOSE = "<seg>", "</seg>"
RUN_SEP, ROW_SEP = "| ", "\n "

_WS = re.compile(r"\s+")
_LABEL_TABLE = str.maketrans({"|": "/", "*": "+", "<": "(", ">": ")"})
_MAX_COUNT_DIGITS = 7
MAX_LABEL_CHARS = 512  # the lenient decoder cuts longer labels (keeps the grid array small)


class DescriptorError(ValueError):
    """Strict decoding failed. ``row`` and ``col`` are 0-based grid coordinates (``col`` may be None)."""

    def __init__(self, message: str, row: int | None = None, col: int | None = None, text: str = ""):
        where = "" if row is None else f"row {row}" + ("" if col is None else f", column {col}") + ": "
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"{where}{message}" + (f" (got {shown!r})" if text else ""))
        self.row, self.col, self.text = row, col, text


class Repair(NamedTuple):
    """One repair made by the lenient decoder. ``row`` is None for whole-answer repairs.

    ``kind`` is one of :data:`REPAIR_KINDS`.
    """

    kind: str
    row: int | None
    detail: str


REPAIR_KINDS = (
    "no_seg_tag",  # text had no <seg> but looked like descriptors: parsed whole
    "no_descriptors",  # nothing that looks like descriptors: empty grid
    "unclosed_seg",  # <seg> without </seg> (truncated generation)
    "extra_seg",  # more than one <seg> block: the first is used
    "missing_rows",  # fewer rows than the grid: padded with others
    "extra_rows",  # more rows than the grid: cropped
    "missing_count",  # a run without *count: counted 1 (rrle, irle)
    "bad_count",  # a count of 0 or absurdly large
    "empty_label",  # an empty label: others
    "row_short",  # fewer cells than the row: padded with the last label
    "row_long",  # more cells than the row: cropped
    "bad_separator",  # an empty run between separators
    "long_label",  # a label over MAX_LABEL_CHARS characters: cut
    # compact scheme only
    "bad_line",  # a line that is not 'ROWS:SPANS': skipped
    "bad_span",  # a span that is not 'c', 'c0-c1' or 'c0-c1=k', or names an unknown label: skipped
    "out_of_range",  # a row or column beyond the grid: clipped or skipped
    "overlap",  # a row written twice: the later line wins
)


class Decoded:
    """Result of :func:`decode`.

    Attributes:
        runs: row-major ``(label, count)`` runs covering exactly ``rows * cols`` cells.
        shape: ``(rows, cols)``.
        repairs: the lenient decoder's :class:`Repair` list (empty for a well-formed answer).
        grid: ``(rows, cols)`` numpy array of ``str`` (built on first access).
    """

    __slots__ = ("runs", "shape", "repairs", "_grid")

    def __init__(self, runs: list[tuple[str, int]], shape: tuple[int, int], repairs: list[Repair]):
        self.runs, self.shape, self.repairs = runs, shape, repairs
        self._grid: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Decoded(shape={self.shape}, labels={self.labels!r}, repairs={self.repairs!r})"

    @property
    def grid(self) -> np.ndarray:
        if self._grid is None:
            labels = np.array([run[0] for run in self.runs], dtype=str)
            self._grid = np.repeat(labels, [run[1] for run in self.runs]).reshape(self.shape)
        return self._grid

    def mask(self, height: int, width: int, label: str | None = None) -> np.ndarray:
        """``(height, width)`` bool mask, same as ``grid_to_mask(self.grid, height, width, label)``."""
        from text4seg.descriptors.grid import _resize_nearest

        hit = [(lab != BACKGROUND) if label is None else (lab == label) for lab, _ in self.runs]
        cells = np.repeat(np.array(hit, dtype=bool), [run[1] for run in self.runs]).reshape(self.shape)
        return _resize_nearest(cells, int(height), int(width))

    @property
    def ok(self) -> bool:
        """True when the text needed no repair (it would also decode strictly)."""
        return not self.repairs

    @property
    def labels(self) -> list[str]:
        """Distinct non-background labels, row-major order of first appearance."""
        return list(dict.fromkeys(lab for lab, _ in self.runs if lab != BACKGROUND))

    @property
    def is_empty(self) -> bool:
        """True when every cell is ``others``: the model answered "no target"."""
        return all(lab == BACKGROUND for lab, _ in self.runs)


@lru_cache(maxsize=65536)
def normalize_label(label: str) -> str:
    """Make a label safe to write in any scheme (see the module docstring). Idempotent."""
    if not isinstance(label, str):
        label = str(label)
    out = _WS.sub(" ", label.translate(_LABEL_TABLE)).strip()
    return out or "object"


def _as_grid(grid) -> np.ndarray:
    """A 2-D ``<U`` array of the grid's labels (no copy when it already is one)."""
    arr = grid if isinstance(grid, np.ndarray) and grid.dtype.kind == "U" else np.asarray(grid, dtype=str)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"expected a non-empty 2-D grid of labels, got shape {arr.shape}")
    return arr


def normalize_grid(grid) -> np.ndarray:
    """The grid that ``decode(encode(grid))`` returns: labels normalised, as a ``<U`` array."""
    arr = _as_grid(grid)
    return np.asarray([normalize_label(x) for x in arr.ravel().tolist()], dtype=str).reshape(arr.shape)


def _run_starts(grid, row_wise: bool) -> tuple[list[str], list[int], int]:
    """``(labels, starts, cols)``: the normalised label and first cell of every run, row-major, with the
    cell count appended to ``starts`` (so run k covers ``starts[k]:starts[k + 1]``).

    Runs are found on the raw labels with one vectorised comparison (``row_wise`` also breaks them at
    every row start). A grid whose labels change under normalisation is normalised first, so labels
    that normalise alike merge into one run.
    """
    arr = _as_grid(grid)
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
        return _run_starts(normalize_grid(arr), row_wise)
    starts = idx.tolist()
    starts.append(n)
    return labels, starts, cols


def grid_runs(grid, row_wise: bool = True) -> list[list[tuple[str, int]]]:
    """Runs of equal normalised labels: one list of ``(label, count)`` per row (``row_wise``), or one
    list for the row-major flattened grid."""
    labels, starts, cols = _run_starts(grid, row_wise)
    out: list[list[tuple[str, int]]] = []
    for lab, s, e in zip(labels, starts, starts[1:]):
        if not out or (row_wise and s % cols == 0):
            out.append([])
        out[-1].append((lab, e - s))
    return out


def _encode_runs(grid, row_wise: bool) -> str:
    """R-RLE (``row_wise``) or I-RLE text (the hot path: one comprehension over the runs)."""
    labels, starts, cols = _run_starts(grid, row_wise)
    if row_wise:
        parts = [
            f"{RUN_SEP if s % cols else ROW_SEP}{lab} *{e - s}"
            for lab, s, e in zip(labels, starts, starts[1:])
        ]
    else:
        parts = [f"{RUN_SEP}{lab} *{e - s}" for lab, s, e in zip(labels, starts, starts[1:])]
    parts[0] = parts[0][2:]  # no separator before the first run
    return "".join(parts) + "\n"


def encode_rrle(grid) -> str:
    return _encode_runs(grid, row_wise=True)


def encode_irle(grid) -> str:
    return _encode_runs(grid, row_wise=False)


def encode_full(grid) -> str:
    arr = _as_grid(grid)
    rows = [RUN_SEP.join([normalize_label(x) for x in row]) for row in arr.tolist()]
    return ROW_SEP.join(rows) + "\n"


# --------------------------------------------------------------------------------------------- decoding
class _Run(NamedTuple):
    label: str
    count: int


_LEAD_COUNT = re.compile(r"[ \t]*(\d*)")
_GLUE = ",;"  # unknown run separators the lenient parser also accepts


def _parse_runs(row: str, max_cells: int, counted: bool, repairs: list[Repair], r: int | None) -> list[_Run]:
    """Lenient run parser shared by all schemes: linear in ``len(row)``.

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


def _fit(runs: list[_Run], n: int, repairs: list[Repair], r: int | None) -> list[_Run]:
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


def _fast_row(line: str, cols: int, counted: bool) -> list[_Run] | None:
    """A well-formed row parsed with plain splits; None when anything needs the lenient parser.

    Accepts exactly what the lenient parser would read without a repair, so both give the same runs.
    """
    out: list[_Run] = []
    total = 0
    for run in line.split(RUN_SEP):
        if counted:
            label, sep, digits = run.rpartition(" *")
            if not sep or not (digits.isascii() and digits.isdigit()) or digits[0] == "0" or len(digits) > 7:
                return None
            count = int(digits)
        else:
            label, count = run, 1
        if not label or label[0] == " " or label[-1] == " " or "*" in label or "|" in label:
            return None
        if len(label) > MAX_LABEL_CHARS:
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


def _decode_rows(body: str, rows: int, cols: int, repairs: list[Repair], counted: bool) -> list[_Run]:
    out: list[_Run] = []
    lines = _split_rows(body, rows, repairs)
    seen: dict[str, list] = {}  # well-formed rows repeat (background rows above all): parse each once
    for r, line in enumerate(lines):
        line = line.strip()
        runs = seen.get(line)
        if runs is None:
            runs = _fast_row(line, cols, counted)
            if runs is None:
                runs = _fit(_parse_runs(line, cols, counted, repairs, r), cols, repairs, r)
            else:
                seen[line] = runs
        out.extend(runs)
    if len(lines) < rows:
        out.append(_Run(BACKGROUND, (rows - len(lines)) * cols))
    return out


def _decode_irle(body: str, rows: int, cols: int, repairs: list[Repair]) -> list[_Run]:
    n = rows * cols
    flat_text = " ".join(body.strip().split("\n", n))  # a wrapped one-line answer
    runs = _fast_row(flat_text, n, True)
    return (
        runs if runs is not None else _fit(_parse_runs(flat_text, n, True, repairs, None), n, repairs, None)
    )


# ------------------------------------------------------------------------------------- strict checking
_STRICT_RUN = re.compile(r"(.+) \*([1-9]\d*)")


def _strict_rows(body: str, rows: int) -> list[str]:
    if not body.endswith("\n"):
        raise DescriptorError("descriptor text must end with a newline", text=body[-20:])
    lines = body[:-1].split("\n")
    if len(lines) != rows:
        raise DescriptorError(f"expected {rows} rows, found {len(lines)}", row=min(len(lines), rows))
    for r, line in enumerate(lines):
        if r and not line.startswith(" "):
            raise DescriptorError("rows after the first must start with one space", row=r, text=line)
    return [line[1:] if r else line for r, line in enumerate(lines)]


def _strict_runs(line: str, r: int | None, cols: int, counted: bool) -> list[_Run]:
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


def _strict_decode(body: str, rows: int, cols: int, scheme: str) -> list[_Run]:
    if scheme == "irle":
        if not body.endswith("\n") or "\n" in body[:-1]:
            raise DescriptorError("irle text must be one line ending with a newline", text=body[:80])
        return _strict_runs(body[:-1], None, rows * cols, True)
    out: list[_Run] = []
    for r, line in enumerate(_strict_rows(body, rows)):
        out.extend(_strict_runs(line, r, cols, scheme == "rrle"))
    return out


# ------------------------------------------------------------------------------------------- registry
class Scheme(NamedTuple):
    """A descriptor scheme.

    ``encode(grid) -> text``; ``decode(body, rows, cols, repairs, strict) -> runs``: the row-major
    ``(label, count)`` runs covering exactly ``rows * cols`` cells. Lenient decoders append
    :class:`Repair` entries and never raise; strict ones raise :class:`DescriptorError`.
    """

    encode: Callable[[object], str]
    decode: Callable[[str, int, int, list, bool], list]
    doc: str


def _paper_decoder(scheme: str, lenient: Callable) -> Callable:
    def decode(body: str, rows: int, cols: int, repairs: list, strict: bool) -> list[_Run]:
        if strict:
            return _strict_decode(body, rows, cols, scheme)
        return lenient(body, rows, cols, repairs)

    return decode


SCHEMES: dict[str, Scheme] = {
    "rrle": Scheme(
        encode_rrle,
        _paper_decoder("rrle", partial(_decode_rows, counted=True)),
        "row-wise run-length (paper)",
    ),
    "irle": Scheme(encode_irle, _paper_decoder("irle", _decode_irle), "image-wise run-length"),
    "full": Scheme(
        encode_full,
        _paper_decoder("full", partial(_decode_rows, counted=False)),
        "full length, a label per cell",
    ),
}


def _register_compact() -> None:
    from text4seg.descriptors.compact import decode_compact, encode_compact

    SCHEMES["compact"] = Scheme(encode_compact, decode_compact, "sparse spans, labels once (text4seg)")


def _scheme(name: str) -> Scheme:
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown scheme {name!r}; choose one of {sorted(SCHEMES)}") from None


def encode(grid, scheme: str = "rrle") -> str:
    """Write a 2-D grid of labels (numpy array or nested list of ``str``) as descriptor text.

    Returns the text without ``<seg>`` tags; labels are normalised (see :func:`normalize_label`).
    """
    return _scheme(scheme).encode(grid)


def wrap(text: str) -> str:
    """``"<seg>" + text + "</seg>"``."""
    return SEG_OPEN + text + SEG_CLOSE


def extract(text: str, repairs: list[Repair] | None = None, strict: bool = False) -> str | None:
    """The descriptor body of an answer: the first ``<seg>`` block, or the whole text without tags.

    Lenient mode returns None when the text has no tag and does not look like descriptors (no ``*``, no
    ``|``, no final newline): a prose answer is a "no target" answer.
    """
    start = text.find(SEG_OPEN)
    if start < 0:
        # Bare descriptor text (what encode() returns) ends with a newline or has runs; prose has neither.
        if strict or text.endswith("\n") or "*" in text or "|" in text:
            if SEG_CLOSE in text:
                if strict:
                    raise DescriptorError("</seg> without <seg>", text=text[:80])
                if repairs is not None:
                    repairs.append(Repair("no_seg_tag", None, "</seg> without <seg>"))
            return text.split(SEG_CLOSE, 1)[0]
        if repairs is not None:
            repairs.append(Repair("no_descriptors", None, text[:40]))
        return None
    start += len(SEG_OPEN)
    end = text.find(SEG_CLOSE, start)
    if end < 0:
        if strict:
            raise DescriptorError("<seg> block is not closed by </seg>", text=text[-80:])
        if repairs is not None:
            repairs.append(Repair("unclosed_seg", None, ""))
        end = len(text)
    elif text.find(SEG_OPEN, end) >= 0:
        if strict:
            raise DescriptorError("more than one <seg> block", text=text[end : end + 80])
        if repairs is not None:
            repairs.append(Repair("extra_seg", None, "first block used"))
    return text[start:end]


def decode(
    text: str, size: int | tuple[int, int] = 16, scheme: str = "rrle", strict: bool = False
) -> Decoded:
    """Parse an answer or bare descriptor text into a ``(rows, cols)`` grid of labels.

    Lenient (default) never raises on a ``str`` and reports repairs; ``strict=True`` raises
    :class:`DescriptorError` at the first defect. ``size`` is ``int`` or ``(rows, cols)``.
    """
    from text4seg.descriptors.grid import grid_shape

    rows, cols = grid_shape(size)
    sch = _scheme(scheme)
    if not isinstance(text, str):
        raise TypeError(f"decode() takes a str, got {type(text).__name__}")
    repairs: list[Repair] = []
    body = extract(text, repairs, strict)
    if body is None:
        return Decoded([(BACKGROUND, rows * cols)], (rows, cols), repairs)
    return Decoded(sch.decode(body, rows, cols, repairs, strict), (rows, cols), repairs)


def count_repairs(results: Sequence[Decoded]) -> dict[str, int]:
    """``{kind: number of answers with at least one repair of that kind}`` plus ``"answers_repaired"``."""
    out: dict[str, int] = {"answers_repaired": 0}
    for res in results:
        kinds = {rep.kind for rep in res.repairs}
        out["answers_repaired"] += bool(kinds)
        for k in kinds:
            out[k] = out.get(k, 0) + 1
    return out


_register_compact()
