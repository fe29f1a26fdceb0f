"""The referring scorer (``SCORERS["referring"]``: res, gres, reason, shapes... every task without its
own scorer): each pair's coarse and refined masks against the ground-truth mask, reduced as they come
(:class:`_Referring`). Conventions: :mod:`text4seg.evaluation.scorers`."""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np

from text4seg.data.results import select_labels
from text4seg.evaluation.metrics import box_iou
from text4seg.evaluation.pairs import (
    GroundInfo,
    Options,
    Pair,
    answer_masks,
    box,
    checked_rle_to_mask,
    refined_map,
    sample_row,
)


def _mask_stats(pm: np.ndarray, gm: np.ndarray, ga: int, gbox) -> dict:
    """:func:`text4seg.evaluation.metrics.mask_stats` of two same-shape bool masks (``ga``: the
    ground-truth area, ``gbox`` its box) and ``box_iou``, in the order of a per-sample row."""
    inter = int(np.count_nonzero(pm & gm))
    pa = int(np.count_nonzero(pm))
    union = pa + ga - inter
    return {
        "inter": inter,
        "union": union,
        "iou": 1.0 if union == 0 else inter / union,
        "pred_empty": pa == 0,
        "gt_empty": ga == 0,
        "box_iou": box_iou(None if pa == 0 else box(pm), gbox),
    }


class _Referring:
    """The referring scores of one kind (coarse or refined) reduced as samples come: the counts of
    :func:`text4seg.evaluation.metrics.aggregate_referring`, and the per-sample IoUs as 8 bytes each (the
    gIoU is their ``np.mean``, bit for bit the list's); Ref-ZOM samples' stats are kept whole."""

    def __init__(self, thresholds: Sequence[float]):
        self.thresholds = tuple(thresholds)
        self.n = self.sum_i = self.sum_u = self.no_target = self.n_hits = self.t_hits = self.box_hits = 0
        self.pr = [0] * len(self.thresholds)
        self.ious = array("d")
        self.zom: list[dict] = []

    def add(self, s: dict, dataset: str) -> None:
        self.n += 1
        self.sum_i += s["inter"]
        self.sum_u += s["union"]
        self.ious.append(s["iou"])
        if s["gt_empty"]:
            self.no_target += 1
            self.n_hits += s["pred_empty"]
        else:
            self.t_hits += not s["pred_empty"]
            self.box_hits += s["box_iou"] > 0.5
            for k, t in enumerate(self.thresholds):
                self.pr[k] += s["iou"] >= t
        if dataset == "ref-zom":
            self.zom.append(s)

    def scores(self) -> dict | None:
        """The section of one kind: ``aggregate_referring``'s keys, ``rec_acc@0.5``, ``refzom``."""
        from text4seg.evaluation.multi import refzom_scores

        n, targeted = self.n, self.n - self.no_target
        if n == 0:
            return None
        out: dict = {
            "n": n,
            "n_no_target": self.no_target,
            "n_targeted": targeted,
            "ciou": 1.0 if self.sum_u == 0 else self.sum_i / self.sum_u,
            "giou": float(np.mean(np.frombuffer(self.ious, np.float64))),
            "n_acc": None if not self.no_target else self.n_hits / self.no_target,
            "t_acc": None if not targeted else self.t_hits / targeted,
        }
        for t, hits in zip(self.thresholds, self.pr):
            out[f"pr@{t:g}"] = None if not targeted else hits / targeted
        out["rec_acc@0.5"] = None if not targeted else self.box_hits / targeted
        if self.zom:  # Ref-ZOM's own metrics: oIoU and mIoU on targeted samples, accuracy on empty ones
            out["refzom"] = refzom_scores(self.zom)
        return out


def start() -> dict:
    """The state: one :class:`_Referring` a kind, made on the first pair (it needs the thresholds)."""
    return {}


def _refined_mask(p: Pair, opts: Options):
    """The refined mask of a pair (None: no SAM): its ``refined_labels`` selected as the coarse mask is
    (every label, or the queried ones with ``label_only``), else the stored ``refined`` union. One label
    whose RLE is the union (the usual referring record) is the union's mask, decoded once."""
    rec = p.rec
    rl = rec.refined_labels
    if rl is not None and not (not opts.label_only and len(rl) == 1 and rec.refined in rl.values()):
        return select_labels(*refined_map(p), p.gt["labels"] if opts.label_only else None)[0]
    return checked_rle_to_mask(rec.refined) if rec.refined else None


def add(state: dict, p: Pair, opts: Options) -> dict:
    """Score one pair's coarse and refined masks against its ground-truth mask; its per-sample row."""
    rec, g = p.rec, p.gt
    if not state:
        state.update(coarse=_Referring(opts.thresholds), refined=_Referring(opts.thresholds))
    am = answer_masks(p, opts)
    row = sample_row(p, am)
    refined = _refined_mask(p, opts)
    gt_mask = checked_rle_to_mask(g["rle"])
    if gt_mask.shape != (rec.height, rec.width):
        raise ValueError(
            f"{g['rle_where']}: ground truth is {gt_mask.shape[0]}x{gt_mask.shape[1]}, "
            f"prediction {rec.height}x{rec.width} ({p.line}: height/width)"
        )
    ga = int(np.count_nonzero(gt_mask))
    gbox = box(gt_mask) if ga else None
    dataset = g.get("dataset", "")
    for kind, pm in (("coarse", am.mask), ("refined", refined)):
        if pm is not None:
            row[kind] = s = _mask_stats(pm, gt_mask, ga, gbox)
            state[kind].add(s, dataset)
    return row


def summarise(state: dict, opts: Options, info: GroundInfo) -> tuple[dict | None, list]:
    """The referring section (None without a pair): coarse and refined scores."""
    if not state or not state["coarse"].n:
        return None, []
    return {"coarse": state["coarse"].scores(), "refined": state["refined"].scores()}, []
