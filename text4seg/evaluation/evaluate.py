"""Evaluate: join result records (``results.jsonl`` of ``text4seg predict``/``decode``, schema in
:mod:`text4seg.data.results`) with the built ground truth and score them.

``evaluate(pred_path, gt_path, out_dir=None, ...) -> dict`` scores raw (coarse) and SAM-refined masks side
by side and, with ``out_dir``, writes ``metrics.json`` and ``per_sample.jsonl`` (atomically). A
``video_results.jsonl`` of ``text4seg predict --video`` (records with ``video`` and ``frames``) is scored
whole, J/F/J&F (:func:`text4seg.evaluation.video.evaluate_video`), into ``metrics["video"]``.

The join (by ``(text4seg.id, turn)``, or image and question for records without an id; a record decoded
on another grid or scheme than its row is refused) is :mod:`text4seg.evaluation.ground_truth`; each joined
pair is scored by the scorers of its task (:mod:`text4seg.evaluation.scorers`: the registry, the score
conventions and how each section is shown). Ground-truth rows without a prediction are reported as
``missing`` (not scored); predictions without ground truth as ``unmatched``.

By default every non-``others`` label of an answer is foreground (published convention). With
``label_only=True`` only the queried labels are (coarse masks, and refined masks when the record has
``refined_labels``; an older record's ``refined`` union is used as stored), and ``other_label_answers``
counts answers naming another label either way. Refined semantic maps come from ``refined_labels``
(records without it have no refined semantic score).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from text4seg._lazy import require
from text4seg.data.records import AtomicWriter, iter_jsonl
from text4seg.data.results import iter_records, repair_report
from text4seg.evaluation.ground_truth import check_same_grid, join_key, load_ground_truth
from text4seg.evaluation.scorers import SCORERS, Options, Pair, scorers_of, tables

__all__ = ["evaluate", "format_table", "join_key", "load_ground_truth"]


def evaluate(
    pred_path: str | os.PathLike,
    gt_path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    root: str | os.PathLike | None = None,
    label_only: bool = False,
    semantic_background: bool = False,
    geometry: str = "pil",
    thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
    progress: bool = False,
) -> dict:
    """Score a results JSONL against a built JSONL; returns the metrics dict (also written to out_dir).

    Returned keys: ``n``, ``missing``, ``unmatched``, ``parse_valid`` (share of answers that parse
    strictly), ``tokens_per_answer``, ``repairs`` (counts by kind), ``other_label_answers``,
    ``referring`` = ``{"coarse": {...}, "refined": {...} | None}`` (cIoU, gIoU, N-acc, T-acc, Pr@X,
    ``rec_acc@0.5``, ``refzom``), ``semantic`` = ``{"coarse": {...}, "refined": ...}``, ``peers`` =
    ``{"multi", "interactive", "panoptic"}`` (those present) and ``instance`` (Hungarian), each None when
    absent; a video file gives ``n``, ``missing``, ``unmatched`` and ``video`` (J, F, J&F).
    ``geometry``: how answers are painted onto pixels: "pil" (default) or "official" (the official
    Text4Seg evaluation's floor sampling, to reproduce published raw numbers); see
    :data:`text4seg.descriptors.GEOMETRIES`.
    """
    if _is_video(pred_path):
        return _write(out_dir, _video_metrics(pred_path, gt_path), [])
    gts = load_ground_truth(gt_path, root)
    by_question: dict[tuple, list] = {}
    for key, g in gts.items():
        by_question.setdefault((g["image"], g["query"]), []).append(key)
    lines = iter_records(pred_path)  # every line checked: refuses a file it cannot interpret
    pairs: dict[str, list[Pair]] = {name: [] for name in SCORERS}
    seen: set[tuple[str, int]] = set()
    unmatched = 0
    tqdm = require("tqdm").tqdm
    for n, rec in tqdm(lines, unit="answer", desc="evaluate", disable=not progress):
        line = f"{pred_path}:{n}"
        key = join_key(rec, line, gts, by_question, root)
        g = None if key is None else gts.get(key)
        if g is None or key in seen:
            unmatched += 1
            continue
        check_same_grid(rec, g, line)
        seen.add(key)
        for name in scorers_of(g):
            pairs[name].append(Pair(rec, g, key, line))
    opts = Options(label_only, semantic_background, geometry, tuple(thresholds))
    scores: dict[str, dict | None] = {}
    per_sample: list[dict] = []
    for name, mine in pairs.items():
        if mine:
            state, rows = SCORERS[name].collect(mine, opts)
            scores[name] = SCORERS[name].summarise(state, opts, gts)
            per_sample.extend(rows)
    joined = {p.key: p.rec for mine in pairs.values() for p in mine}.values()
    tokens = [r.num_tokens for r in joined if r.num_tokens is not None]
    peers = {k: scores[k] for k in ("multi", "interactive", "panoptic") if k in scores}
    metrics = {
        "n": len(per_sample),
        "missing": len(set(gts) - seen),
        "unmatched": unmatched,
        "parse_valid": None
        if not per_sample
        else sum(r["parse_valid"] for r in per_sample) / len(per_sample),
        "tokens_per_answer": float(np.mean(tokens)) if tokens else None,
        "repairs": repair_report(joined),
        "other_label_answers": sum(bool(r.get("other_labels")) for r in per_sample),
        "label_only": label_only,
        "referring": scores.get("referring"),
        "semantic": scores.get("semantic"),
        "peers": peers or None,
        "instance": scores.get("instance"),
    }
    return _write(out_dir, metrics, per_sample)


def _is_video(pred_path) -> bool:
    """A ``video_results.jsonl`` of ``text4seg predict --video``: its first record names a video."""
    for _, first in iter_jsonl(pred_path):
        return "video" in first and "frames" in first
    return False


def _video_metrics(pred_path, gt_path) -> dict:
    from text4seg.evaluation.video import evaluate_video

    video = evaluate_video(pred_path, gt_path)
    return {
        "n": video["pairs"] - video["missing"],
        "missing": video["missing"],
        "unmatched": 0,
        "video": video,
    }


def _write(out_dir, metrics: dict, per_sample: list[dict]) -> dict:
    """Write ``metrics.json`` and ``per_sample.jsonl`` under ``out_dir`` (when given); ``metrics``."""
    if out_dir is not None:
        out = Path(out_dir)
        with AtomicWriter(out / "per_sample.jsonl") as wr:
            for r in per_sample:
                wr.write(json.dumps(r, ensure_ascii=False))
        with AtomicWriter(out / "metrics.json") as wr:
            wr.write(json.dumps(metrics, indent=2))
    return metrics


def format_table(metrics: dict) -> str:
    """A plain-text table: the counts, then every section present
    (:func:`text4seg.evaluation.scorers.tables`), raw and refined side by side."""
    lines = []
    if "parse_valid" in metrics:
        lines.append(
            f"samples {metrics['n']} (missing {metrics['missing']}, unmatched {metrics['unmatched']}); "
            f"strict parse {_fmt(metrics['parse_valid'])}; "
            f"tokens/answer {_fmt(metrics['tokens_per_answer'])}; "
            f"answers naming another label {metrics['other_label_answers']}"
        )
    for table in tables(metrics):
        lines.append(f"{table.title:<14}" + "".join(f"{c:>10}" for c in table.columns))
        for name, values in table.rows:
            lines.append(f"  {name:<12}" + "".join(f"{_fmt(v):>10}" for v in values))
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)
