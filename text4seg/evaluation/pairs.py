"""One result record joined with its ground truth (:class:`Pair`), how ``evaluate`` scores
(:class:`Options`), what a scorer may know of the whole ground truth (:class:`GroundInfo`), and the masks
of a pair that every scorer family shares: the answer painted (:func:`answer_masks`), an RLE already
checked decoded (:func:`checked_rle_to_mask`), the refined label map, the ground-truth label map, the
per-sample row and a mask's box.

The scorer families (:mod:`~text4seg.evaluation.score_referring`,
:mod:`~text4seg.evaluation.score_semantic`, :mod:`~text4seg.evaluation.score_peers`) and the registry
(:mod:`text4seg.evaluation.scorers`, which re-exports the three types) import from here, never the other
way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np

from text4seg._lazy import require
from text4seg.data.images import open_image
from text4seg.data.results import AnswerMasks, ResultRecord, select_labels
from text4seg.descriptors import BACKGROUND, decode, normalize_label
from text4seg.descriptors.grid import resize_nearest


@dataclass(frozen=True)
class Options:
    """How ``evaluate`` scores (its keyword arguments)."""

    label_only: bool = False
    semantic_background: bool = False
    geometry: str = "pil"
    thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9)


class Pair(NamedTuple):
    """One record joined with its ground truth: ``key`` is the entry's ``(id, turn)``, ``line`` the
    record's ``file:line`` (for errors)."""

    rec: ResultRecord
    gt: dict
    key: tuple[str, int]
    line: str


class GroundInfo(NamedTuple):
    """What a scorer's ``summarise`` may know of the whole ground truth: ``label_map_classes``, the
    classes of its first label-map row (the semantic class list)."""

    label_map_classes: list | None = None


def answer_masks(p: Pair, opts: Options) -> AnswerMasks:
    """:func:`text4seg.data.results.answer_to_masks` of the record's answer, painted from the decoded
    runs (the same label map, names and mask, without building the grid of label strings)."""
    rec = p.rec
    dec = decode(rec.answer, rec.grid, rec.scheme)
    valid = dec.ok
    labels, counts = zip(*dec.runs)
    names = list(dict.fromkeys((BACKGROUND, *labels)))  # others first, then order of appearance
    pos = {name: k for k, name in enumerate(names)}
    cells = np.fromiter(map(pos.__getitem__, labels), np.int32, len(labels)).repeat(counts)
    cells = cells.reshape(dec.shape)
    label_map = resize_nearest(cells, rec.height, rec.width, opts.geometry)
    mask, other = select_labels(label_map, names, p.gt["labels"] if opts.label_only else None)
    return AnswerMasks(dec, valid, label_map, names, mask, other)


@cache
def mask_util():
    """``pycocotools.mask``, imported once (on first use: the extra ``data``)."""
    return require("pycocotools.mask")


def checked_rle_to_mask(rle: dict) -> np.ndarray:
    """The mask of an RLE already checked (:func:`text4seg.data.rle.check_rle`: the record by
    ``ResultRecord.from_json``, the ground truth by the index pass), without checking it again."""
    mu = mask_util()
    h, w = int(rle["size"][0]), int(rle["size"][1])
    counts = rle["counts"]
    if isinstance(counts, list):
        obj = mu.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        obj = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mu.decode(obj).view(bool)  # 0/1 bytes: a view, no copy


def sample_row(p: Pair, am) -> dict:
    """The per-sample row of a referring or semantic pair (``other_labels``: labels outside the query)."""
    row = {"id": p.key[0], "turn": p.key[1], "task": p.gt["task"], "parse_valid": am.parse_valid}
    if not p.rec.id:
        row["joined_by"] = "image+question"
    named = am.names[1:]
    if named:
        allowed = {normalize_label(x) for x in p.gt["labels"]}
        named = [n for n in named if n not in allowed]
    row["other_labels"] = named
    return row


def refined_map(p: Pair):
    """``(label map, names)`` of the record's ``refined_labels`` (checked by ``from_json``), or None."""
    rec = p.rec
    if rec.refined_labels is None:
        return None
    out = np.zeros((rec.height, rec.width), np.int32)
    for k, rle in enumerate(rec.refined_labels.values(), 1):
        out[checked_rle_to_mask(rle)] = k
    return out, [BACKGROUND, *rec.refined_labels]


def gt_label_map(p: Pair) -> np.ndarray:
    """The ground-truth label map of a semantic or instance pair (a PNG read by
    :func:`text4seg.data.images.open_image`), refused unless it is the record's size."""
    g, rec = p.gt, p.rec
    with open_image(g["label_map"], f"{g['where']}: text4seg.gt.label_map {g['label_map']}") as im:
        gt_map = np.asarray(im)
    if gt_map.shape != (rec.height, rec.width):
        raise ValueError(
            f"{g['where']}: text4seg.gt.label_map {g['label_map']} is {gt_map.shape}, "
            f"prediction {rec.height}x{rec.width} ({p.line})"
        )
    return gt_map


_ANY = np.logical_or.reduce  # ndarray.any of a bool mask without its Python wrappers


def box(m: np.ndarray):
    """:func:`text4seg.evaluation.metrics.mask_to_box` of a 2-D bool mask (no conversion, no check): the
    first and last true bytes of its row and column projections."""
    rows = _ANY(m, 1).tobytes()
    y0 = rows.find(1)
    if y0 < 0:
        return None
    cols = _ANY(m, 0).tobytes()
    return cols.find(1), y0, cols.rfind(1) + 1, rows.rfind(1) + 1
