"""Scores of multi-expression answers (GSVA) and of Ref-ZOM style sets, per expression across the set.

Every expression of every answer is one scored item: its block decoded to a full-resolution mask
(:func:`text4seg.descriptors.multi.decode_multi`; a rejection, a missing line or an all-``others`` block
is an empty prediction) against its ground-truth mask ``gt.masks[j]`` (empty = absent target). The items
are aggregated as referring samples (:func:`text4seg.evaluation.metrics.aggregate_referring`):

* ``giou``: mean per-expression IoU, an empty prediction for an absent target scores 1;
* ``ciou``: summed intersections over summed unions;
* ``n_acc``: share of absent targets rejected; ``t_acc``: share of present targets not rejected;

plus ``missing_lines`` (expressions the answer has no ``[k]`` line for) and ``extra_labels`` (lines
whose label is not the asked expression's; scored anyway, by position).

Ref-ZOM's metrics (:func:`refzom_scores`): ``oiou`` (summed I / summed U) and ``miou`` (mean IoU) over
the **targeted** items (one-to-one and one-to-many), and ``acc`` = share of one-to-zero items predicted
empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from text4seg.data.results import ResultRecord
from text4seg.data.rle import rle_to_mask
from text4seg.descriptors import normalize_label
from text4seg.descriptors.multi import decode_multi, entry_masks
from text4seg.evaluation.metrics import aggregate_referring, mask_stats


def multi_item_stats(
    record: ResultRecord, labels: Sequence[str], gt_rles: Sequence[dict]
) -> tuple[list[dict], dict]:
    """``(per-expression mask_stats, per-sample row)`` of one result record of a multi answer.

    ``labels``: the asked expressions' labels in order; ``gt_rles``: their COCO RLE targets.
    """
    if len(labels) != len(gt_rles):
        raise ValueError(f"sample {record.id!r}: {len(labels)} labels but {len(gt_rles)} masks")
    h, w = record.height, record.width
    entries = decode_multi(
        record.answer,
        len(labels),
        record.grid,
        record.scheme,
    )
    preds = entry_masks(entries, h, w)
    stats = []
    for j, (pm, rle) in enumerate(zip(preds, gt_rles)):
        gt = rle_to_mask(rle)
        if gt.shape != (h, w):
            raise ValueError(f"sample {record.id!r} expression {j + 1}: ground truth is {gt.shape}")
        stats.append(mask_stats(pm, gt))
    row = {
        "parse_valid": all(e.found for e in entries)
        and all(not e.decoded.repairs for e in entries if e.decoded is not None),
        "missing_lines": sum(not e.found for e in entries),
        "extra_labels": sum(e.found and e.label != normalize_label(lab) for e, lab in zip(entries, labels)),
        "repairs": sum(len(e.decoded.repairs) for e in entries if e.decoded is not None),
        "iou": [s["iou"] for s in stats],
        "rejected": [s["pred_empty"] for s in stats],
        "gt_empty": [s["gt_empty"] for s in stats],
    }
    return stats, row


def score_multi(
    items: Sequence[tuple[ResultRecord, Sequence[str], Sequence[dict]]],
) -> tuple[dict, list[dict]]:
    """``(scores, per-sample rows)`` over ``(record, labels, gt_rles)`` items (module docstring)."""
    all_stats, rows = [], []
    for rec, labels, rles in items:
        stats, row = multi_item_stats(rec, labels, rles)
        all_stats.extend(stats)
        rows.append({"id": rec.id, "turn": rec.turn, "task": "multi", **row})
    out = aggregate_referring(all_stats)
    out["answers"] = len(rows)
    out["missing_lines"] = sum(r["missing_lines"] for r in rows)
    out["extra_labels"] = sum(r["extra_labels"] for r in rows)
    return out, rows


def refzom_scores(stats: Sequence[dict]) -> dict:
    """Ref-ZOM's ``oiou``, ``miou`` (targeted items) and ``acc`` (one-to-zero items) from mask_stats dicts.

    ``None`` where the set has no item of the kind.
    """
    targeted = [s for s in stats if not s["gt_empty"]]
    empty = [s for s in stats if s["gt_empty"]]
    su = sum(s["union"] for s in targeted)
    return {
        "n_targeted": len(targeted),
        "n_empty": len(empty),
        "oiou": None if not targeted else sum(s["inter"] for s in targeted) / su,
        "miou": None if not targeted else float(np.mean([s["iou"] for s in targeted])),
        "acc": None if not empty else sum(s["pred_empty"] for s in empty) / len(empty),
    }
