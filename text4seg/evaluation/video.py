"""Video object segmentation scores: J (region), F (boundary) and J&F as the DAVIS protocol defines them.

:func:`j_and_f` takes one ``(T, H, W)`` bool prediction and one ground truth per (video, expression)
pair. Each pair is first averaged over its frames, then the pairs are averaged:

* J of a frame: ``|P & G| / |P | G|``; an empty prediction of an empty target counts 1.
* F of a frame: the boundary F-measure. A mask's boundary map is its one-pixel-wide contour: a pixel is on
  it when it differs from its right, lower or lower-right neighbour (the last row compares with the right
  neighbour only, the last column with the lower one only, the bottom-right pixel never). A boundary
  pixel of one mask matches when a boundary pixel of the other lies within ``ceil(0.008 * diagonal)``
  pixels (a disk: ``dx^2 + dy^2 <= r^2``). Precision = matched predicted / predicted boundary pixels,
  recall = matched target / target boundary pixels; no predicted boundary gives precision 1, no target
  boundary recall 1 (both empty: F = 1); F = ``2PR / (P + R)``, 0 when ``P + R = 0``.

This follows ``db_eval_iou``, ``f_measure`` and ``_seg2bmap`` of github.com/davisvideochallenge/
davis2017-evaluation (compared on random masks while writing this module; docs/video.md), without
OpenCV or scikit-image: the disk dilation is done row by row with cumulative sums.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

BOUND_TH = 0.008


def davis_frames(n_frames: int) -> list[int]:
    """The frames the DAVIS 2017 semi-supervised protocol scores of an ``n_frames``-frame sequence: every
    annotated frame but the first (its mask is given) and the last (``davis2017/evaluation.py``:
    ``all_gt_masks[:, 1:-1]``); none of a sequence of one or two frames."""
    return list(range(1, n_frames - 1))


def _check(pred: np.ndarray, gt: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if p.ndim == 2:
        p = p[None]
    if g.ndim == 2:
        g = g[None]
    if p.shape != g.shape or p.ndim != 3:
        raise ValueError(f"pair {i}: prediction {p.shape} and ground truth {g.shape} must be equal (T, H, W)")
    return p, g


def region_j(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame IoU of ``(T, H, W)`` bool arrays, shape ``(T,)``; empty union counts 1."""
    inter = np.logical_and(pred, gt).sum(axis=(-2, -1))
    union = np.logical_or(pred, gt).sum(axis=(-2, -1))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The one-pixel-wide boundary of an ``(H, W)`` bool mask (module docstring), ``(H, W)`` bool."""
    m = np.asarray(mask, dtype=bool)
    right = np.zeros_like(m)
    down = np.zeros_like(m)
    diag = np.zeros_like(m)
    right[:, :-1] = m[:, 1:]
    down[:-1, :] = m[1:, :]
    diag[:-1, :-1] = m[1:, 1:]
    b = (m ^ right) | (m ^ down) | (m ^ diag)
    b[-1, :] = m[-1, :] ^ right[-1, :]
    b[:, -1] = m[:, -1] ^ down[:, -1]
    b[-1, -1] = False
    return b


def _hdilate(b: np.ndarray, half: int) -> np.ndarray:
    """Each row dilated by ``[x - half, x + half]`` (cumulative sums; outside the image counts 0)."""
    if half == 0:
        return b.copy()
    h, w = b.shape
    c = np.zeros((h, w + 1), dtype=np.int32)
    np.cumsum(b, axis=1, out=c[:, 1:])
    x = np.arange(w)
    lo, hi = np.clip(x - half, 0, w), np.clip(x + half + 1, 0, w)
    return (c[:, hi] - c[:, lo]) > 0


def dilate_disk(b: np.ndarray, radius: int) -> np.ndarray:
    """``(H, W)`` bool ``b`` dilated by the disk ``dx^2 + dy^2 <= radius^2``."""
    h, _ = b.shape
    out = np.zeros_like(b)
    for dy in range(-radius, radius + 1):
        if abs(dy) >= h:
            continue
        row = _hdilate(b, math.isqrt(radius * radius - dy * dy))
        if dy >= 0:
            out[dy:] |= row[: h - dy]
        else:
            out[:dy] |= row[-dy:]
    return out


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Boundary F-measure of one ``(H, W)`` frame (module docstring)."""
    radius = int(bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*pred.shape)))
    pb, gb = boundary_map(pred), boundary_map(gt)
    n_p, n_g = int(pb.sum()), int(gb.sum())
    if n_p == 0 or n_g == 0:
        precision = 1.0 if n_p == 0 else 0.0
        recall = 1.0 if n_g == 0 else 0.0
    else:
        precision = float((pb & dilate_disk(gb, radius)).sum()) / n_p
        recall = float((gb & dilate_disk(pb, radius)).sum()) / n_g
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def pair_scores(pred: np.ndarray, gt: np.ndarray, bound_th: float = BOUND_TH) -> tuple[float, float]:
    """``(J, F)`` of one ``(T, H, W)`` pair, each averaged over its frames."""
    p, g = _check(pred, gt, 0)
    j = float(region_j(p, g).mean())
    f = float(np.mean([boundary_f(p[t], g[t], bound_th) for t in range(p.shape[0])]))
    return j, f


