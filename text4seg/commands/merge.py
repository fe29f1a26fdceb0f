"""``text4seg merge``: one results.jsonl from the output folders of ``predict --shard i/N`` workers."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "merge the results.jsonl of predict --shard workers into one (for text4seg evaluate)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", type=Path, help="shard output folders (or their results.jsonl files)")
    p.add_argument("--out", type=Path, required=True, help="output folder: results.jsonl (overlays stay put)")


def run(args: argparse.Namespace) -> int:
    from text4seg.inference.merge import merge_results

    stats: dict = {}
    path = merge_results(args.inputs, args.out, stats)
    print(
        f"merged {stats['records']} records from {stats['inputs']} inputs "
        f"({stats['duplicates']} duplicates dropped, {stats['partial_lines']} partial lines skipped)"
        f" -> {path}"
    )
    return 0
