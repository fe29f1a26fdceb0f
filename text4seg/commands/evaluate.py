"""``text4seg evaluate``: score predictions against the built ground truth (metrics + per-sample)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from text4seg.commands._args import add_geometry, add_progress, add_root

HELP = (
    "score a results JSONL against a built JSONL: cIoU, gIoU, N-acc, T-acc, Pr@X, REC Acc@0.5, mIoU, "
    "PQ, instance matching, J&F"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pred", type=Path, required=True, help="results.jsonl written by text4seg predict/decode"
    )
    p.add_argument("--gt", type=Path, required=True, help="the built JSONL (text4seg.gt holds the masks)")
    add_root(p, "folder of relative ground-truth paths (semantic label maps)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder: metrics.json and per_sample.jsonl (default: the folder of --pred)",
    )
    p.add_argument("--label-only", action="store_true", help="score only the queried label's cells")
    p.add_argument(
        "--semantic-background",
        action="store_true",
        help="headline semantic mIoU over all K classes, 'others' included (both are always reported)",
    )
    add_geometry(p)
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        help="also write one self-contained HTML page (metrics, IoU "
        "histogram, gallery worst first), e.g. report.html",
    )
    add_progress(p)


def run(args: argparse.Namespace) -> int:
    from text4seg.evaluation.evaluate import evaluate, format_table
    from text4seg.evaluation.verdict import match_verdict

    for p in (args.pred, args.gt):
        if not p.is_file():
            raise OSError(f"no such file: {p}")
    out = args.out if args.out is not None else args.pred.parent
    metrics = evaluate(
        args.pred,
        args.gt,
        out,
        root=args.root,
        label_only=args.label_only,
        semantic_background=args.semantic_background,
        geometry=args.geometry,
        progress=not (args.no_progress or args.quiet),
    )
    print(format_table(metrics))
    print(f"wrote {out / 'metrics.json'} and {out / 'per_sample.jsonl'}")
    if "video" in metrics:  # the J&F line of text4seg predict --video's evaluation (docs/video.md)
        print(json.dumps(metrics["video"]))
    if args.report is not None:
        from text4seg.evaluation.report import write_report

        write_report(args.report, args.pred, args.gt, metrics, out / "per_sample.jsonl", root=args.root)
        print(f"wrote {args.report}")
    return match_verdict(metrics, args.pred, args.gt)
