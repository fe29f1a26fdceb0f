"""``text4seg predict``: run a trained model on images + queries; masks (COCO RLE), overlays, resumable."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from text4seg.commands._args import add_grid, add_progress, add_root, add_scheme, add_trust
from text4seg.inference.constrained import CONSTRAINED_ENGINES

HELP = "run a model on --image/--query or a built --jsonl; writes results.jsonl (COCO RLE masks) + overlays"


def add_arguments(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--query", help="the question for --image, e.g. 'Please segment the dog.'")
    p.add_argument(
        "--label", action="append", default=None, help="target label for --constrained (repeatable)"
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
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=None)
    add_grid(p, extra="; for --image (a --jsonl row carries its own)")
    add_scheme(p, extra="; for --image (a --jsonl row carries its own)")
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
    add_progress(p)
    from text4seg.commands._video import add_video_arguments

    add_video_arguments(p)


def run(args: argparse.Namespace) -> int:
    from text4seg.inference.predict import predict_to, results_report
    from text4seg.inference.prepare import prepare_predict

    if (args.image is not None or args.video is not None) and not args.query:
        raise ValueError("--image and --video need --query")
    if (args.model is None) == (args.api is None):
        raise ValueError("give exactly one of --model (in-process) and --api (a server URL)")
    if args.api is not None and args.video is not None:
        raise ValueError("--video runs in-process: give --model, not --api")
    if args.video is None:  # inputs, output folder and checkpoint: checked before the model loads
        queries, skipped = prepare_predict(args)
    options = dict(
        adapters=args.adapters,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        constrained=args.constrained,
        constrained_engine=args.constrained_engine,
        sam=args.sam_checkpoint,
        sam_type=args.sam_type,
        overlays=not args.no_overlays,
        progress=not (args.no_progress or args.quiet),
        trust_remote_code=args.trust_remote_code,
    )
    if args.model_type:
        options["model_type"] = args.model_type
    if args.template:
        options["template_type"] = args.template
    if args.video is not None:
        from text4seg.commands._video import run_video

        return run_video(args, options)
    if args.api is not None:
        from text4seg.inference.api_client import ApiPredictor

        options["client"] = ApiPredictor(
            args.api,
            args.served_model,
            concurrency=args.concurrency,
            timeout=args.timeout,
            retries=args.retries,
            max_new_tokens=args.max_new_tokens,
            constrained=args.constrained,
            sam=args.sam_checkpoint,
            sam_type=args.sam_type,
            server=args.server,
        )
    results = predict_to(args.model, queries, args.out, **options)
    if not args.quiet:
        print(f"repairs: {json.dumps(results_report(results))}")
    cut = getattr(options.get("client"), "cut_answers", 0)
    if cut:
        print(f"cut_answers: {cut} (longer than their query's answer bound; cut there)")
    if skipped:
        print(f"skipped_bad: {len(skipped)} queries (unreadable images), e.g. {skipped[0]}")
    print(f"results: {results}")
    return 0
