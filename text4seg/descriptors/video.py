"""Multi-frame answers: one labelled descriptor block per shown frame (video segmentation as text).

A video sample shows ``T`` frames; its answer is a sentence, then one line per frame, in the order the
frames are shown, each starting ``Frame k:`` (``k`` 1-based). Two forms:

``frames`` (default, any scheme)
    every frame with a target writes its whole grid in the scheme as a ``<seg>`` block; a frame where the
    target is absent says ``absent`` (no block).
``delta`` (change-only, R-RLE rows)
    a frame writes only the grid rows that differ from the previous frame's grid (the frame before the
    first counts as all ``others``), each as ``r: <R-RLE runs of row r>`` (``r`` 0-based), rows joined by
    ``"\\n "``; ``same`` when nothing changed, ``absent`` when the frame is all ``others``. Lossless.

Worked example (three 4 x 4 frames, a dog moving one column right, then gone), R-RLE::

    frames  "Frame 1: <seg>others *4\\n others *1| dog *2| others *1\\n others *4\\n others *4\\n</seg>\\n"
            "Frame 2: <seg>others *4\\n others *2| dog *2\\n others *4\\n others *4\\n</seg>\\n"
            "Frame 3: absent\\n"
    delta   "Frame 1: <seg>1: others *1| dog *2| others *1\\n</seg>\\n"
            "Frame 2: <seg>1: others *2| dog *2\\n</seg>\\n"
            "Frame 3: absent\\n"

:func:`encode_frames` writes the lines (no sentence), :func:`decode_frames` reads them back leniently:
it never raises on a ``str``; a missing frame is all ``others`` (repair ``missing_frame``), a repeated
``Frame k`` keeps the first, a frame number beyond ``T`` is dropped (``extra_frame``); per-block repairs
are the scheme decoder's. Token costs of the forms: ``benchmarks/video_tokens.py`` and docs/video.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from text4seg.descriptors.codec import decode, encode, wrap
from text4seg.descriptors.core import BACKGROUND, ROW_SEP, SEG_CLOSE, SEG_OPEN, Repair, grid_shape

FORMS = ("frames", "delta")
ABSENT = "absent"
SAME = "same"
_HEAD = re.compile(r"(?:^|\n)\s*Frame\s+(\d+)\s*:\s*", re.IGNORECASE)
_DELTA_ROW = re.compile(r"^\s*(\d+)\s*:\s*(.*)$")


class VideoDecoded(NamedTuple):
    """Result of :func:`decode_frames`: ``grids`` is a ``(T, rows, cols)`` ``str`` array; ``repairs`` the
    frame-level and block-level repairs as ``(frame index 0-based or None, Repair)``."""

    grids: np.ndarray
    repairs: list[tuple[int | None, Repair]]


def check_form(form: str, scheme: str) -> None:
    """``ValueError`` naming the allowed values for an unknown form or a ``delta`` form on another scheme."""
    if form not in FORMS:
        raise ValueError(f"unknown video answer form {form!r}; choose one of {list(FORMS)}")
    if form == "delta" and scheme != "rrle":
        raise ValueError(f"the delta form writes R-RLE rows: scheme must be 'rrle', got {scheme!r}")


def _is_empty(grid: np.ndarray) -> bool:
    return bool((grid == BACKGROUND).all())


def _row_runs(row: np.ndarray) -> str:
    return encode(row[None, :], "rrle")[:-1]  # one row: no separator, drop the final newline


def encode_frames(grids: Sequence[np.ndarray], scheme: str = "rrle", form: str = "frames") -> str:
    """The per-frame answer lines of ``T`` grids (each ``(rows, cols)`` of ``str``), ending with ``"\\n"``."""
    check_form(form, scheme)
    lines = []
    prev = None
    for k, grid in enumerate(grids, 1):
        g = np.asarray(grid, dtype=str)
        if prev is None:
            prev = np.full(g.shape, BACKGROUND, dtype=g.dtype)
        if _is_empty(g):
            body = ABSENT
        elif form == "frames":
            body = wrap(encode(g, scheme))
        else:
            changed = [r for r in range(g.shape[0]) if not np.array_equal(g[r], prev[r])]
            rows = ROW_SEP.join(f"{r}: {_row_runs(g[r])}" for r in changed)
            body = wrap(rows + "\n") if changed else SAME
        lines.append(f"Frame {k}: {body}")
        prev = g
    return "\n".join(lines) + "\n"


def _blocks(text: str, n_frames: int, repairs: list) -> dict[int, str]:
    heads = list(_HEAD.finditer(text))
    out: dict[int, str] = {}
    for i, m in enumerate(heads):
        k = int(m.group(1)) - 1
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[m.end() : end].strip()
        if not 0 <= k < n_frames:
            repairs.append((None, Repair("extra_frame", None, f"Frame {k + 1} of {n_frames}")))
        elif k in out:
            repairs.append((k, Repair("extra_frame", None, "repeated frame: the first is kept")))
        else:
            out[k] = body
    return out


def _seg_body(body: str, k: int, repairs: list) -> str:
    start = body.find(SEG_OPEN)
    inner = body[start + len(SEG_OPEN) :] if start >= 0 else body
    end = inner.find(SEG_CLOSE)
    if end < 0:
        repairs.append((k, Repair("unclosed_seg", None, "")))
        return inner
    return inner[:end]


def _delta_grid(body: str, prev: np.ndarray, k: int, repairs: list) -> np.ndarray:
    g = prev.copy()
    rows, cols = g.shape
    for line in _seg_body(body, k, repairs).split("\n"):
        if not line.strip():
            continue
        m = _DELTA_ROW.match(line)
        if m is None or not 0 <= int(m.group(1)) < rows:
            repairs.append((k, Repair("bad_line", None, line[:40])))
            continue
        dec = decode(m.group(2) + "\n", (1, cols), "rrle")
        repairs.extend((k, rep) for rep in dec.repairs)
        g[int(m.group(1))] = dec.grid[0]
    return g


def decode_frames(
    text: str, n_frames: int, size=16, scheme: str = "rrle", form: str = "frames"
) -> VideoDecoded:
    """Parse the ``Frame k:`` lines of an answer into ``n_frames`` grids (lenient; see the module doc)."""
    check_form(form, scheme)
    if not isinstance(text, str):
        raise TypeError(f"decode_frames() takes a str, got {type(text).__name__}")
    rows, cols = grid_shape(size)
    repairs: list[tuple[int | None, Repair]] = []
    blocks = _blocks(text, n_frames, repairs)
    empty = np.full((rows, cols), BACKGROUND, dtype=object)
    grids, prev = [], empty
    for k in range(n_frames):
        body = blocks.get(k)
        if body is None:
            repairs.append((k, Repair("missing_frame", None, f"Frame {k + 1}")))
            g = empty
        elif body.lower().startswith(ABSENT):
            g = empty
        elif form == "delta" and body.lower().startswith(SAME):
            g = prev
        elif form == "delta":
            g = _delta_grid(body, prev, k, repairs)
        else:
            dec = decode(SEG_OPEN + _seg_body(body, k, repairs) + SEG_CLOSE, (rows, cols), scheme)
            repairs.extend((k, rep) for rep in dec.repairs)
            g = dec.grid.astype(object)
        grids.append(g)
        prev = g
    return VideoDecoded(np.asarray(grids, dtype=str).reshape(n_frames, rows, cols), repairs)
