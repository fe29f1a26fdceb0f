"""``text4seg export CKPT --out DIR``: merge a LoRA checkpoint into its base model (``swift export``).

The merged folder is a plain model: the GRES recipes start from the merged RES model, and inference needs
no adapter. ``swift export`` re-reads the checkpoint's ``args.json`` (base model, template).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from text4seg.commands._args import add_progress, add_set, add_trust

HELP = "merge a LoRA checkpoint into its base model: swift export --adapters CKPT --merge_lora true"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint", type=Path, help="LoRA checkpoint folder (OUTPUT_DIR/checkpoint-N, has args.json)"
    )
    p.add_argument(
        "--out", type=Path, required=True, help="output folder of the merged model (a plain model folder)"
    )
    add_set(p, "overrides", "extra swift export argument (repeatable), e.g. model=/local/base/model")
    p.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    p.add_argument(
        "--swift", default=None, help="the swift executable (default: next to this Python, then PATH)"
    )
    add_trust(p, "merge a checkpoint (or base model)")
    add_progress(p, child=True, verbose=True)


def run(args: argparse.Namespace) -> int:
    from text4seg.training.run import export

    return export(
        args.checkpoint,
        args.out,
        args.overrides,
        dry_run=args.dry_run,
        swift=args.swift,
        quiet=args.quiet,
        verbose=args.verbose,
        progress=not args.no_progress,
        trust_remote_code=args.trust_remote_code,
    )
