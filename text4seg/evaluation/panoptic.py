"""Panoptic quality (PQ, SQ, RQ) as the COCO panoptic protocol defines it (Kirillov et al., panopticapi).

Inputs, one entry per image::

    preds[i] = (id_map, segments)                 # id_map: (H, W) int array, 0 = void (no segment)
    gts[i]   = (id_map, segments[, crowd_ids])    # segments: {segment id: category id}
                                                  # crowd_ids: segment ids whose iscrowd is 1 (optional)
    things   = {category ids that are things}     # every other category seen is stuff

The protocol, per image and category (segments of different categories never match):

* a ground-truth segment and a predicted segment match when their IoU > 0.5 (so a match is unique and no
  assignment problem arises); the IoU's union leaves out the predicted segment's pixels that are void in
  the ground truth: ``union = |P| + |G| - |P & G| - |P & void|``;
* crowd ground-truth segments are never matched and never false negatives; every crowd pixel of a category
  acts as void for that category's predicted segments (panopticapi keeps one crowd region per category and
  image; several crowd segments of one category are taken together here, which is the same when there is
  one);
* an unmatched predicted segment is a false positive unless more than half of its pixels lie in void or
  in a crowd region of its own category;
* an unmatched non-crowd ground-truth segment is a false negative.

Per category: ``PQ = sum(IoU of matches) / (TP + FP/2 + FN/2)``, ``SQ = sum IoU / TP`` (0 without TP),
``RQ = TP / (TP + FP/2 + FN/2)``. Categories with ``TP + FP + FN = 0`` over the whole set are left out;
the reported numbers are means over the remaining categories (all, things, stuff), ``None`` when a group
has none (panopticapi would divide by zero). Matches are counted over the whole set before dividing.

Worked example: one 1 x 4 image, ground truth ``[1, 1, 1, 0]`` (segment 1 = category 7, a thing),
prediction ``[5, 5, 0, 5]`` (segment 5 = category 7): intersection 2, void overlap 1, union
3 + 3 - 2 - 1 = 3, IoU 2/3 > 0.5: one TP, PQ = SQ = 2/3, RQ = 1.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from text4seg.data.results import ResultRecord

KEYS = ("pq", "sq", "rq", "n")


def _pairs(gt: np.ndarray, pred: np.ndarray) -> dict[tuple[int, int], int]:
    """``{(gt id, pred id): pixel count}`` over every pixel."""
    g = gt.astype(np.int64).ravel()
    p = pred.astype(np.int64).ravel()
    keys, counts = np.unique(np.stack([g, p]), axis=1, return_counts=True)
    return {(int(a), int(b)): int(c) for (a, b), c in zip(keys.T, counts)}


def _unpack(entry, what: str, i: int):
    if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
        raise ValueError(f"{what}[{i}] must be (id_map, segments) or (id_map, segments, crowd_ids)")
    id_map = np.asarray(entry[0])
    if id_map.ndim != 2 or not np.issubdtype(id_map.dtype, np.integer):
        raise ValueError(f"{what}[{i}]: id_map must be a 2-D int array, got {id_map.dtype} {id_map.shape}")
    segments = {int(k): v for k, v in dict(entry[1]).items()}
    if 0 in segments:
        raise ValueError(f"{what}[{i}]: segment id 0 is void and cannot name a category")
    crowd = {int(c) for c in (entry[2] if len(entry) == 3 else ())}
    present = set(np.unique(id_map).tolist()) - {0}
    unknown = sorted(present - set(segments))
    if unknown:
        raise ValueError(f"{what}[{i}]: id_map has segment ids {unknown[:5]} not in segments")
    return id_map, segments, crowd


def panoptic_quality(
    preds: Sequence, gts: Sequence, things: Collection[int]
) -> dict[str, float | int | None | dict]:
    """PQ/SQ/RQ over a set of images (protocol and input shapes: module docstring).

    Returns ``pq, sq, rq, n`` (all categories), ``pq_th, sq_th, rq_th, n_th`` (things), ``pq_st, sq_st,
    rq_st, n_st`` (stuff), and ``per_class``: ``{category: {"pq", "sq", "rq", "tp", "fp", "fn"}}``.
    """
    if len(preds) != len(gts):
        raise ValueError(f"got {len(preds)} predictions for {len(gts)} ground-truth images")
    things = {int(t) for t in things}
    tp: dict[int, int] = {}
    fp: dict[int, int] = {}
    fn: dict[int, int] = {}
    iou_sum: dict[int, float] = {}
    for i, (pe, ge) in enumerate(zip(preds, gts)):
        pmap, psegs, _ = _unpack(pe, "preds", i)
        gmap, gsegs, crowd = _unpack(ge, "gts", i)
        if pmap.shape != gmap.shape:
            raise ValueError(f"image {i}: prediction is {pmap.shape}, ground truth {gmap.shape}")
        for cat in list(psegs.values()) + list(gsegs.values()):
            for d in (tp, fp, fn, iou_sum):
                d.setdefault(int(cat), 0)
        pairs = _pairs(gmap, pmap)
        parea: dict[int, int] = {}
        garea: dict[int, int] = {}
        for (g, p), c in pairs.items():
            parea[p] = parea.get(p, 0) + c
            garea[g] = garea.get(g, 0) + c
        # crowd region per category: the gt ids of its crowd segments
        crowd_of: dict[int, set[int]] = {}
        for g in crowd:
            if g in gsegs:
                crowd_of.setdefault(int(gsegs[g]), set()).add(g)
        matched_g: set[int] = set()
        matched_p: set[int] = set()
        for (g, p), inter in pairs.items():
            if g == 0 or p == 0 or g in crowd or g not in gsegs or p not in psegs:
                continue
            if int(gsegs[g]) != int(psegs[p]):
                continue
            union = parea[p] + garea[g] - inter - pairs.get((0, p), 0)
            iou = inter / union
            if iou > 0.5:
                cat = int(gsegs[g])
                tp[cat] += 1
                iou_sum[cat] += iou
                matched_g.add(g)
                matched_p.add(p)
        for g, cat in gsegs.items():
            if g in matched_g or g in crowd or garea.get(g, 0) == 0:
                continue
            fn[int(cat)] += 1
        for p, cat in psegs.items():
            if p in matched_p or parea.get(p, 0) == 0:
                continue
            ignored = pairs.get((0, p), 0) + sum(pairs.get((g, p), 0) for g in crowd_of.get(int(cat), ()))
            if ignored / parea[p] > 0.5:
                continue
            fp[int(cat)] += 1
    per_class = {}
    for cat in sorted(tp):
        denom = tp[cat] + 0.5 * fp[cat] + 0.5 * fn[cat]
        if tp[cat] + fp[cat] + fn[cat] == 0:
            continue
        per_class[cat] = {
            "pq": iou_sum[cat] / denom,
            "sq": iou_sum[cat] / tp[cat] if tp[cat] else 0.0,
            "rq": tp[cat] / denom,
            "tp": tp[cat],
            "fp": fp[cat],
            "fn": fn[cat],
        }
    out: dict = {}
    for suffix, keep in (
        ("", lambda c: True),
        ("_th", lambda c: c in things),
        ("_st", lambda c: c not in things),
    ):
        cats = [c for c in per_class if keep(c)]
        for k in ("pq", "sq", "rq"):
            out[k + suffix] = float(np.mean([per_class[c][k] for c in cats])) if cats else None
        out["n" + suffix] = len(cats)
    out["per_class"] = per_class
    return out


def id_map_from_masks(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` int32 id map from bool masks: mask ``i`` gets id ``i + 1``; later masks win overlaps."""
    out = np.zeros(shape, np.int32)
    for i, m in enumerate(masks):
        m = np.asarray(m, bool)
        if m.shape != tuple(shape):
            raise ValueError(f"mask {i} is {m.shape}, expected {tuple(shape)}")
        out[m] = i + 1
    return out


