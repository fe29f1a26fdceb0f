"""``text4seg build <builder> --out FILE.jsonl ...``: a dataset on disk -> ms-swift instruction JSONL.

One subcommand per builder of :data:`data_builders.BUILDERS`; its flags are the shared ones (``--root``,
``--split``, ``--grid``...) and the builder's own options, generated from its declarations
(``text4seg build coco-format --help``).
"""

from __future__ import annotations

import argparse
import json
import sys

from text4seg.commands._args import add_grid, add_progress, add_root, add_scheme

HELP = "build instruction JSONL (ms-swift format) from a dataset on disk or the synthetic generator"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from data_builders import BUILDERS

    p.add_argument("--list", action="store_true", help="list the builders, one line each, and exit")
    add_progress(p)  # here (text4seg build --quiet BUILDER ...) and after the builder's name (below)
    sub = p.add_subparsers(dest="builder", metavar="BUILDER", help="the dataset builder (see --list)")
    for name, cls in BUILDERS.items():
        bp = sub.add_parser(name, help=cls.help, description=f"{cls.help}. Layout: {cls.layout}")
        add_common(bp)
        group = bp.add_argument_group(f"options of {name}")
        for option in cls.declared():
            option.add_to(group)


def add_common(p: argparse.ArgumentParser) -> None:
    """The flags every builder takes (the builder's own options come from its declarations)."""
    add_root(p, "dataset root folder (layout per builder: see --list and docs/builders.md)")
    p.add_argument("--split", default="train", help="split to build (default: train)")
    p.add_argument(
        "--out",
        help="output JSONL file, ms-swift rows with text4seg metadata (written through a temporary file, "
        "renamed at the end)",
    )
    add_grid(p)
    add_scheme(p)
    p.add_argument(
        "--repeat", type=int, default=1, help="passes over the data, re-drawing templates (default 1)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed for templates, crops and synthetic images")
    p.add_argument("--skip-bad", action="store_true", help="skip missing/corrupt items and count them")
    p.add_argument("--limit", type=int, default=None, help="stop after N samples")
    p.add_argument("--shard", default=None, help="build only shard i of N (i/N, 0-based) of the work units")
    gt = p.add_mutually_exclusive_group()
    gt.add_argument(
        "--with-gt",
        dest="with_gt",
        action="store_true",
        default=None,
        help="store ground-truth masks (default: on unless --split train)",
    )
    gt.add_argument("--no-gt", dest="with_gt", action="store_false", help="do not store ground-truth masks")
    p.add_argument("--no-stats", action="store_true", help="skip the answer-length statistics")
    # as add_progress, but without defaults: a flag given before the builder's name is not overwritten
    p.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    p.add_argument(
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print results and errors only; silences ms-swift's INFO logging",
    )


def builder_options(cls, args: argparse.Namespace) -> dict:
    """The builder's declared options given on the command line (the builder checks and converts them)."""
    return {o.name: getattr(args, o.name) for o in cls.declared() if getattr(args, o.name, None) is not None}


def list_builders() -> str:
    from data_builders import BUILDERS

    width = max(len(n) for n in BUILDERS)
    return "\n".join(f"{n:<{width}}  {cls.help}" for n, cls in BUILDERS.items())


def run(args: argparse.Namespace) -> int:
    from data_builders import build_jsonl, get_builder

    if args.list:
        print(list_builders())
        return 0
    if not args.builder:
        raise ValueError("name a builder (text4seg build --list shows them)")
    if not args.out:
        raise ValueError("--out FILE.jsonl is required")
    report = build_jsonl(
        args.builder,
        args.out,
        root=args.root,
        split=args.split,
        grid=args.grid,
        scheme=args.scheme,
        limit=args.limit,
        seed=args.seed,
        repeat=args.repeat,
        workers=args.workers,
        shard=args.shard,
        skip_bad=args.skip_bad,
        with_gt=args.with_gt,
        progress=not (args.no_progress or args.quiet) and sys.stderr.isatty(),
        stats=not args.no_stats,
        options=builder_options(get_builder(args.builder), args),
    )
    print(json.dumps(report, indent=1))
    return 0
