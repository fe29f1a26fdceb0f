"""The ``--video`` flags of ``text4seg predict`` and their run (kept out of predict.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video (--video)")
    g.add_argument("--frames", type=int, default=8, help="frames shown to the model (T)")
    g.add_argument("--sampling", default="uniform", choices=["uniform", "keyframe"], help="frame sampling")
    g.add_argument("--form", default="frames", choices=["frames", "delta"], help="multi-frame answer form")
    g.add_argument("--expression-id", default="0", help="the expression's id in Annotations/<video>/<id>/")
    g.add_argument("--sam2-checkpoint", type=Path, default=None, help="SAM 2 weights: propagate with SAM 2")
    g.add_argument("--sam2-config", default=None, help="SAM 2 model config name (with --sam2-checkpoint)")


def check_video_args(args: argparse.Namespace) -> None:
    """Everything of a ``predict --video`` command line that can be checked before the model loads."""
    from text4seg.inference.prepare import check_flags
    from text4seg.inference.video import check_expression_id

    check_flags(args)
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    check_expression_id(args.expression_id)
    if not Path(args.video).exists():
        raise OSError(f"--video {args.video}: not found")
    for flag, path in (("--sam2-checkpoint", args.sam2_checkpoint),):
        if path is not None and not Path(path).is_file():
            raise OSError(f"{flag} {path}: not a file")


def run_video(args: argparse.Namespace, options: dict) -> int:
    from text4seg.inference.predict import Predictor, _load_sam
    from text4seg.inference.video import VIDEO_RESULTS, predict_video

    check_video_args(args)

    engine = {k: options[k] for k in ("model_type", "template_type") if k in options}
    sam = _load_sam(options["sam"], options["sam_type"]) if options.get("sam") else None
    predictor = Predictor(
        args.model,
        adapters=options["adapters"],
        batch_size=1,
        sam=sam,
        trust_remote_code=options.get("trust_remote_code", False),
        **engine,
    )
    predict_video(
        predictor,
        args.video,
        args.query,
        args.out,
        expression_id=args.expression_id,
        n_frames=args.frames,
        sampling=args.sampling,
        grid=args.grid,
        scheme=args.scheme,
        form=args.form,
        max_new_tokens=args.max_new_tokens,
        sam2_checkpoint=args.sam2_checkpoint,
        sam2_config=args.sam2_config,
    )
    print(f"results: {Path(args.out) / VIDEO_RESULTS}")
    return 0
