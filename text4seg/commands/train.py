"""``text4seg train RECIPE [--set key=value ...] [--dry-run]``: check data, print and run ``swift sft``."""

from __future__ import annotations

import argparse
from pathlib import Path

from text4seg.commands._args import add_progress, add_set, add_trust

HELP = (
    "fine-tune with an ms-swift recipe (recipes/*.yaml): validate its data, print the swift command, run it"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", type=Path, help="recipe YAML (flat ms-swift arguments, optional ENV mapping)")
    add_set(
        p,
        "overrides",
        "override a recipe key (repeatable): model=/path, dataset=[a.jsonl,b.jsonl], output_dir=out "
        "(where swift writes checkpoints), gpus=8 (= NPROC_PER_NODE; keeps the global batch), NNODES=2, "
        "MAX_PIXELS=...",
    )
    p.add_argument("--dry-run", action="store_true", help="validate and print the command, do not run it")
    p.add_argument(
        "--no-check-args", action="store_true", help="skip the check of keys against ms-swift's arguments"
    )
    p.add_argument(
        "--no-check-lengths",
        action="store_true",
        help="skip encoding a sample of rows with the recipe's template to find rows over max_length "
        "(ms-swift drops them silently); --set allow_dropped_rows=true accepts such rows instead",
    )
    p.add_argument(
        "--swift", default=None, help="the swift executable (default: next to this Python, then PATH)"
    )
    add_trust(p)
    add_progress(p, child=True, verbose=True)


def run(args: argparse.Namespace) -> int:
    from text4seg.training.run import train

    return train(
        args.recipe,
        args.overrides,
        dry_run=args.dry_run,
        check_args=not args.no_check_args,
        check_lengths=not args.no_check_lengths,
        swift=args.swift,
        quiet=args.quiet,
        verbose=args.verbose,
        progress=not args.no_progress,
        trust_remote_code=args.trust_remote_code,
    )
