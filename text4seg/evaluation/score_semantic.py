"""The semantic scorer (``SCORERS["semantic"]``): per-class intersection and union of each pair's
label map against the ground-truth label-map PNG, summed as pairs come, and mIoU with and without the
background class at the end. Conventions: :mod:`text4seg.evaluation.scorers`."""

from __future__ import annotations

import numpy as np

from text4seg.descriptors import BACKGROUND, normalize_label
from text4seg.evaluation.metrics import semantic_counts, semantic_scores_from_counts
from text4seg.evaluation.pairs import (
    GroundInfo,
    Options,
    Pair,
    answer_masks,
    gt_label_map,
    refined_map,
    sample_row,
)

IGNORE = 255


def _label_map_ids(pred_map: np.ndarray, names: list[str], classes: list[str]) -> np.ndarray:
    """Predicted (label_map, names) -> class ids of ``classes`` (-1 = not a class)."""
    lut_names = {normalize_label(c): i for i, c in enumerate(classes) if c}
    lut = np.array([lut_names.get(n, -1) for n in names], np.int64)
    return lut[pred_map]


def _background_id(classes: list[str]) -> int | None:
    """The background class of the official protocol: class 0 when it is ``others`` (VOC-20, PC-59,
    ADE-150 as built), else None."""
    return 0 if classes and normalize_label(classes[0] or BACKGROUND) == BACKGROUND else None


def _semantic_counts(pm: np.ndarray, gt_map: np.ndarray, g: dict) -> tuple[np.ndarray, ...]:
    """``(inter, union)`` with ignored pixels out (the headline and ``miou_without_background``), then
    ``(inter, union)`` by the official protocol (``miou_with_background``: ground-truth background
    scored as class 0 even where the row ignores it, void predictions counted; metrics.semantic_counts)."""
    k, bg = len(g["classes"]), _background_id(g["classes"])
    gt_ids = gt_map.astype(np.int64)
    official = gt_ids.copy()
    for v in g["ignore"]:
        gt_ids[gt_map == v] = IGNORE
        if v != bg:
            official[gt_map == v] = IGNORE
    try:
        i, u = semantic_counts(pm, gt_ids, k, IGNORE)
        oi, ou = semantic_counts(pm, official, k, IGNORE, background=bg, void_predictions=True)
    except ValueError as exc:
        raise ValueError(f"{g['where']}: text4seg.gt.label_map {g['label_map']}: {exc}") from None
    return i, u, oi, ou


def start() -> dict:
    """The state: the summed counts of each kind (None until a pair comes)."""
    return {"coarse": None, "refined": None}


def add(sem: dict, p: Pair, opts: Options) -> dict:
    """Add one pair's per-class counts (coarse and refined); its per-sample row."""
    g = p.gt
    am = answer_masks(p, opts)
    row = sample_row(p, am)
    refined = refined_map(p)
    gt_map = gt_label_map(p)
    classes = g["classes"]
    pred_ids = _label_map_ids(am.label_map, am.names, classes)
    refined_ids = None if refined is None else _label_map_ids(*refined, classes)
    for kind, pm in (("coarse", pred_ids), ("refined", refined_ids)):
        if pm is None:
            continue
        counts = _semantic_counts(pm, gt_map, g)
        acc = sem[kind]
        sem[kind] = counts if acc is None else tuple(a + c for a, c in zip(acc, counts))
    return row


def _semantic_part(counts, classes: list[str], opts: Options) -> dict | None:
    if counts is None:
        return None
    i, u, oi, ou = counts
    full = semantic_scores_from_counts(oi, ou, classes)  # K classes, the official protocol
    keep = [k for k, c in enumerate(classes) if normalize_label(c or BACKGROUND) != BACKGROUND]
    without = semantic_scores_from_counts(i[keep], u[keep], [classes[k] for k in keep])
    out = full if opts.semantic_background else without
    out["miou_with_background"] = full["miou"]  # the official evaluation's number (K = 21/60/151)
    out["miou_without_background"] = without["miou"]
    return out


def summarise(sem: dict, opts: Options, info: GroundInfo) -> tuple[dict | None, list]:
    """The semantic section (None without a pair) over the class list of ``info``."""
    if sem["coarse"] is None:
        return None, []
    classes = info.label_map_classes or []
    return {
        "coarse": _semantic_part(sem["coarse"], classes, opts),
        "refined": _semantic_part(sem["refined"], classes, opts),
    }, []
