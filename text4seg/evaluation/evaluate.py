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

Memory is bounded (issue 31): the ground truth is read and checked once into a
:class:`~text4seg.evaluation.ground_truth.GroundTruthIndex` (a hash, byte offset and line per key,
~20 bytes; each joined row is read again from the file), records are read line by line, each pair is
scored and reduced at once, and ``per_sample.jsonl`` rows are written as they come, in record order
(referring and semantic rows interleaved as their records are; the peers' rows, made at the end, last;
before the streaming change rows were grouped by task). The peers' and ``instance`` sets, the Ref-ZOM
samples' stats and 8 bytes a referring sample (the exact gIoU) are all that grow with the set; records
without an id build an ``(image, question)`` index of the ground truth on first use.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from text4seg._lazy import require
from text4seg.data.jsonl import AtomicWriter, iter_jsonl
from text4seg.data.results import ResultRecord
from text4seg.evaluation.ground_truth import (
    GroundTruthIndex,
    check_same_grid,
    join_key,
    load_ground_truth,
)
from text4seg.evaluation.pairs import GroundInfo, Options, Pair
from text4seg.evaluation.scorers import SCORERS, scorers_of, tables

__all__ = ["evaluate", "format_table", "join_key", "load_ground_truth"]

_ROW_JSON = json.JSONEncoder(ensure_ascii=False)  # json.dumps(row, ensure_ascii=False), one encoder


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
    opts = Options(label_only, semantic_background, geometry, tuple(thresholds))
    gts = GroundTruthIndex(gt_path, root)
    try:
        if out_dir is None:
            return _score(pred_path, gts, None, opts, progress)
        with tempfile.TemporaryFile("w+", encoding="utf-8") as rows:  # out_dir untouched until the end
            metrics = _score(pred_path, gts, rows, opts, progress)
            rows.seek(0)
            with AtomicWriter(Path(out_dir) / "per_sample.jsonl") as per_sample:
                for line in rows:
                    per_sample.write(line[:-1])
        return _write(out_dir, metrics, None)
    finally:
        gts.close()


def _score(
    pred_path, gts: GroundTruthIndex, per_sample: IO[str] | None, opts: Options, progress: bool
) -> dict:
    """Join and score the records one at a time (module docstring); per-sample rows written as they
    come (the peers' at the end); the metrics dict."""
    tqdm = require("tqdm").tqdm
    states: dict[str, object] = {}
    counts = _Counts()
    for n, obj in tqdm(iter_jsonl(pred_path), unit="answer", desc="evaluate", disable=not progress):
        line = f"{pred_path}:{n}"
        rec = ResultRecord.from_json(obj, line)  # every line checked: refuses a file it cannot interpret
        counts.records += 1
        found = _join(rec, line, gts)
        if found is None:
            counts.unmatched += 1
            continue
        slot, key, g = found
        check_same_grid(rec, g, line)
        gts.mark(slot)
        counts.joined(rec)
        for name in scorers_of(g):
            if name not in states:
                states[name] = SCORERS[name].start()
            row = SCORERS[name].add(states[name], Pair(rec, g, key, line), opts)
            if row is not None:
                counts.row(row, per_sample)
    if not counts.records:
        raise ValueError(f"{pred_path} has no result records (an empty file?)")
    info = GroundInfo(gts.label_map_classes)
    scores: dict[str, dict | None] = {}
    for name in (n for n in SCORERS if n in states):  # registry order: the peers' rows last
        scores[name], late = SCORERS[name].summarise(states[name], opts, info)
        for row in late:
            counts.row(row, per_sample)
    peers = {k: scores[k] for k in ("multi", "interactive", "panoptic") if k in scores}
    return {
        "n": counts.rows,
        "missing": gts.missing,
        "unmatched": counts.unmatched,
        "parse_valid": None if not counts.rows else counts.valid_rows / counts.rows,
        "tokens_per_answer": counts.tokens / counts.with_tokens if counts.with_tokens else None,
        "repairs": counts.repairs(),
        "other_label_answers": counts.other_label_rows,
        "label_only": opts.label_only,
        "referring": scores.get("referring"),
        "semantic": scores.get("semantic"),
        "peers": peers or None,
        "instance": scores.get("instance"),
    }


def _join(rec: ResultRecord, line: str, gts: GroundTruthIndex) -> tuple[int, tuple, dict] | None:
    """``(slot, key, entry)`` of the ground truth a record joins, or None: no ground truth, or its key
    was joined already by an earlier record (both counted ``unmatched``)."""
    if rec.id:
        key = (rec.id, rec.turn)
    else:
        key = join_key(rec, line, {}, gts.by_question(), gts.root)
        if key is None:
            return None
    found = gts.get(key)
    if found is None or gts.seen(found[0]):
        return None
    return found[0], key, found[1]


class _Counts:
    """The counts of ``metrics.json`` reduced as records and per-sample rows come."""

    def __init__(self):
        self.records = self.unmatched = self.rows = self.valid_rows = self.other_label_rows = 0
        self.tokens = self.with_tokens = self.answers = self.parse_valid = self.repaired = 0
        self.kinds: dict[str, int] = {}

    def joined(self, rec: ResultRecord) -> None:
        """A record joined with its ground truth: its tokens and repairs (:func:`repair_report`)."""
        if rec.num_tokens is not None:
            self.tokens += rec.num_tokens
            self.with_tokens += 1
        self.answers += 1
        self.parse_valid += bool(rec.parse_valid)
        if rec.repairs:
            self.repaired += 1
            for k in {r.kind for r in rec.repairs}:
                self.kinds[k] = self.kinds.get(k, 0) + 1

    def repairs(self) -> dict:
        """:func:`text4seg.data.results.repair_report` of the joined records."""
        return {
            "answers": self.answers,
            "parse_valid": self.parse_valid,
            "answers_repaired": self.repaired,
            **dict(sorted(self.kinds.items())),
        }

    def row(self, row: dict, out: IO[str] | None) -> None:
        """One per-sample row: counted, and written out now (a temporary file, ``per_sample.jsonl`` once
        every record is scored)."""
        self.rows += 1
        self.valid_rows += row["parse_valid"]
        self.other_label_rows += bool(row.get("other_labels"))
        if out is not None:
            out.write(_ROW_JSON.encode(row) + "\n")


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


def _write(out_dir, metrics: dict, per_sample: list[dict] | None) -> dict:
    """Write ``metrics.json`` and (unless None: written as they came) ``per_sample.jsonl`` under
    ``out_dir`` (when given); ``metrics``."""
    if out_dir is not None:
        out = Path(out_dir)
        if per_sample is not None:
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
