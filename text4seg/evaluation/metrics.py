"""Segmentation metrics the field reports, on numpy masks (pure numpy, no torch).

Every score is computed per sample first (intersection, union, emptiness) and aggregated second.

Conventions
-----------
* A mask is an ``(H, W)`` bool array. An all-False ground truth is a **no-target** sample (gRefCOCO);
  an all-False prediction is the model's **rejection** (in text-as-mask: an answer with no foreground
  cell).
* ``cIoU`` = sum of intersections / sum of unions over the set (LISA, ReLA).
* ``gIoU`` = mean of per-sample IoU, empty prediction on empty ground truth = 1.0 (LISA, ReLA/GSVA); a
  non-empty prediction on an empty ground truth scores 0.
* ``N-acc`` = TP / (TP + FN) over no-target samples = share of them predicted empty; ``T-acc`` =
  TN / (TN + FP) over targeted samples = share of them predicted non-empty (ReLA).
* ``Pr@X`` = share of **targeted** samples with IoU >= X (X in 0.5 .. 0.9). ``None`` without targets.
* REC by mask to box: a box is ``(x0, y0, x1, y1)`` in pixel-edge coordinates, ``x1``/``y1``
  exclusive (the tight box of the foreground pixels: ``x0 = min col``, ``x1 = max col + 1``), so its
  area is ``(x1 - x0) * (y1 - y0)`` pixels. ``Acc@0.5`` = share of samples whose box IoU with the
  ground-truth box **exceeds** 0.5 (strictly greater); an empty predicted mask has no box and scores 0.
* Semantic segmentation: label maps of class ids ``0 .. K-1`` (the benchmark's classes; whether id 0 is
  a "background" class is the benchmark's choice and it is then scored like any other class).
  Ground-truth pixels equal to ``ignore_index`` (255) are left out of every intersection and union.
  Predicted ids outside ``0 .. K-1`` (e.g. ``-1`` = "others", no class named) are wrong on every pixel:
  they add to the union of the ground-truth class only. Per-class I and U are summed over the whole
  set; ``mIoU`` is the mean of I/U over classes with U > 0 (classes that never occur in the ground
  truth and are never predicted are left out and reported as ``None``) The official Text4Seg protocol
  (background scored as class 0, void predictions counted) is :func:`semantic_counts` with
  ``background=0, void_predictions=True``; tests/conformance/test_metrics_reference.py holds its golden
  counts.

Degenerate cases (defined here, tested in tests/test_metrics.py), next to the reference evaluators
(LISA: ``train_ds.validate``, cIoU = sum I / (sum U + 1e-10), per-sample IoU = I / (U + 1e-5) + 1 if U = 0;
ReLA: ``ReferEvaluator.evaluate``, no-target decided by the dataset's ``empty`` flag):

==========================================  ==============  ======================  ======================
case                                        here            LISA                    ReLA
==========================================  ==============  ======================  ======================
empty set (n = 0)                           every score     (not run)               no result for the set
                                            None
every sample empty vs empty (sum U = 0,     cIoU 1.0,       cIoU 0.0 (0 / 1e-10),   crash: cIoU is 0 / 0
so every sample is no-target)               gIoU 1.0,       gIoU 1.0                (T-acc and Pr@X too)
                                            N-acc 1.0
one sample empty vs empty (U = 0)           IoU 1.0         IoU 1.0                 1.0 (no-target) /
                                                                                    0.0 (flagged targeted)
no no-target sample                         N-acc None,     (no N-acc/T-acc)        N-acc = T-acc = 0
                                            T-acc defined                           (both reported as 0)
every sample no-target                      T-acc None,     (no N-acc/T-acc)        crash: T-acc and Pr@X
                                            Pr@X None                               are 0 / 0
==========================================  ==============  ======================  ======================

So cIoU and gIoU agree with LISA exactly except for LISA's epsilons (its per-sample IoU of a perfect
non-empty prediction is I / (I + 1e-5), a hair under 1) and for the all-empty set, where LISA's
epsilon gives 0 and we give 1 (nothing to find, nothing predicted: perfect, and the same value as gIoU).
Here a no-target sample is one whose ground-truth mask is empty; ReLA reads a per-sample flag instead,
so a sample flagged targeted whose mask is empty (gRefCOCO refs whose every target is a crowd region
left out, counted as ``empty_target`` by the builder) is no-target here and targeted with IoU 0 there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PR_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
Box = tuple[int, int, int, int]


def _as_mask(m, what: str, i: int) -> np.ndarray:
    arr = np.asarray(m)
    if arr.ndim != 2:
        raise ValueError(f"{what}[{i}] must be a 2-D (H, W) mask, got shape {arr.shape}")
    return arr.astype(bool, copy=False)


def mask_stats(pred: np.ndarray, gt: np.ndarray) -> dict:
    """Per-sample statistics of two same-shape ``(H, W)`` bool masks.

    Returns ``{"inter": int, "union": int, "iou": float, "pred_empty": bool, "gt_empty": bool}``;
    ``iou`` is 1.0 for empty vs empty.
    """
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground truth shape {g.shape}")
    inter = int(np.count_nonzero(p & g))
    union = int(np.count_nonzero(p | g))
    return {
        "inter": inter,
        "union": union,
        "iou": 1.0 if union == 0 else inter / union,
        "pred_empty": not p.any(),
        "gt_empty": not g.any(),
    }


def aggregate_referring(stats: Sequence[dict], thresholds: Sequence[float] = PR_THRESHOLDS) -> dict:
    """Aggregate :func:`mask_stats` dicts into the referring scores (see the module docstring).

    Returns ``{"n", "n_no_target", "n_targeted", "ciou", "giou", "n_acc", "t_acc", "pr@0.5", ...}``.
    ``ciou``/``giou`` are None for an empty set.
    """
    n = len(stats)
    sum_i = sum(s["inter"] for s in stats)
    sum_u = sum(s["union"] for s in stats)
    no_target = [s for s in stats if s["gt_empty"]]
    targeted = [s for s in stats if not s["gt_empty"]]
    out: dict = {
        "n": n,
        "n_no_target": len(no_target),
        "n_targeted": len(targeted),
        "ciou": None if n == 0 else (1.0 if sum_u == 0 else sum_i / sum_u),
        "giou": None if n == 0 else float(np.mean([s["iou"] for s in stats])),
        "n_acc": None if not no_target else sum(s["pred_empty"] for s in no_target) / len(no_target),
        "t_acc": None if not targeted else sum(not s["pred_empty"] for s in targeted) / len(targeted),
    }
    for t in thresholds:
        out[f"pr@{t:g}"] = None if not targeted else sum(s["iou"] >= t for s in targeted) / len(targeted)
    return out


def referring_scores(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], **kw) -> dict:
    """cIoU, gIoU, N-acc, T-acc and Pr@0.5..0.9 of predicted against ground-truth masks.

    Args:
        preds, gts: equal-length sequences of ``(H, W)`` bool masks (shapes match pairwise). An all-False
            ground truth is a no-target sample, an all-False prediction a rejection.
        thresholds: the Pr@X thresholds (default 0.5, 0.6, 0.7, 0.8, 0.9).

    Returns:
        dict with keys ``ciou``, ``giou``, ``n_acc``, ``t_acc`` (None where the set has no no-target /
        no targeted samples), ``pr@0.5`` ... ``pr@0.9``, ``n``, ``n_no_target``, ``n_targeted``.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground-truth masks")
    stats = [
        mask_stats(_as_mask(p, "preds", i), _as_mask(g, "gts", i)) for i, (p, g) in enumerate(zip(preds, gts))
    ]
    return aggregate_referring(stats, **kw)


