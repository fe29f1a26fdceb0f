"""Semantic descriptors: a grid of text labels <-> text, and back from untrusted model output.

The format
----------
A mask is sampled to a ``rows x cols`` grid (16 x 16 by default, see :mod:`text4seg.grid`); every cell
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
from dataclasses import dataclass, field
from functools import partial
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
)


@dataclass
class Decoded:
    """Result of :func:`decode`: ``grid`` is a ``(rows, cols)`` numpy array of ``str``."""

    grid: np.ndarray
    repairs: list[Repair] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the text needed no repair (it would also decode strictly)."""
        return not self.repairs

    @property
    def labels(self) -> list[str]:
        """Distinct non-background labels, row-major order of first appearance."""
        seen: dict[str, None] = {}
        for lab in self.grid.ravel().tolist():
            if lab != BACKGROUND:
                seen.setdefault(lab, None)
        return list(seen)

    @property
    def is_empty(self) -> bool:
        """True when every cell is ``others``: the model answered "no target"."""
        return bool((self.grid == BACKGROUND).all())


def normalize_label(label: str) -> str:
    """Make a label safe to write in any scheme (see the module docstring). Idempotent."""
    if not isinstance(label, str):
        label = str(label)
    out = _WS.sub(" ", label.translate(_LABEL_TABLE)).strip()
    return out or "object"


def normalize_grid(grid) -> np.ndarray:
    """The grid that ``decode(encode(grid))`` returns: labels normalised, as a ``<U`` array."""
    arr = _as_grid(grid)
    uniq, inv = np.unique(arr, return_inverse=True)
    names = np.asarray([normalize_label(u) for u in uniq.tolist()], dtype=str)
    return names[inv.reshape(arr.shape)]


def _as_grid(grid) -> np.ndarray:
    arr = np.asarray(grid, dtype=object)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"expected a non-empty 2-D grid of labels, got shape {arr.shape}")
    return arr.astype(str)


def _codes(grid) -> tuple[np.ndarray, list[str]]:
    """Dense integer codes for a grid, and the normalised name of each code."""
    arr = _as_grid(grid)
    uniq, inv = np.unique(arr, return_inverse=True)
    return inv.reshape(arr.shape), [normalize_label(u) for u in uniq.tolist()]