def j_and_f(
    preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], bound_th: float = BOUND_TH
) -> dict[str, float]:
    """``{"j", "f", "jf", "pairs"}``: J, F and their mean over (video, expression) pairs (DAVIS protocol).

    ``preds[i]`` and ``gts[i]`` are ``(T_i, H_i, W_i)`` bool arrays (a 2-D array is one frame); each pair
    is averaged over its frames first. No pairs gives zeros.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} ground truths")
    js, fs = [], []
    for i, (pred, gt) in enumerate(zip(preds, gts)):
        p, g = _check(pred, gt, i)
        if p.shape[0] == 0:
            raise ValueError(f"pair {i} has no frames")
        j, f = pair_scores(p, g, bound_th)
        js.append(j)
        fs.append(f)
    j = float(np.mean(js)) if js else 0.0
    f = float(np.mean(fs)) if fs else 0.0
    return {"j": j, "f": f, "jf": (j + f) / 2, "pairs": len(js)}


DAVIS_SCORED = "davis17 rows: every shown frame but the first and the last (DAVIS 2017 protocol)"
ALL_SCORED = "every shown frame"


def _scored_frames(meta: dict, n: int) -> list[int]:
    """The frames of a built row that are scored: DAVIS-2017 rows (semi-supervised and Ref-DAVIS17, both
    scored with davis2017-evaluation's semi-supervised task) leave out the first frame, whose mask the
    question gives, and the last; the builder's sampling keeps the video's first and last frame as the
    row's (``text4seg.data.video.sample_frames``). Other rows: every frame."""
    if str((meta.get("source") or {}).get("dataset", "")) == "davis17":
        return davis_frames(n)
    return list(range(n))


def evaluate_video(pred: str | os.PathLike, gt: str | os.PathLike) -> dict:
    """J&F of ``video_results.jsonl`` records against a built video JSONL, on the built rows' frames.

    A row (task ``vres``/``vreason``) joins the record with the same ``(source.image_id,
    source.ref_id)`` = ``(video, expression_id)``; its ``gt.masks`` are scored against the record's masks
    of the frames with the same names (:func:`_scored_frames`: DAVIS-2017 rows without their first and
    last frame). Rows without a record count as empty predictions. Besides J, F and J&F: ``frames`` (how
    many were scored), ``scored`` (which, in words) and ``unscored`` (rows with no frame to score: a
    DAVIS row of one or two frames).
    """
    from text4seg.data.jsonl import read_jsonl
    from text4seg.data.rle import rle_to_mask

    recs = {}
    for r in read_jsonl(pred):
        recs[(str(r["video"]), str(r["expression_id"]))] = r
    preds, gts, missing, unscored, frames, rules = [], [], 0, 0, 0, set()
    for row in read_jsonl(gt):
        meta = row.get("text4seg", {})
        if meta.get("task") not in ("vres", "vreason") or not meta.get("gt", {}).get("masks"):
            continue
        g = np.stack([rle_to_mask(m) for m in meta["gt"]["masks"]])
        names = [Path(p if isinstance(p, str) else p.get("path", "")).stem for p in row["images"]]
        keep = _scored_frames(meta, len(g))
        rules.add(ALL_SCORED if len(keep) == len(g) else DAVIS_SCORED)
        if not keep:
            unscored += 1
            continue
        rec = recs.get((meta["source"]["image_id"], meta["source"]["ref_id"]))
        if rec is None:
            missing += 1
            preds.append(np.zeros_like(g[keep]))
        else:
            by_name = dict(zip(rec["frames"], rec["masks"]))
            if any(n not in by_name for n in names):
                raise ValueError(f"{pred}: record {rec['id']} lacks frames of {meta['id']} ({names})")
            preds.append(np.stack([rle_to_mask(by_name[names[i]]) for i in keep]))
        gts.append(g[keep])
        frames += len(keep)
    scored = "; ".join(sorted(rules)) or ALL_SCORED
    return {
        **j_and_f(preds, gts),
        "missing": missing,
        "frames": frames,
        "scored": scored,
        "unscored": unscored,
    }