def score_panoptic(items: Sequence[tuple[ResultRecord, dict]]) -> tuple[dict, list[dict]]:
    """``(scores, per-sample rows)`` of panoptic result records against built rows (``coco-panoptic``).

    ``items``: ``(record, row meta)``. Ground truth: segment ``i`` is ``gt.masks[i]`` with category
    ``labels[i]`` minus its instance number, crowd when ``i`` is in ``gt.ignore``; thing classes are
    ``gt.classes``. Prediction: every distinct label of the decoded answer is one segment, its category the
    label minus a trailing instance number (:func:`text4seg.descriptors.instances.parse_instance_label`);
    ``refined`` uses the record's ``refined_labels`` (SAM, each label alone) when present. A label with an
    instance number is a thing even if no ground truth names its class.
    """
    from text4seg.data.results import answer_to_masks, rles_to_label_map
    from text4seg.data.rle import rle_to_mask
    from text4seg.descriptors.instances import parse_instance_label

    cats: dict[str, int] = {}
    things: set[int] = set()

    def cat(name: str) -> int:
        return cats.setdefault(name, len(cats) + 1)

    gts, preds = [], {"coarse": [], "refined": []}
    rows = []
    for rec, meta in items:
        h, w = rec.height, rec.width
        gt = meta["gt"]
        masks = [rle_to_mask(m) for m in gt["masks"]]
        if any(m.shape != (h, w) for m in masks):
            raise ValueError(f"sample {rec.id!r}: a ground-truth mask is not {h}x{w}")
        names = [parse_instance_label(lab)[0] for lab in meta["labels"]]
        things.update(cat(c) for c in gt.get("classes", []))
        gts.append(
            (
                id_map_from_masks(masks, (h, w)),
                {i + 1: cat(n) for i, n in enumerate(names)},
                {i + 1 for i in gt.get("ignore", [])},
            )
        )
        am = answer_to_masks(rec.answer, h, w, rec.grid, rec.scheme)
        maps = {"coarse": (am.label_map, am.names)}
        if rec.refined_labels is not None:
            maps["refined"] = rles_to_label_map(rec.refined_labels, h, w)
        for kind, (lmap, lnames) in maps.items():
            segs = {}
            for k, lab in enumerate(lnames):
                if k == 0:
                    continue
                name, num = parse_instance_label(lab)
                segs[k] = cat(name)
                if num:
                    things.add(segs[k])
            preds[kind].append((len(gts) - 1, (lmap.astype(np.int64), segs)))
        row = {"id": rec.id, "turn": rec.turn, "task": "panoptic"}
        rows.append(row | {"parse_valid": am.parse_valid, "segments": len(am.names) - 1})
    out = {}
    for kind, plist in preds.items():
        if len(plist) != len(gts):
            out[kind] = None
            continue
        r = panoptic_quality([p for _, p in plist], gts, things)
        names_of = {v: k for k, v in cats.items()}
        r["per_class"] = {names_of[c]: v for c, v in r["per_class"].items()}
        out[kind] = r
    return out, rows
