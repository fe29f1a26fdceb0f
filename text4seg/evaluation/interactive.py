"""Interactive segmentation scores by prompt kind (PSALM's COCO-Interactive table): mIoU and cIoU.

Each result record of a ``task == "interactive"`` row is decoded as any single-block answer (every
non-``others`` cell is foreground, :func:`text4seg.data.results.answer_to_masks`) and compared with
``gt.masks[0]``; the SAM-refined union ``refined`` is scored too when the record has it. The prompt kind
is the part of ``source.ref_id`` after the last ``:`` (``<ann_id>:<kind>``, written by the
``coco-interactive`` builder). Per kind and over all: ``n``, ``miou`` (mean per-sample IoU) and ``ciou``
(summed intersections over summed unions).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from text4seg.data.results import ResultRecord, answer_to_masks
from text4seg.data.rle import rle_to_mask
from text4seg.evaluation.metrics import mask_stats

KINDS = ("point", "scribble", "box", "mask")


def prompt_kind(meta: dict) -> str:
    """The prompt kind of a built row's ``text4seg`` block (``"unknown"`` when ``ref_id`` has none)."""
    kind = str((meta.get("source") or {}).get("ref_id", "")).rsplit(":", 1)[-1]
    return kind if kind in KINDS else "unknown"


def _summary(stats: Sequence[dict]) -> dict:
    if not stats:
        return {"n": 0, "miou": None, "ciou": None}
    su = sum(s["union"] for s in stats)
    return {
        "n": len(stats),
        "miou": float(np.mean([s["iou"] for s in stats])),
        "ciou": 1.0 if su == 0 else sum(s["inter"] for s in stats) / su,
    }


def score_interactive(items: Sequence[tuple[ResultRecord, dict]]) -> tuple[dict, list[dict]]:
    """``(scores, per-sample rows)`` over ``(record, row meta)`` pairs.

    ``scores = {"coarse": {kind: {"n", "miou", "ciou"}, ..., "all": {...}}, "refined": ... | None}``.
    """
    per = {"coarse": {}, "refined": {}}
    rows = []
    for rec, meta in items:
        h, w = rec.height, rec.width
        gt = rle_to_mask(meta["gt"]["masks"][0])
        if gt.shape != (h, w):
            raise ValueError(f"sample {rec.id!r}: ground truth is {gt.shape}, prediction {h}x{w}")
        am = answer_to_masks(rec.answer, h, w, rec.grid, rec.scheme)
        kind = prompt_kind(meta)
        row = {"id": rec.id, "turn": rec.turn, "task": "interactive"}
        row |= {"kind": kind, "parse_valid": am.parse_valid}
        refined = rle_to_mask(rec.refined) if rec.refined else None
        for name, pm in (("coarse", am.mask), ("refined", refined)):
            if pm is None:
                continue
            s = mask_stats(pm, gt)
            per[name].setdefault(kind, []).append(s)
            row[name] = {"iou": s["iou"], "inter": s["inter"], "union": s["union"]}
        rows.append(row)
    out: dict = {}
    for name, by_kind in per.items():
        if not by_kind:
            out[name] = None
            continue
        out[name] = {k: _summary(v) for k, v in sorted(by_kind.items())}
        out[name]["all"] = _summary([s for v in by_kind.values() for s in v])
    return out, rows
