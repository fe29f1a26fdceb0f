"""``text4seg demo``: the embedded default, end to end: synthetic data -> tiny VLM trained by ``swift sft``
from random weights -> predict (greedy, constrained off and on) -> evaluate -> ``OUT/metrics.json``."""

from __future__ import annotations

import argparse
from pathlib import Path

from text4seg.commands._args import add_progress, add_scheme

HELP = (
    "build synthetic shapes, train a tiny VLM from random weights with swift sft on this machine, "
    "predict and evaluate the held-out split (writes OUT/metrics.json, loss.png, overlays/)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        default=Path("demo_out"),
        metavar="DIR",
        help="output folder (default demo_out): data/, model_init/, train/ (swift sft log and checkpoint), "
        "pred/, overlays/, loss.png, metrics.json",
    )
    p.add_argument("--quick", action="store_true", help="a 1-2 minute run that exercises every stage")
    add_scheme(p, default="full", extra="; full = one token per cell, the demo's most accurate")
    p.add_argument(
        "--steps", type=int, default=None, help="training steps (default: the recipe's 2000; quick: 4)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed of data, weights and training (default 0)")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="if OUT already holds the trained checkpoint of this configuration, only predict and evaluate",
    )
    p.add_argument(
        "--rl",
        action="store_true",
        help="then reinforcement fine-tuning: GRPO with mask rewards from the SFT checkpoint, and a "
        "matched-compute control (the same SFT continued for the same wall time); writes OUT/rl/, "
        "OUT/rl_reward.png and the rl block of metrics.json",
    )
    from text4seg.demo.config import FULL, QUICK  # dataclasses only: no torch, no ms-swift

    p.add_argument(
        "--rl-steps",
        type=int,
        default=None,
        help=f"GRPO steps of --rl (default {FULL.rl_steps}; quick: {QUICK.rl_steps})",
    )
    add_progress(p, verbose=True)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from text4seg.demo import FULL, QUICK, format_summary, run_demo
    from text4seg.demo.train import demo_steps

    cfg = replace(QUICK if args.quick else FULL, scheme=args.scheme)
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {args.steps}")
        cfg = replace(cfg, steps=args.steps)
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    if args.rl_steps is not None:
        if args.rl_steps < 1:
            raise ValueError(f"--rl-steps must be >= 1, got {args.rl_steps}")
        cfg = replace(cfg, rl_steps=args.rl_steps)
    log = (lambda *_: None) if args.quiet else print
    mode = f"{'quick' if args.quick else 'full'}, scheme {cfg.scheme}"
    log(f"text4seg demo -> {args.out} ({mode}, {demo_steps(cfg)} steps from random weights)")
    metrics = run_demo(
        args.out, cfg, log=log, reuse=args.reuse, progress=not (args.no_progress or args.quiet), rl=args.rl
    )
    print(format_summary(metrics))
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'loss.png'} and {args.out / 'overlays'}/")
    return 0
