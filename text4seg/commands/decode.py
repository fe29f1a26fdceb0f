"""``text4seg decode``: answers generated elsewhere -> masks (PNG + COCO RLE) and a repair report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from text4seg.commands._args import add_geometry, add_grid, add_progress, add_root, add_scheme, parse_size

HELP = "decode answers produced by another engine (swift infer output or any JSONL) into masks"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "results", nargs="?", type=Path, help="JSONL with a response field and an image path or size"
    )
    p.add_argument("--text", help="decode this one answer instead (needs --size and --out FILE.png)")
    p.add_argument("--size", type=parse_size, metavar="HxW", help="image size for --text (e.g. 480x640)")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder: decoded.jsonl (result records, the schema of predict's results.jsonl), "
        "masks/NNNNNN.png and repairs.json; with --text, the mask PNG file",
    )
    add_root(p, "folder of relative image paths in RESULTS")
    add_grid(p, default=None, extra="; a row's text4seg.grid wins, then --trained-with, else 16")
    add_scheme(p, default=None, extra=": the row's text4seg.scheme, then --trained-with, else rrle")
    p.add_argument(
        "--trained-with",
        default=None,
        metavar="CKPT",
        help="a checkpoint folder or its text4seg.json: the grid and scheme its answers are written in",
    )
    p.add_argument(
        "--force-options",
        action="store_true",
        help="use --grid/--scheme although they disagree with --trained-with",
    )
    add_geometry(p)
    add_progress(p)


def run(args: argparse.Namespace) -> int:
    from text4seg.checkpoints.trained import read_trained, resolve
    from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME
    from text4seg.inference.decode import decode_jsonl, decode_text, repair_warning

    trained = read_trained(args.trained_with) if args.trained_with is not None else None
    if trained is not None:
        where = trained.where()
        args.grid = resolve("--grid", args.grid, tuple(trained.grid), args.force_options, where=where)
        args.scheme = resolve("--scheme", args.scheme, trained.scheme, args.force_options, where=where)
    elif args.trained_with is not None:
        raise FileNotFoundError(f"--trained-with {args.trained_with}: no text4seg.json there")
    args.grid = args.grid or DEFAULT_GRID

    if args.text is not None:
        if args.size is None:
            raise ValueError("--text needs --size HxW")
        h, w = args.size
        am = decode_text(args.text, h, w, args.out, args.grid, args.scheme or DEFAULT_SCHEME, args.geometry)
        print(
            f"wrote {args.out} ({h}x{w}, {int(am.mask.sum())} foreground px, strict parse: {am.parse_valid},"
            f" repairs: {[r.kind for r in am.decoded.repairs]})"
        )
        return 0
    if args.results is None:
        raise ValueError("give a RESULTS.jsonl or --text")
    report = decode_jsonl(
        args.results,
        args.out,
        root=args.root,
        grid=args.grid,
        scheme=args.scheme,
        geometry=args.geometry,
        progress=not (args.no_progress or args.quiet),
    )
    print(
        f"decoded {report['answers']} answers: {report['parse_valid']} parse strictly, "
        f"{report['answers_repaired']} repaired -> {args.out / 'decoded.jsonl'}, {args.out / 'repairs.json'}"
    )
    warning = repair_warning(report, args.grid, args.scheme)
    if warning:
        print(f"text4seg decode: {warning}", file=sys.stderr)
    return 0
