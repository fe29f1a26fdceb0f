"""Answers: descriptor text in and out of ``<seg>`` tags, read with the registered schemes.

:func:`encode` writes a grid in a scheme of :data:`~text4seg.descriptors.schemes.SCHEMES` (each scheme's
format, with a worked example, is at the top of its module: :mod:`~text4seg.descriptors.rrle`,
:mod:`~text4seg.descriptors.irle`, :mod:`~text4seg.descriptors.full`,
:mod:`~text4seg.descriptors.compact`). An answer wraps the text as ``"<seg>" + text + "</seg>"``
(:func:`wrap`), after a template sentence.

Decoding model output
---------------------
:func:`decode` is lenient by default and never raises on a ``str``. It takes the first ``<seg>`` block
(later blocks are ignored and reported; a missing ``</seg>`` is accepted), or the whole text when there
is no tag, and hands the block to the scheme's lenient decoder, which repairs what it must and reports
each repair in :attr:`Decoded.repairs` (kinds: :data:`~text4seg.descriptors.core.REPAIR_KINDS`).
``strict=True`` raises :class:`~text4seg.descriptors.core.DescriptorError` naming the row, column and
text at the first defect.

Constrained decoding
--------------------
:func:`answer_ebnf` is the scheme's exact grammar of a whole answer (``Scheme.ebnf``; the shared rules and
a worked example are :mod:`text4seg.descriptors.ebnf`), for xgrammar and inference servers.
:func:`max_answer_tokens` is THE answer budget of both constrained engines (xgrammar's,
:mod:`~text4seg.decoding.xgr`, and the own one, :mod:`~text4seg.decoding.constrain`), of
``Predictor`` and of the request bodies (:mod:`~text4seg.decoding.bodies`). Guarantee: with either
engine on and ``max_new_tokens`` at least this budget, every answer is complete and parses with
``decode(..., strict=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from text4seg.descriptors.core import (
    BACKGROUND,
    DEFAULT_SCHEME,
    MAX_FREE,
    SEG_CLOSE,
    SEG_OPEN,
    DescriptorError,
    Repair,
    Run,
    Size,
    grid_shape,
    normalize_label,
)
from text4seg.descriptors.grid import resize_nearest
from text4seg.descriptors.schemes import get_scheme


class Decoded:
    """Result of :func:`decode`.

    Attributes:
        runs: row-major ``(label, count)`` runs covering exactly ``rows * cols`` cells.
        shape: ``(rows, cols)``.
        repairs: the lenient decoder's :class:`~text4seg.descriptors.core.Repair` list (empty for a
            well-formed answer).
        grid: ``(rows, cols)`` numpy array of ``str`` (built on first access).
    """

    __slots__ = ("runs", "shape", "repairs", "_grid", "_strict")

    def __init__(self, runs: list[Run], shape: tuple[int, int], repairs: list[Repair], strict_check=None):
        self.runs, self.shape, self.repairs = runs, shape, repairs
        self._grid: np.ndarray | None = None
        # (text, scheme) to run the strict decoder on when `ok` is first asked (None: nothing to check)
        self._strict = strict_check

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
        hit = [(lab != BACKGROUND) if label is None else (lab == label) for lab, _ in self.runs]
        cells = np.repeat(np.array(hit, dtype=bool), [run[1] for run in self.runs]).reshape(self.shape)
        return resize_nearest(cells, int(height), int(width))

    @property
    def ok(self) -> bool:
        """True exactly when the text decodes with ``strict=True``: no repair was needed, and none of the
        defects the lenient decoder reads past without a repair (a missing final newline, a label that
        is not normalised, a number with a leading zero, ...) is there. Where the scheme's ``checked``
        decoder found the text certainly strict (a well-formed answer), no second decode runs; otherwise
        the strict decoder runs on first access only (the lenient hot path does not pay for it)."""
        if self.repairs:
            return False
        if self._strict is not None:
            text, scheme = self._strict
            try:
                decode(text, self.shape, scheme, strict=True)
                self._strict = None
            except DescriptorError:
                return False
        return True

    @property
    def labels(self) -> list[str]:
        """Distinct non-background labels, row-major order of first appearance."""
        return list(dict.fromkeys(lab for lab, _ in self.runs if lab != BACKGROUND))

    @property
    def is_empty(self) -> bool:
        """True when every cell is ``others``: the model answered "no target"."""
        return all(lab == BACKGROUND for lab, _ in self.runs)


def encode(grid, scheme: str = DEFAULT_SCHEME) -> str:
    """Write a 2-D grid of labels (numpy array or nested list of ``str``) as descriptor text.

    Returns the text without ``<seg>`` tags; labels are normalised (see
    :func:`~text4seg.descriptors.core.normalize_label`).
    """
    return get_scheme(scheme).encode(grid)


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


def decode(text: str, size: Size = 16, scheme: str = DEFAULT_SCHEME, strict: bool = False) -> Decoded:
    """Parse an answer or bare descriptor text into a ``(rows, cols)`` grid of labels.

    Lenient (default) never raises on a ``str`` and reports repairs; ``strict=True`` raises
    :class:`~text4seg.descriptors.core.DescriptorError` at the first defect. ``size`` is ``int`` or
    ``(rows, cols)``.
    """
    rows, cols = grid_shape(size)
    sch = get_scheme(scheme)
    if not isinstance(text, str):
        raise TypeError(f"decode() takes a str, got {type(text).__name__}")
    repairs: list[Repair] = []
    body = extract(text, repairs, strict)
    if body is None:
        return Decoded([(BACKGROUND, rows * cols)], (rows, cols), repairs)
    if strict:
        return Decoded(sch.decode(body, rows, cols, repairs, True), (rows, cols), repairs)
    if sch.checked is not None:  # the strict verdict out of this decode where it is certain
        runs, certain = sch.checked(body, rows, cols, repairs)
        return Decoded(runs, (rows, cols), repairs, None if certain else (text, scheme))
    return Decoded(sch.lenient(body, rows, cols, repairs), (rows, cols), repairs, (text, scheme))


def count_repairs(results: Sequence[Decoded]) -> dict[str, int]:
    """``{kind: number of answers with at least one repair of that kind}`` plus ``"answers_repaired"``."""
    out: dict[str, int] = {"answers_repaired": 0}
    for res in results:
        kinds = {rep.kind for rep in res.repairs}
        out["answers_repaired"] += bool(kinds)
        for k in kinds:
            out[k] = out.get(k, 0) + 1
    return out


def answer_ebnf(scheme: str, size: Size = 16, labels: Sequence[str] = (), max_free: int = MAX_FREE) -> str:
    """The exact grammar (xgrammar EBNF) of a whole answer in ``scheme`` for one query: at most
    ``max_free`` characters of free text without ``<``, then the block; every answer it accepts decodes
    with ``strict=True``."""
    rows, cols = grid_shape(size)
    return get_scheme(scheme).ebnf(rows, cols, tuple(labels), max_free)


def block_ebnf(scheme: str, size: Size = 16, labels: Sequence[str] = ()) -> str:
    """The exact grammar of what follows ``<seg>``: the block and ``</seg>`` (:func:`answer_ebnf` is
    :func:`~text4seg.descriptors.ebnf.free_ebnf` then this)."""
    rows, cols = grid_shape(size)
    return get_scheme(scheme).ebnf(rows, cols, tuple(labels), None)


def max_answer_tokens(scheme: str, size: Size, labels: Sequence[str] = (), max_free: int = MAX_FREE) -> int:
    """The answer budget (``max_new_tokens``) of one query: every well-formed answer fits in it.

    ``max_free`` bounds the text before ``<seg>``: ASCII characters with xgrammar's exact grammar
    (:func:`answer_ebnf`), tokens with the own engine (its ``max_free_tokens``); either way it takes at
    most ``max_free`` tokens. Then ``<seg>``, the longest block the scheme accepts for a ``size`` grid and
    the allowed ``labels`` (``Scheme.budget(...).most``, with every label counted in UTF-8 bytes: a
    byte-level token holds at least one byte, possibly part of a character), ``</seg>`` and one EOS token.

    With ``max_new_tokens`` at least this, constrained decoding (either engine) always ends with a
    complete answer that parses with ``decode(..., strict=True)``. It is large (a character bound: 3,083
    for a 16x16 R-RLE grid and the label ``cat``, 10,763 for a 36-character expression); generation
    stops at EOS long before.
    """
    rows, cols = grid_shape(size)
    # a label padded by its extra UTF-8 bytes ("\0" survives normalisation) has its byte length
    padded = [x + "\0" * (len(x.encode()) - len(x)) for x in map(normalize_label, labels)]
    most = get_scheme(scheme).budget(rows, cols, padded).most
    return int(max_free) + len(SEG_OPEN) + most + len(SEG_CLOSE) + 1
