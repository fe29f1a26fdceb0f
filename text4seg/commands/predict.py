"""``text4seg predict``: run a trained model on images + queries; masks (COCO RLE), overlays, resumable."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "run a model on --image/--query or a built --jsonl; writes results.jsonl (COCO RLE masks) + overlays"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model folder (ms-swift loadable)")
    p.add_argument("--adapters", nargs="*", default=None, help="LoRA adapter folders")
    p.add_argument("--model-type", default=None, help="ms-swift model_type (e.g. qwen2_5_vl, llava1_5_hf)")
    p.add_argument("--template", default=None, help="ms-swift template type (default: the model type's)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, help="one image (with --query)")
    src.add_argument("--jsonl", type=Path, help="built JSONL: one query per user turn")
    p.add_argument("--query", help="the question for --image, e.g. 'Please segment the dog.'")
    p.add_argument(
        "--label", action="append", default=None, help="target label for --constrained (repeatable)"
    )
    p.add_argument("--root", type=Path, default=None, help="root for relative image paths in --jsonl")
    p.add_argument("--out", type=Path, required=True, help="output folder (results.jsonl, overlays/)")
    p.add_argument("--sam-checkpoint", type=Path, default=None, help="SAM weights (.pth) for refinement")
    p.add_argument("--sam-type", default="vit_h", choices=["vit_h", "vit_l", "vit_b"], help="SAM variant")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--grid", type=int, default=16, help="grid size for --image (default 16)")
    p.add_argument("--constrained", action="store_true", help="grammar-constrained decoding (strict parse)")
    p.add_argument("--shard", default=None, help="i/N: this process takes rows i, i+N, ... of --jsonl")
    p.add_argument("--limit", type=int, default=None, help="at most this many queries")
    p.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")


def run(args: argparse.Namespace) -> int:
    from text4seg.inference.predict import Predictor, Query, load_queries, predict_queries, repair_report

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.image is not None:
        if not args.query:
            raise ValueError("--image needs --query")
        if args.constrained and not args.label:
            raise ValueError("--constrained with --image needs the target label(s): --label TEXT")
        if not args.image.is_file():
            raise OSError(f"no such image: {args.image}")
        queries = [
            Query(
                id=args.image.stem,
                image=str(args.image.resolve()),
                question=args.query,
                labels=list(args.label or []),
                grid=(args.grid, args.grid),
            )
        ]
    else:
        if not args.jsonl.is_file():
            raise OSError(f"no such file: {args.jsonl}")
        queries = load_queries(args.jsonl, args.root, args.limit, args.shard)
    sam = None
    if args.sam_checkpoint is not None:
        from text4seg.inference.refine import Refiner, load_sam

        sam = Refiner(load_sam(args.sam_checkpoint, args.sam_type))
    engine_kwargs = {}
    if args.model_type:
        engine_kwargs["model_type"] = args.model_type
    if args.template:
        engine_kwargs["template_type"] = args.template
    predictor = Predictor(
        args.model,
        adapters=args.adapters,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        constrained=args.constrained,
        sam=sam,
        **engine_kwargs,
    )
    results = predict_queries(predictor, queries, args.out, overlays=not args.no_overlays)
    with open(results, encoding="utf-8") as fh:
        report = repair_report(json.loads(line) for line in fh if line.strip())
    print(f"repairs: {json.dumps(report)}")
    print(f"results: {results}")
    return 0
