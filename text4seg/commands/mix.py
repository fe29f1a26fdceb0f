"""``text4seg mix A.jsonl:3 B.jsonl:1 --out mixed.jsonl``: interleave JSONL files by ratios (seeded)."""

from __future__ import annotations

import argparse
import json

HELP = "mix JSONL files by ratios (FILE:WEIGHT ...), seeded and streaming; presets gsva (9:6:3:1), psalm"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="FILE[:WEIGHT]", help="JSONL files, each with its weight")
    p.add_argument("--out", required=True, help="output JSONL (written through a temporary file)")
    p.add_argument(
        "--total",
        type=int,
        default=None,
        help="lines to write (default: as many as fit without repeating any source; "
        "a source that runs out is cycled: whole passes, then a seeded subset)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets and the interleaving")
    p.add_argument(
        "--preset",
        choices=["gsva", "psalm"],
        help="weights instead of :WEIGHT: gsva = 9:6:3:1 over semantic, referring, VQA, reasoning files "
        "(in that order); psalm = equal weights",
    )


def run(args: argparse.Namespace) -> int:
    from text4seg.data.mix import mix_jsonl, parse_source, preset_weights

    sources = [parse_source(s) for s in args.sources]
    if args.preset:
        if any(s != p for s, (p, _) in zip(args.sources, sources)):
            raise ValueError("--preset sets the weights: name the files without :WEIGHT")
        sources = list(zip([p for p, _ in sources], preset_weights(args.preset, len(sources))))
    report = mix_jsonl(sources, args.out, total=args.total, seed=args.seed)
    print(json.dumps(report, indent=1))
    return 0
