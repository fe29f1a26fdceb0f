"""``text4seg stats FILE.jsonl``: answer-length statistics (characters and Qwen2 tokens)."""

from __future__ import annotations

import argparse
import json

HELP = "answer-length statistics of a JSONL file: characters and Qwen2 tokens (mean/p50/p95/max)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from text4seg.data.stats import MAX_TOKENIZED

    p.add_argument("file", help="JSONL file in ms-swift format (as written by text4seg build)")
    p.add_argument("--max-tokenized", type=int, default=MAX_TOKENIZED, help="answers to tokenise at most")
    p.add_argument("--json", action="store_true", help="print the statistics as one JSON object")


def run(args: argparse.Namespace) -> int:
    from text4seg.data.stats import file_stats, format_stats

    stats = file_stats(args.file, max_tokenized=args.max_tokenized)
    print(json.dumps(stats) if args.json else format_stats(stats))
    return 0
