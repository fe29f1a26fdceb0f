"""Instance segmentation scores: one-to-one matching of predicted to ground-truth instances.

Within each class name, predicted and ground-truth instances are matched one to one by the Hungarian
method, maximising the summed IoU (pairs of different classes never match; a pair with IoU 0 is no
match). Numbers (``k``) play no part in the matching: a model that numbers two people in the other order
loses nothing. Scores of a set of images (:func:`instance_scores` over :func:`match_instances` results):

* ``mean_instance_iou``: the mean over ground-truth instances of the IoU of the prediction matched to
  it (0 when unmatched);
* ``tp``, ``fp``, ``fn`` at IoU >= 0.5 (AP50-style counting: a match below 0.5 is a false positive and
  a false negative), ``precision``, ``recall``, ``f1`` (None when undefined).

The assignment uses ``scipy.optimize.linear_sum_assignment`` when scipy is importable, otherwise
:func:`hungarian` (an exact O(n^3) implementation, tested against scipy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

Named = tuple[str, np.ndarray]  # (class name, (H, W) bool mask)


class Match(NamedTuple):
    """Result of one image: ``pairs`` = ``[(pred index, gt index, iou), ...]`` (IoU > 0), and the
    numbers of predicted and ground-truth instances."""

    pairs: list[tuple[int, int, float]]
    n_pred: int
    n_gt: int


def iou_matrix(pred: Sequence[np.ndarray], gt: Sequence[np.ndarray]) -> np.ndarray:
    """``(len(pred), len(gt))`` float64 IoU of bool masks of one shape (0 where the union is empty)."""
    if not pred or not gt:
        return np.zeros((len(pred), len(gt)))
    p = np.stack([np.asarray(m, dtype=bool).ravel() for m in pred]).astype(np.float64)
    g = np.stack([np.asarray(m, dtype=bool).ravel() for m in gt]).astype(np.float64)
    if p.shape[1] != g.shape[1]:
        raise ValueError(f"predicted masks have {p.shape[1]} pixels, ground truth {g.shape[1]}")
    inter = p @ g.T
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def hungarian(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment of a ``(n, m)`` cost matrix: ``(rows, cols)`` index arrays, one pair per
    row when ``n <= m`` (else per column), like ``scipy.optimize.linear_sum_assignment``."""
    c = np.asarray(cost, dtype=np.float64)
    transposed = c.shape[0] > c.shape[1]
    if transposed:
        c = c.T
    n, m = c.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # e-maxx potentials formulation (1-based, column 0 is a sentinel)
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            delta, j1 = np.inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = c[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j], way[j] = cur, j0
                    if minv[j] < delta:
                        delta, j1 = minv[j], j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    rows = np.array([p[j] - 1 for j in range(1, m + 1) if p[j]], dtype=np.int64)
    cols = np.array([j - 1 for j in range(1, m + 1) if p[j]], dtype=np.int64)
    order = np.argsort(rows)
    rows, cols = rows[order], cols[order]
    if transposed:
        rows, cols = cols, rows
        order = np.argsort(rows)
        rows, cols = rows[order], cols[order]
    return rows, cols


def _assign(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return hungarian(cost)
    return linear_sum_assignment(cost)


def match_instances(pred: Sequence[Named], gt: Sequence[Named]) -> Match:
    """Match ``[(name, mask), ...]`` predictions to ground truth of one image (see the module doc)."""
    pairs: list[tuple[int, int, float]] = []
    for name in dict.fromkeys([n for n, _ in gt] + [n for n, _ in pred]):
        pi = [i for i, (n, _) in enumerate(pred) if n == name]
        gi = [j for j, (n, _) in enumerate(gt) if n == name]
        if not pi or not gi:
            continue
        iou = iou_matrix([pred[i][1] for i in pi], [gt[j][1] for j in gi])
        r, c = _assign(-iou)
        pairs.extend((pi[a], gi[b], float(iou[a, b])) for a, b in zip(r, c) if iou[a, b] > 0)
    pairs.sort()
    return Match(pairs, len(pred), len(gt))


def instance_scores(matches: Sequence[Match], threshold: float = 0.5) -> dict:
    """Aggregate per-image matches: ``images``, ``gt_instances``, ``pred_instances``,
    ``mean_instance_iou``, ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``, ``threshold``."""
    n_gt = sum(m.n_gt for m in matches)
    n_pred = sum(m.n_pred for m in matches)
    tp = sum(iou >= threshold for m in matches for _, _, iou in m.pairs)
    iou_sum = sum(iou for m in matches for _, _, iou in m.pairs)
    precision = tp / n_pred if n_pred else None
    recall = tp / n_gt if n_gt else None
    f1 = 2 * tp / (n_pred + n_gt) if (n_pred + n_gt) else None
    return {
        "images": len(matches),
        "gt_instances": n_gt,
        "pred_instances": n_pred,
        "mean_instance_iou": iou_sum / n_gt if n_gt else None,
        "tp": int(tp),
        "fp": int(n_pred - tp),
        "fn": int(n_gt - tp),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "threshold": threshold,
    }


def instances_of_label_map(label_map: np.ndarray, classes: Sequence[str]) -> list[Named]:
    """Ground-truth instances of an instance label map (pixel value ``v`` is ``classes[v]``, a
    ``"<name> <k>"`` label; ``others`` and values outside ``classes`` are background)."""
    from text4seg.descriptors import BACKGROUND
    from text4seg.descriptors.instances import parse_instance_label

    out = []
    for v in np.unique(label_map).tolist():
        if 0 <= v < len(classes) and classes[v] and classes[v] != BACKGROUND:
            out.append((parse_instance_label(classes[v])[0], label_map == v))
    return out


__all__ = ["Match", "hungarian", "instance_scores", "instances_of_label_map", "iou_matrix", "match_instances"]