def _runs(codes_1d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and lengths of runs of equal values in a 1-D array."""
    n = codes_1d.shape[0]
    starts = np.flatnonzero(np.concatenate(([True], codes_1d[1:] != codes_1d[:-1])))
    lengths = np.diff(np.append(starts, n))
    return starts, lengths


def _write_runs(codes_1d: np.ndarray, names: list[str]) -> str:
    starts, lengths = _runs(codes_1d)
    vals = codes_1d[starts].tolist()
    return RUN_SEP.join(f"{names[v]} *{n}" for v, n in zip(vals, lengths.tolist()))


def encode_rrle(grid) -> str:
    codes, names = _codes(grid)
    # Runs of the whole flattened grid with a break forced at every row start; then split per row.
    return ROW_SEP.join(_write_runs(row, names) for row in codes) + "\n"


def encode_irle(grid) -> str:
    codes, names = _codes(grid)
    return _write_runs(codes.ravel(), names) + "\n"


def encode_full(grid) -> str:
    codes, names = _codes(grid)
    return ROW_SEP.join(RUN_SEP.join(names[c] for c in row) for row in codes.tolist()) + "\n"


# --------------------------------------------------------------------------------------------- decoding
class _Run(NamedTuple):
    label: str
    count: int


_LEAD_COUNT = re.compile(r"[ \t]*(\d*)")
_LABEL_STRIP = " \t\r\n,;/"


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
            label = tail[m.end() :]
            if total > max_cells:
                return runs
        if len(parts) == 1 or label.strip(_LABEL_STRIP):
            if counted:
                repairs.append(Repair("missing_count", r, label.strip()[:40]))
            runs.append(_make_run(label, None, repairs, r))
            total += 1
        if total > max_cells:
            break
    return runs


def _make_run(label: str, digits: str | None, repairs: list[Repair], r: int | None) -> _Run:
    text = label.strip(_LABEL_STRIP)
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


def _fill(runs: list[_Run], n: int, repairs: list[Repair], r: int | None) -> list[str]:
    cells: list[str] = []
    for run in runs:
        cells.extend([run.label] * min(run.count, n - len(cells)))
        if len(cells) >= n:
            break
    total = sum(run.count for run in runs)
    if total > n:
        repairs.append(Repair("row_long", r, f"{total} cells for {n}"))
    elif total < n:
        repairs.append(Repair("row_short", r, f"{total} cells for {n}"))
        cells.extend([cells[-1] if cells else BACKGROUND] * (n - len(cells)))
    return cells


def _split_rows(body: str, rows: int, repairs: list[Repair]) -> list[str]:
    text = body.strip("\n")
    lines = [ln for ln in text.split("\n", rows * 4) if ln.strip()][: rows + 1]
    if len(lines) > rows:
        repairs.append(Repair("extra_rows", None, f"more than {rows} rows"))
        lines = lines[:rows]
    elif len(lines) < rows:
        repairs.append(Repair("missing_rows", None, f"{len(lines)} rows for {rows}"))
    return lines


def _decode_rows(body: str, rows: int, cols: int, repairs: list[Repair], counted: bool) -> list[list[str]]:
    grid = []
    for r, line in enumerate(_split_rows(body, rows, repairs)):
        runs = _parse_runs(line, cols, counted, repairs, r)
        grid.append(_fill(runs, cols, repairs, r))
    grid.extend([[BACKGROUND] * cols for _ in range(rows - len(grid))])
    return grid


def _decode_irle(body: str, rows: int, cols: int, repairs: list[Repair]) -> list[list[str]]:
    n = rows * cols
    flat_text = " ".join(body.split("\n", n))  # a wrapped one-line answer
    cells = _fill(_parse_runs(flat_text, n, True, repairs, None), n, repairs, None)
    return [cells[i * cols : (i + 1) * cols] for i in range(rows)]


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


def _strict_runs(line: str, r: int | None, cols: int, counted: bool) -> list[str]:
    cells: list[str] = []
    for run in line.split(RUN_SEP):
        col = len(cells)
        if counted:
            m = _STRICT_RUN.fullmatch(run)
            if not m:
                raise DescriptorError("expected 'label *count'", row=r, col=col, text=run)
            label, count = m.group(1), int(m.group(2))
        else:
            label, count = run, 1
        if label != normalize_label(label) or "|" in label:
            raise DescriptorError("malformed label", row=r, col=col, text=run)
        if col + count > cols:
            raise DescriptorError(f"runs exceed the {cols} cells of the row", row=r, col=col, text=run)
        cells.extend([label] * count)
    if len(cells) != cols:
        raise DescriptorError(f"runs cover {len(cells)} of {cols} cells", row=r, col=len(cells), text=line)
    return cells


def _strict_decode(body: str, rows: int, cols: int, scheme: str) -> list[list[str]]:
    if scheme == "irle":
        if not body.endswith("\n") or "\n" in body[:-1]:
            raise DescriptorError("irle text must be one line ending with a newline", text=body[:80])
        cells = _strict_runs(body[:-1], None, rows * cols, True)
        return [cells[i * cols : (i + 1) * cols] for i in range(rows)]
    lines = _strict_rows(body, rows)
    return [_strict_runs(line, r, cols, scheme == "rrle") for r, line in enumerate(lines)]


# ------------------------------------------------------------------------------------------- registry
class Scheme(NamedTuple):
    """A descriptor scheme: ``encode(grid) -> text`` and ``decode(body, rows, cols, repairs, strict)``."""

    encode: Callable[[object], str]
    decode: Callable[[str, int, int, list, bool], list[list[str]]]
    doc: str


def _make_decoder(scheme: str, lenient: Callable) -> Callable:
    def decode(body: str, rows: int, cols: int, repairs: list, strict: bool) -> list[list[str]]:
        if strict:
            return _strict_decode(body, rows, cols, scheme)
        return lenient(body, rows, cols, repairs)

    return decode


SCHEMES: dict[str, Scheme] = {
    "rrle": Scheme(encode_rrle, _make_decoder("rrle", partial(_decode_rows, counted=True)), "row-wise run-length (paper default)"),
    "irle": Scheme(encode_irle, _make_decoder("irle", _decode_irle), "image-wise run-length"),
    "full": Scheme(encode_full, _make_decoder("full", partial(_decode_rows, counted=False)), "full length, one label per cell"),
}


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

    Returns None (lenient) when the text has no tag and nothing that looks like descriptors.
    """
    start = text.find(SEG_OPEN)
    if start < 0:
        if "*" in text or "|" in text:
            if repairs is not None and SEG_CLOSE in text:
                repairs.append(Repair("no_seg_tag", None, "</seg> without <seg>"))
            return text.split(SEG_CLOSE, 1)[0]
        if strict:
            raise DescriptorError("no <seg> block and no descriptor text", text=text[:80])
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


def decode(text: str, size: int | tuple[int, int] = 16, scheme: str = "rrle", strict: bool = False) -> Decoded:
    """Parse an answer or bare descriptor text into a ``(rows, cols)`` grid of labels.

    Lenient (default) never raises on a ``str`` and reports repairs; ``strict=True`` raises
    :class:`DescriptorError` at the first defect. ``size`` is ``int`` or ``(rows, cols)``.
    """
    from text4seg.grid import grid_shape

    rows, cols = grid_shape(size)
    sch = _scheme(scheme)
    if not isinstance(text, str):
        raise TypeError(f"decode() takes a str, got {type(text).__name__}")
    repairs: list[Repair] = []
    body = extract(text, repairs, strict)
    if body is None:
        cells = [[BACKGROUND] * cols for _ in range(rows)]
    else:
        cells = sch.decode(body, rows, cols, repairs, strict)
    return Decoded(np.asarray(cells, dtype=str).reshape(rows, cols), repairs)


def count_repairs(results: Sequence[Decoded]) -> dict[str, int]:
    """``{kind: number of answers with at least one repair of that kind}`` plus ``"answers_repaired"``."""
    out: dict[str, int] = {"answers_repaired": 0}
    for res in results:
        kinds = {rep.kind for rep in res.repairs}
        out["answers_repaired"] += bool(kinds)
        for k in kinds:
            out[k] = out.get(k, 0) + 1
    return out
