"""What every descriptor scheme shares: the background word, tags and separators, errors and repairs,
label normalisation, the grid shape, and the :class:`Scheme` interface a scheme module fills in.

Conventions
-----------
A grid is a 2-D array of ``str`` labels, ``(rows, cols)``, row-major; ``others`` is the background.
A *run* is a ``(label, count)`` pair; a decoder returns the row-major runs covering exactly
``rows * cols`` cells. An answer wraps the descriptor text as ``"<seg>" + text + "</seg>"``.

Label normalisation (applied by every encoder, so ``decode(encode(g)).grid`` equals
``normalize_grid(g)`` exactly): ``|`` becomes ``/``, ``*`` becomes ``+``, ``<`` and ``>`` become ``(``
and ``)``, every run of whitespace (newlines included) becomes one space, leading and trailing spaces are
dropped, and an empty label becomes ``object``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

BACKGROUND = "others"
SEG_OPEN, SEG_CLOSE = "<seg>", "</seg>"
RUN_SEP, ROW_SEP = "| ", "\n "
DEFAULT_SCHEME = "rrle"
DEFAULT_GRID = (16, 16)  # (rows, cols) of the released Text4Seg models and of every default here
MAX_LABEL_CHARS = 512  # the lenient decoders cut longer labels (keeps the grid array small)
# Constrained decoding: the default bound on the free text before <seg> (characters with xgrammar's exact
# grammar, tokens with the own engine; either way at most this many tokens, see codec.max_answer_tokens)
MAX_FREE = 256

Size = int | tuple[int, int]
Run = tuple[str, int]

_WS = re.compile(r"\s+")
_LABEL_TABLE = str.maketrans({"|": "/", "*": "+", "<": "(", ">": ")"})


class DescriptorError(ValueError):
    """Strict decoding failed. ``row`` and ``col`` are 0-based grid coordinates (``col`` may be None)."""

    def __init__(self, message: str, row: int | None = None, col: int | None = None, text: str = ""):
        where = "" if row is None else f"row {row}" + ("" if col is None else f", column {col}") + ": "
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"{where}{message}" + (f" (got {shown!r})" if text else ""))
        self.row, self.col, self.text = row, col, text


class Repair(NamedTuple):
    """One repair made by a lenient decoder. ``row`` is None for whole-answer repairs.

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


@lru_cache(maxsize=65536)
def normalize_label(label: str) -> str:
    """Make a label safe to write in any scheme (see the module docstring). Idempotent."""
    if not isinstance(label, str):
        label = str(label)
    out = _WS.sub(" ", label.translate(_LABEL_TABLE)).strip()
    return out or "object"


def as_grid(grid) -> np.ndarray:
    """A 2-D ``<U`` array of the grid's labels (no copy when it already is one)."""
    arr = grid if isinstance(grid, np.ndarray) and grid.dtype.kind == "U" else np.asarray(grid, dtype=str)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"expected a non-empty 2-D grid of labels, got shape {arr.shape}")
    return arr


def normalize_grid(grid) -> np.ndarray:
    """The grid that ``decode(encode(grid))`` returns: labels normalised, as a ``<U`` array."""
    arr = as_grid(grid)
    return np.asarray([normalize_label(x) for x in arr.ravel().tolist()], dtype=str).reshape(arr.shape)


def allowed_labels(labels: Sequence[str]) -> list[str]:
    """The labels a constrained answer may write: the targets, normalised, plus ``others`` (sorted)."""
    return sorted({normalize_label(x) for x in labels} | {BACKGROUND})


MAX_GRID_SIDE = 256  # a grid side above this is refused (an answer of 65,536 cells is already absurd)


def grid_shape(size: Size) -> tuple[int, int]:
    """``16 -> (16, 16)``; ``(rows, cols)`` passes through. Raises ``ValueError`` on a bad value."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        rows = cols = int(size)
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        rows, cols = int(size[0]), int(size[1])
    else:
        raise ValueError(f"size must be an int or a (rows, cols) pair, got {size!r}")
    if rows < 1 or cols < 1:
        raise ValueError(f"grid size must be positive, got {size!r}")
    if rows > MAX_GRID_SIDE or cols > MAX_GRID_SIDE:
        raise ValueError(f"grid size {rows}x{cols} is too large: at most {MAX_GRID_SIDE} cells per side")
    return rows, cols


class Budget(NamedTuple):
    """Length in characters of the descriptor text (between ``<seg>`` and ``</seg>``) of a well-formed
    answer: the ``fewest`` and the ``most`` a ``rows x cols`` grid with the allowed labels can need.
    Every token holds at least one character, so ``most`` also bounds the tokens."""

    fewest: int
    most: int


@dataclass(frozen=True)
class Scheme:
    """A descriptor scheme: what one scheme module (``rrle``, ``irle``, ``full``, ``compact``) provides.

    Attributes:
        doc: one line for listings.
        encode: ``encode(grid) -> text``; the grid is a 2-D array or nested list of ``str``; the text has
            no ``<seg>`` tags and normalised labels.
        lenient: ``lenient(body, rows, cols, repairs) -> runs``; never raises on a ``str``, appends
            :class:`Repair` entries.
        strict: ``strict(body, rows, cols) -> runs``; raises :class:`DescriptorError` at the first defect.
        grammar: ``grammar(rows, cols, labels)``: the character-level constrained-decoding grammar of one
            query (``start``/``step``/``cost``, see :mod:`text4seg.descriptors.grammar`).
        regex: ``regex(rows, cols, labels) -> str``: a regex of a whole answer (vLLM structured outputs).
        budget: ``budget(rows, cols, labels) -> Budget``: characters of the shortest and longest block.
        ebnf: ``ebnf(rows, cols, labels, max_free) -> str``: the exact grammar of a whole answer in
            xgrammar's EBNF (built from :mod:`text4seg.descriptors.ebnf`'s shared rules), with at most
            ``max_free`` characters of free text; ``max_free=None``: the block and ``</seg>`` alone.
        checked: optional ``checked(body, rows, cols, repairs) -> (runs, certain)``: ``lenient``'s runs
            and True only when ``strict`` certainly accepts ``body`` with the same runs (False: not
            certain; :attr:`text4seg.descriptors.codec.Decoded.ok` then runs ``strict``).

    ``labels`` are the query's target labels (raw; the scheme normalises them); ``others`` is always
    allowed.
    """

    doc: str
    encode: Callable[[object], str]
    lenient: Callable[[str, int, int, list], list]
    strict: Callable[[str, int, int], list]
    grammar: Callable[[int, int, Sequence[str]], object]
    regex: Callable[[int, int, Sequence[str]], str]
    budget: Callable[[int, int, Sequence[str]], Budget]
    ebnf: Callable[[int, int, Sequence[str], int | None], str]
    checked: Callable[[str, int, int, list], tuple[list, bool]] | None = None

    def decode(self, body: str, rows: int, cols: int, repairs: list, strict: bool = False) -> list:
        """The runs of ``body`` (strict or lenient)."""
        return self.strict(body, rows, cols) if strict else self.lenient(body, rows, cols, repairs)
