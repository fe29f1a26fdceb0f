"""``text4seg demo``: the embedded default, end to end: synthetic data -> tiny VLM trained by ``swift sft``
from random weights -> predict (greedy, constrained off and on) -> evaluate -> ``OUT/metrics.json``."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = (
    "build synthetic shapes, train a tiny VLM from random weights with swift sft on this machine, "
    "predict and evaluate the held-out split (writes OUT/metrics.json, loss.png, overlays/)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument("--quick", action="store_true", help="a 1-2 minute run that exercises every stage")
    p.add_argument(
        "--from-scratch", action="store_true",
        help="train from random weights (the only mode so far: no shipped starting checkpoint)",
    )  # fmt: skip
    p.add_argument(
        "--scheme", default=None,
        help="answer scheme (default: full, one token per cell; rrle/irle are the run-length forms)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=None, help="training steps (default: 2000, quick: 4)")
    p.add_argument("--seed", type=int, default=None, help="seed of data, weights and training (default 0)")
    p.add_argument(
        "--reuse", action="store_true",
        help="if OUT already holds the trained checkpoint of this configuration, only predict and evaluate",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from text4seg.demo import FULL, QUICK, format_summary, run_demo
    from text4seg.descriptors import SCHEMES

    cfg = QUICK if args.quick else FULL
    if args.scheme is not None:
        if args.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {args.scheme!r}; choose one of {sorted(SCHEMES)}")
        cfg = replace(cfg, scheme=args.scheme)
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        cfg = replace(cfg, steps=args.steps)
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    print(f"text4seg demo -> {args.out} ({'quick' if args.quick else 'full'}, scheme {cfg.scheme}, "
          f"{cfg.steps} steps from random weights)")  # fmt: skip
    metrics = run_demo(args.out, cfg, reuse=args.reuse)
    print(format_summary(metrics))
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'loss.png'} and {args.out / 'overlays'}/")
    return 0
