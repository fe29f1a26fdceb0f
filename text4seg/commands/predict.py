"""``text4seg predict``: run a trained model on images + queries; masks (COCO RLE), overlays, resumable."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from text4seg.commands._args import add_grid, add_progress, add_root, add_scheme, add_trust
from text4seg.inference.constrained import CONSTRAINED_ENGINES
from text4seg.inference.options import PredictOptions

HELP = "run a model on --image/--query or a built --jsonl; writes results.jsonl (COCO RLE masks) + overlays"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags: the fields of :class:`~text4seg.inference.options.PredictOptions` (an option that does
    not apply to the run's path is an error, :meth:`~text4seg.inference.options.PredictOptions.validate`)."""
    p.add_argument("--model", default=None, help="model folder (ms-swift loadable); not with --api")
    p.add_argument("--adapters", nargs="*", default=None, help="LoRA adapter folders")
    p.add_argument("--model-type", default=None, help="ms-swift model_type (e.g. qwen2_5_vl, llava1_5_hf)")
    p.add_argument("--template", default=None, help="ms-swift template type (default: the model type's)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, help="one image (with --query)")
    src.add_argument("--jsonl", type=Path, help="built JSONL: one query per user turn")
    src.add_argument(
        "--video", type=Path, help="a frame folder or video file (with --query); see docs/video.md"
    )
    p.add_argument(
        "--query",
        help="the question for --image, e.g. 'Please segment the dog.' (default with --label: the "
        "checkpoint's question template, text4seg.json)",
    )
    p.add_argument(
        "--label",
        action="append",
        default=None,
        help="target label for --constrained on --image (repeatable)",
    )
    add_root(p, "folder of the relative image paths of --jsonl")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder: results.jsonl (one result record per query; resumed if present) and overlays/",
    )
    p.add_argument("--sam-checkpoint", type=Path, default=None, help="SAM weights (.pth) for refinement")
    p.add_argument("--sam-type", default="vit_h", choices=["vit_h", "vit_l", "vit_b"], help="SAM variant")
    p.add_argument(
        "--batch-size", type=int, default=8, help="queries per generate call (--model with --image/--jsonl)"
    )
    p.add_argument("--max-new-tokens", type=int, default=None)
    add_grid(p, default=None, extra=": the checkpoint's text4seg.json, else 16; for --image")
    add_scheme(p, default=None, extra=": the checkpoint's text4seg.json, else rrle; for --image")
    p.add_argument(
        "--label-bias",
        type=float,
        default=None,
        help="logit bias on the label tokens (in-process; default: the checkpoint's text4seg.json, the "
        "demo's tuned one, else none)",
    )
    p.add_argument(
        "--trained-with",
        default=None,
        metavar="CKPT",
        help="a checkpoint folder or its text4seg.json: what the model was trained with (for --api; with "
        "--model it is read from the model or its adapters)",
    )
    p.add_argument(
        "--force-options",
        action="store_true",
        help="use --grid/--scheme/--label-bias although they disagree with the checkpoint's text4seg.json",
    )
    p.add_argument("--constrained", action="store_true", help="grammar-constrained decoding (strict parse)")
    p.add_argument(
        "--constrained-engine",
        choices=CONSTRAINED_ENGINES,
        default="auto",
        help="grammar engine for --constrained: xgrammar (fast), own (pure Python), auto (default): "
        "xgrammar when installed",
    )
    p.add_argument("--shard", default=None, help="i/N: this process takes rows i, i+N, ... of --jsonl")
    p.add_argument("--limit", type=int, default=None, help="at most this many queries")
    p.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip queries whose image is unreadable (counted) instead of failing",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in --out although it holds results of other options (see OUT/run.json)",
    )
    add_trust(p)
    api = p.add_argument_group("server (instead of --model: an OpenAI-compatible chat endpoint)")
    api.add_argument(
        "--api", default=None, help="server URL, e.g. http://127.0.0.1:8000 (swift deploy, vllm serve)"
    )
    api.add_argument("--served-model", default=None, help="the server's model name (default: its only model)")
    api.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    api.add_argument("--timeout", type=float, default=300.0, help="seconds per request (default 300)")
    api.add_argument("--retries", type=int, default=3, help="retries of a transient failure, with back-off")
    api.add_argument(
        "--server",
        default="auto",
        choices=["auto", "swift", "vllm"],
        help="server kind (auto: ask /v1/models)",
    )
    add_progress(p, verbose=True)
    from text4seg.commands._video import add_video_arguments

    add_video_arguments(p)


def predict_options(args: argparse.Namespace) -> PredictOptions:
    """The :class:`~text4seg.inference.options.PredictOptions` of a ``predict`` command line."""
    names = {f.name for f in fields(PredictOptions)}
    given = {k: v for k, v in vars(args).items() if k in names}
    return PredictOptions(
        **{**given, "adapters": list(args.adapters or []), "labels": list(args.label or [])},
        overlays=not args.no_overlays,
        progress=not (args.no_progress or args.quiet),
    )


def run(args: argparse.Namespace) -> int:
    from text4seg.inference.run import run_predict

    summary = run_predict(predict_options(args))
    if summary.repairs is not None and not args.quiet:
        print(f"repairs: {json.dumps(summary.repairs)}")
    if summary.cut_answers:
        print(f"cut_answers: {summary.cut_answers} (longer than their query's answer bound; cut there)")
    if summary.skipped:
        print(f"skipped_bad: {len(summary.skipped)} queries (unreadable images), e.g. {summary.skipped[0]}")
    print(f"results: {summary.results}")
    return 0