# ------------------------------------------------------------------------------------------ REC boxes
def mask_to_box(mask: np.ndarray) -> Box | None:
    """Tight box ``(x0, y0, x1, y1)`` of the True pixels, ``x1``/``y1`` exclusive; None if empty."""
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) mask, got shape {m.shape}")
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def box_iou(a: Box | None, b: Box | None) -> float:
    """IoU of two ``(x0, y0, x1, y1)`` boxes (exclusive max edges). None vs None = 1.0, None vs box = 0."""
    if a is None or b is None:
        return 1.0 if a is None and b is None else 0.0
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return 1.0 if area <= 0 else inter / area


def rec_scores(preds: Sequence[np.ndarray], gts: Sequence, threshold: float = 0.5) -> dict:
    """REC accuracy by mask to box.

    Args:
        preds: ``(H, W)`` bool masks; each becomes its tight box (:func:`mask_to_box`).
        gts: ground-truth ``(H, W)`` bool masks or ``(x0, y0, x1, y1)`` boxes (exclusive max edges).
        threshold: a sample is correct when box IoU > threshold (strictly).

    Returns ``{"n", "acc@0.5", "mean_box_iou"}`` (the key follows ``threshold``); None values when empty.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground-truth boxes")
    ious = []
    for i, (p, g) in enumerate(zip(preds, gts)):
        gbox = g if (g is None or (np.ndim(g) == 1 and len(g) == 4)) else mask_to_box(_as_mask(g, "gts", i))
        ious.append(box_iou(mask_to_box(_as_mask(p, "preds", i)), None if gbox is None else tuple(gbox)))
    n = len(ious)
    return {
        "n": n,
        f"acc@{threshold:g}": None if n == 0 else sum(v > threshold for v in ious) / n,
        "mean_box_iou": None if n == 0 else float(np.mean(ious)),
    }


# ------------------------------------------------------------------------------------------- semantic
def semantic_counts(
    pred: np.ndarray,
    gt: np.ndarray,
    num_classes: int,
    ignore_index: int = 255,
    *,
    background: int | None = None,
    void_predictions: bool = False,
):
    """Per-class intersection and union of one ``(H, W)`` pair of integer label maps.

    Returns ``(inter, union)``, two int64 arrays of shape ``(num_classes,)`` (conventions: module
    docstring). Sum them over a set, then call :func:`semantic_scores_from_counts`.

    The official Text4Seg protocol (``llava/eval/eval_semantic_seg.py``: ``intersectionAndUnionGPU``
    with ``ignore_index=0``) is ``background=<its id>, void_predictions=True``:

    * ``background``: a ground-truth pixel of this class is always its intersection (the reference
      overwrites the prediction there with the background id), so a prediction of another class on it
      is no false positive of that class; a predicted id outside ``0 .. K-1`` (a label that is not a
      class) is the background class (the reference's ``labels_set.get(label, 0)``).
    * ``void_predictions``: a pixel whose ground truth is ``ignore_index`` (VOC's 255 boundary) still
      adds its predicted class to that class's union (the reference drops 255 from the ground-truth
      histogram only); by default it counts nowhere.
    """
    p, g = np.asarray(pred), np.asarray(gt)
    if p.shape != g.shape or p.ndim != 2:
        raise ValueError(f"label maps must be 2-D and of equal shape, got {p.shape} and {g.shape}")
    k = int(num_classes)
    if background is not None and not 0 <= background < k:
        raise ValueError(f"background id {background} outside 0..{k - 1}")
    valid = g != ignore_index
    void_pred = p[~valid].astype(np.int64) if void_predictions else None
    p, g = p[valid].astype(np.int64), g[valid].astype(np.int64)
    if g.size and (g.min() < 0 or g.max() >= k):
        bad = int(g[(g < 0) | (g >= k)][0])
        raise ValueError(f"ground-truth id {bad} outside 0..{k - 1} (and not ignore_index={ignore_index})")
    outside = k if background is None else background  # k = "no class"
    p = np.where((p < 0) | (p >= k), outside, p)
    if background is not None:
        p = np.where(g == background, background, p)
    conf = np.bincount(g * (k + 1) + p, minlength=k * (k + 1)).reshape(k, k + 1)
    inter = np.diag(conf[:, :k]).copy()
    gt_area = conf.sum(axis=1)
    pred_area = conf[:, :k].sum(axis=0)
    union = gt_area + pred_area - inter
    if void_pred is not None and void_pred.size:
        void_pred = np.where((void_pred < 0) | (void_pred >= k), outside, void_pred)
        union += np.bincount(void_pred, minlength=k + 1)[:k]
    return inter, union


def semantic_scores_from_counts(inter: np.ndarray, union: np.ndarray, class_names=None) -> dict:
    """``{"miou", "iou": {name: float | None}, "n_classes_scored"}`` from summed per-class I and U."""
    inter, union = np.asarray(inter, np.int64), np.asarray(union, np.int64)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(inter))]
    if len(names) != len(inter):
        raise ValueError(f"{len(names)} class names for {len(inter)} classes")
    per = {n: (None if u == 0 else float(i) / float(u)) for n, i, u in zip(names, inter, union)}
    scored = [v for v in per.values() if v is not None]
    return {"miou": float(np.mean(scored)) if scored else None, "iou": per, "n_classes_scored": len(scored)}


def semantic_scores(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    num_classes: int,
    class_names: Sequence[str] | None = None,
    ignore_index: int = 255,
) -> dict:
    """mIoU of integer label maps: per-class I and U summed over the set, then I/U, then the mean."""
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground-truth maps")
    inter = np.zeros(num_classes, np.int64)
    union = np.zeros(num_classes, np.int64)
    for p, g in zip(preds, gts):
        i, u = semantic_counts(p, g, num_classes, ignore_index)
        inter += i
        union += u
    return semantic_scores_from_counts(inter, union, class_names)
