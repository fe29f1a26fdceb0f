"""Several expressions in one answer (GSVA's "What are A, B, C?"): one labelled block per expression.

The format
----------
After the answer sentence, one line per asked expression, in the order asked, numbered from 1::

    [<k>] <label>: <seg><descriptors of a grid whose foreground is called <label>></seg>
    [<k>] <label>: none

``<label>`` is the expression's descriptor label (the expression, normalised as any label). A present
target is an ordinary single-expression block (any scheme), so a block is exactly the answer a
referring sample would give; an absent target is rejected with the word ``none`` instead of a block
(GSVA's ``[REJ]`` as plain text, one Qwen2 token). Targets of different expressions may overlap (gRefCOCO
has many such pairs): every expression has its own grid, so an overlap is kept whole in each (a single
grid whose labels are the expressions could give a cell to one expression only).

Worked example (2 x 2 grids, rrle; "left man" is the left column, "dog" absent, "men" both columns)::

    Here they are.
    [1] left man: <seg>left man *1| others *1
     left man *1| others *1
    </seg>
    [2] dog: none
    [3] men: <seg>men *2
     men *2
    </seg>

Decoding (:func:`decode_multi`) finds the ``[k]`` markers outside ``<seg>`` blocks; expression ``k``
is its block decoded by :func:`text4seg.descriptors.decode` (lenient, repairs reported), or a rejection
when its line has no ``<seg>`` (``none`` or anything else), or when the marker is missing (``missing``
counted). A marker numbered outside ``1..K`` or repeated is ignored (the first one counts).

Token cost: each present expression costs a single-expression answer plus its marker line (about
``4 + tokens(label)``); a rejection costs about ``5 + tokens(label)``. Measured figures: docs/tasks.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from text4seg.descriptors import (
    BACKGROUND,
    DEFAULT_SCHEME,
    SEG_CLOSE,
    SEG_OPEN,
    Decoded,
    decode,
    encode,
    grid_shape,
    grid_to_mask,
    max_answer_tokens,
    normalize_label,
    wrap,
)

REJECT = "none"
_MARKER = re.compile(r"(?m)^\[(\d+)\] ?")


class Entry(NamedTuple):
    """One expression of a decoded answer: ``k`` (1-based), ``label`` (from the answer, "" if missing),
    ``decoded`` (:class:`~text4seg.descriptors.Decoded`, None for a rejection) and ``found`` (the
    marker was in the answer)."""

    k: int
    label: str
    decoded: Decoded | None
    found: bool

    @property
    def rejected(self) -> bool:
        return self.decoded is None or not bool((self.decoded.grid != BACKGROUND).any())


def multi_label(expression: str) -> str:
    """The label of an expression in its block (``others`` renamed ``others (class)``)."""
    n = normalize_label(expression)
    return "others (class)" if n == BACKGROUND else n


def encode_multi(items: Sequence[tuple[str, np.ndarray | None]], scheme: str = DEFAULT_SCHEME) -> str:
    """The numbered lines of an answer (no sentence).

    ``items``: ``(expression, fg)`` per expression, ``fg`` a ``(rows, cols)`` bool grid of its target, or
    None (or an all-False grid) for an absent target (rejection).
    """
    lines = []
    for k, (expr, fg) in enumerate(items, 1):
        label = multi_label(expr)
        if fg is None or not np.asarray(fg).any():
            lines.append(f"[{k}] {label}: {REJECT}")
        else:
            grid = np.where(np.asarray(fg, bool), label, BACKGROUND)
            lines.append(f"[{k}] {label}: {wrap(encode(grid, scheme))}")
    return "\n".join(lines)


def _seg_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the ``<seg>...</seg>`` blocks (an unclosed one runs to the
    next marker line or the end)."""
    spans, i = [], 0
    while True:
        s = text.find(SEG_OPEN, i)
        if s < 0:
            return spans
        e = text.find(SEG_CLOSE, s)
        if e < 0:
            nxt = _MARKER.search(text, s)
            e = nxt.start() if nxt else len(text)
            spans.append((s, e))
            i = e
        else:
            spans.append((s, e + len(SEG_CLOSE)))
            i = e + len(SEG_CLOSE)


def decode_multi(
    text: str, n: int, size: int | tuple[int, int] = 16, scheme: str = DEFAULT_SCHEME
) -> list[Entry]:
    """Decode an answer written by :func:`encode_multi` into ``n`` entries, one per asked expression.

    Lenient: never raises on a ``str``; a missing marker gives ``Entry(k, "", None, False)``.
    """
    if not isinstance(text, str):
        raise TypeError(f"decode_multi() takes a str, got {type(text).__name__}")
    grid_shape(size)
    spans = _seg_spans(text)

    def inside(pos: int) -> bool:
        return any(s < pos < e for s, e in spans)

    marks = [m for m in _MARKER.finditer(text) if not inside(m.start())]
    out: dict[int, Entry] = {}
    for j, m in enumerate(marks):
        k = int(m.group(1))
        if not 1 <= k <= n or k in out:
            continue
        end = marks[j + 1].start() if j + 1 < len(marks) else len(text)
        body = text[m.end() : end]
        seg = body.find(SEG_OPEN)
        head = body[:seg] if seg >= 0 else body.split("\n", 1)[0]
        label = head.rstrip().removesuffix(":").strip() if seg >= 0 else head.rsplit(":", 1)[0].strip()
        dec = decode(body[seg:], size, scheme) if seg >= 0 else None
        out[k] = Entry(k, label, dec, True)
    return [out.get(k, Entry(k, "", None, False)) for k in range(1, n + 1)]


def entry_masks(entries: Sequence[Entry], height: int, width: int) -> list[np.ndarray]:
    """``(height, width)`` bool mask per entry (every non-``others`` cell, PIL-nearest; all False for a
    rejection)."""
    out = []
    for e in entries:
        if e.decoded is None:
            out.append(np.zeros((height, width), bool))
        else:
            out.append(grid_to_mask(e.decoded.grid, height, width))
    return out


def max_multi_tokens(scheme: str, size, labels: Sequence[str], free_tokens: int = 64) -> int:
    """A generation budget for ``labels`` asked together: the sum of each expression's single-block
    budget (:func:`~text4seg.descriptors.max_answer_tokens` with no free tokens) plus 8 tokens per marker
    line and ``free_tokens`` once."""
    if not labels:
        return max_answer_tokens(scheme, size, (), free_tokens)
    per = [max_answer_tokens(scheme, size, [lab], 0) + 8 for lab in labels]
    return sum(per) + free_tokens


__all__ = [
    "REJECT",
    "Entry",
    "decode_multi",
    "encode_multi",
    "entry_masks",
    "max_multi_tokens",
    "multi_label",
]
