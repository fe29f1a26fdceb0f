"""Inference queries: one image plus one question, read from a built (ms-swift) JSONL.

A built row (schema: :mod:`text4seg.data.records`) gives one :class:`Query` per user turn, all on the
row's first image; the key ``(text4seg.id, turn)`` joins a query, its result record
(:mod:`text4seg.data.results`) and its ground truth (:mod:`text4seg.evaluation.evaluate`).
No heavy imports: prediction, decoding and evaluation all read queries from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from text4seg.data.jsonl import parse_shard, read_jsonl
from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME


@dataclass
class Query:
    """One inference query: an image and a question (no ``<image>`` tag).

    ``labels``: the target labels (allowed by constrained decoding besides ``others``); ``grid`` is
    ``(rows, cols)``; ``width``/``height`` 0 means "read from the image"; ``task``: the row's task
    (``""`` when unknown; ``multi`` answers have one block per label, :mod:`text4seg.descriptors.multi`);
    ``truth``: where its ground truth is, for the overlay's outline (:func:`row_truth`; None: none
    known): ``{"rle": COCO RLE}`` or ``{"label_map": path, "classes": [...], "ignore": [...]}``.
    """

    id: str
    image: str
    question: str
    turn: int = 0
    labels: list[str] = field(default_factory=list)
    grid: tuple[int, int] = DEFAULT_GRID
    scheme: str = DEFAULT_SCHEME
    width: int = 0
    height: int = 0
    task: str = ""
    truth: dict | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.id, self.turn)


def image_path(images, root: str | os.PathLike | None) -> str:
    """The first entry of a row's ``images`` (a path or ``{"path": ...}``), joined to ``root`` if relative."""
    if not images:
        raise ValueError("row has no image")
    first = images[0]
    p = first.get("path") if isinstance(first, dict) else first
    if not isinstance(p, str):
        raise ValueError(f"unsupported image entry {str(first)[:80]!r}: expected a path")
    if root is not None and not os.path.isabs(p):
        p = os.path.join(root, p)
    return p


def turn_labels(meta: dict, turn: int, n_turns: int) -> list[str]:
    """The target labels of one turn: ``labels[turn]`` when a referring row lists one label per turn
    (the builders' convention), else all of the row's labels; semantic rows: the classes asked for."""
    labels = [str(x) for x in (meta.get("labels") or [])]
    if meta.get("task") == "semantic":  # the classes the question asks for, present or not
        return [str(x) for x in (meta.get("asked") or labels)]
    if n_turns > 1 and len(labels) == n_turns:
        return [labels[turn]]
    return labels


def queries_from_row(
    row: dict, root: str | os.PathLike | None = None, index: int = 0, with_truth: bool = False
) -> list[Query]:
    """The queries of one built (ms-swift) JSONL row: one per user turn, all on the row's first image;
    ``with_truth``: each with its :attr:`Query.truth` (:func:`row_truth`), for the overlays."""
    meta = row.get("text4seg") or {}
    image = image_path(row.get("images"), root)
    users = [m["content"] for m in row.get("messages", []) if m.get("role") == "user"]
    if not users:
        raise ValueError(f"row {index}: no user message")
    grid = tuple(meta.get("grid") or DEFAULT_GRID)
    return [
        Query(
            id=str(meta.get("id", index)),
            image=image,
            question=q.replace("<image>", "").strip(),
            turn=t,
            labels=turn_labels(meta, t, len(users)),
            grid=(int(grid[0]), int(grid[1])),
            scheme=meta.get("scheme", DEFAULT_SCHEME),
            width=int(meta.get("width") or 0),
            height=int(meta.get("height") or 0),
            task=str(meta.get("task", "")),
            truth=row_truth(meta, t, root) if with_truth else None,
        )
        for t, q in enumerate(users)
    ]


def load_queries(
    jsonl: str | os.PathLike,
    root: str | os.PathLike | None = None,
    limit: int | None = None,
    shard: str | tuple[int, int] | None = None,
    with_truth: bool = False,
) -> list[Query]:
    """Queries of a built JSONL (see :func:`queries_from_row`); ``shard`` ``i/N`` keeps rows i, i+N, ...;
    ``limit`` caps the number of queries; ``with_truth``: with their ground truth (for the overlays)."""
    i, n = parse_shard(shard)
    out: list[Query] = []
    for k, row in enumerate(read_jsonl(jsonl)):
        if k % n != i:
            continue
        out.extend(queries_from_row(row, root, k, with_truth))
        if limit is not None and len(out) >= limit:
            return out[:limit]
    return out


def row_truth(meta: dict, turn: int, root: str | os.PathLike | None = None) -> dict | None:
    """Where the ground truth of one turn of a built row is (``--with-gt`` rows): ``text4seg.gt.masks[turn]``
    as COCO RLE -> ``{"rle": ...}``, or the label map of a semantic row -> ``{"label_map": path, "classes":
    [...], "ignore": [...]}``; None when the row carries none. Lazy: the overlay decodes it
    (:func:`truth_mask`)."""
    gt = meta.get("gt") if isinstance(meta, dict) else None
    if not isinstance(gt, dict):
        return None
    masks = gt.get("masks") if isinstance(gt.get("masks"), list) else []
    label_map = gt.get("label_map")
    if turn >= max(len(masks), 1 if label_map else 0):  # a label map: the row's one turn
        return None
    if turn < len(masks) and isinstance(masks[turn], dict) and masks[turn]:
        return {"rle": masks[turn]}
    if isinstance(label_map, str) and label_map:
        return {
            "label_map": str(Path(label_map) if root is None else Path(root) / label_map),
            "classes": [str(c) for c in gt.get("classes") or []],
            "ignore": [v for v in gt.get("ignore") or [] if isinstance(v, int)],
        }
    return None


def truth_mask(q: Query, h: int, w: int):
    """The ``(h, w)`` bool ground truth of ``q`` for its overlay (all false: a no-target query), or None
    when it has none, or it cannot be read or does not fit the image (an overlay is no place to fail a
    run: ``text4seg evaluate`` checks the ground truth)."""
    truth = q.truth
    if not truth:
        return None
    import numpy as np

    try:
        if "rle" in truth:
            from text4seg.data.rle import rle_to_mask

            mask = rle_to_mask(truth["rle"], where=f"{q.id} gt")
        else:
            from text4seg.data.images import open_image

            with open_image(truth["label_map"]) as im:
                values = np.asarray(im)
            classes, ignore = truth["classes"], set(truth["ignore"])
            wanted = set(q.labels) - {"others"}
            keep = [v for v, c in enumerate(classes) if c in wanted and v not in ignore]
            mask = np.isin(values, keep) if values.ndim == 2 else None
    except (ValueError, OSError, KeyError, TypeError):
        return None
    if mask is None or mask.shape != (h, w):
        return None
    return mask
