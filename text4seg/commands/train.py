"""``text4seg train RECIPE [--set key=value ...] [--dry-run]``: check data, print and run ``swift sft``."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

HELP = (
    "fine-tune with an ms-swift recipe (recipes/*.yaml): validate its data, print the swift command, run it"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", type=Path, help="recipe YAML (flat ms-swift arguments, optional ENV mapping)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key (repeatable): model=/path, dataset=[a.jsonl,b.jsonl], output_dir=out, "
        "gpus=8 (= NPROC_PER_NODE; keeps the global batch), NNODES=2, MAX_PIXELS=...",
    )
    p.add_argument("--dry-run", action="store_true", help="validate and print the command, do not run it")
    p.add_argument(
        "--no-check-args", action="store_true", help="skip the check of keys against ms-swift's arguments"
    )
    p.add_argument(
        "--swift", default=None, help="the swift executable (default: next to this Python, then PATH)"
    )


def run(args: argparse.Namespace) -> int:
    from text4seg.training import recipes as train

    recipe = train.apply_overrides(train.load_recipe(args.recipe), train.parse_overrides(args.overrides))
    recipe = train.resolve_plugins(recipe, args.recipe)
    counts = train.validate_data(recipe)  # before ms-swift starts: one error naming FILE:LINE
    for path, n in counts.items():
        print(f"data ok: {path} ({n} rows)")
    if not args.no_check_args:
        unknown = train.unknown_arguments(recipe, "sft")
        if unknown:
            raise ValueError(
                f"{args.recipe}: ms-swift's sft does not accept {unknown} (see `swift sft --help`)"
            )
    if train.global_batch(recipe):
        print(f"global batch: {train.global_batch(recipe)} (per-device x accumulation x GPUs x nodes)")
    argv, env = train.swift_command(recipe, swift=train.swift_executable(args.swift))
    print(train.format_command(argv, env), flush=True)
    if args.dry_run:
        return 0
    return subprocess.call(argv, env={**os.environ, **env})
