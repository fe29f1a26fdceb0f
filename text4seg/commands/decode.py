"""``text4seg decode``: answers generated elsewhere -> masks (PNG + COCO RLE) and a repair report."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HELP = "decode answers produced by another engine (swift infer output or any JSONL) into masks"

RESPONSE_KEYS = ("response", "answer", "text", "output", "prediction")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "results", nargs="?", type=Path, help="JSONL with a response field and an image path or size"
    )
    p.add_argument("--text", help="decode this one answer instead (needs --size and --out FILE.png)")
    p.add_argument("--size", help="image size HxW for --text (e.g. 480x640)")
    p.add_argument("--out", type=Path, required=True, help="output folder (or PNG file with --text)")
    p.add_argument("--images", type=Path, default=None, help="root for relative image paths")
    p.add_argument(
        "--grid", default="16", help="grid size: N or RxC (default 16; a row's text4seg.grid field wins)"
    )
    p.add_argument("--scheme", default=None, help="descriptor scheme (default: the row's, else rrle)")


def parse_hw(text: str, what: str = "--size") -> tuple[int, int]:
    """``"480x640"`` -> ``(480, 640)``; ``"16"`` -> ``(16, 16)``."""
    parts = str(text).lower().split("x")
    try:
        vals = [int(v) for v in parts]
    except ValueError:
        raise ValueError(f"{what} must look like HxW (e.g. 480x640) or N, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 1:
        raise ValueError(f"{what} must look like HxW with positive sides, got {text!r}")
    return vals[0], vals[1]


def _response(row: dict, n: int) -> str:
    for k in RESPONSE_KEYS:
        if isinstance(row.get(k), str):
            return row[k]
    msgs = row.get("messages") or []
    if msgs and msgs[-1].get("role") == "assistant":
        return msgs[-1]["content"]
    raise ValueError(f"line {n}: no response field (looked for {RESPONSE_KEYS} and a last assistant message)")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from text4seg.data.records import AtomicWriter, read_jsonl
    from text4seg.data.rle import mask_to_rle
    from text4seg.descriptors import SCHEMES
    from text4seg.inference.predict import _atomic_png, answer_to_masks, repair_report

    grid = parse_hw(args.grid, "--grid")
    if args.scheme is not None and args.scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {args.scheme!r}; choose one of {sorted(SCHEMES)}")
    if args.text is not None:
        if args.size is None:
            raise ValueError("--text needs --size HxW")
        h, w = parse_hw(args.size)
        am = answer_to_masks(args.text, h, w, grid, args.scheme or "rrle")
        _atomic_png(args.out, am.mask.astype(np.uint8) * 255)
        print(
            f"wrote {args.out} ({h}x{w}, {int(am.mask.sum())} foreground px, strict parse: {am.parse_valid},"
            f" repairs: {[r.kind for r in am.decoded.repairs]})"
        )
        return 0
    if args.results is None:
        raise ValueError("give a RESULTS.jsonl or --text")
    if not args.results.is_file():
        raise OSError(f"no such file: {args.results}")
    out = args.out
    (out / "masks").mkdir(parents=True, exist_ok=True)
    records = []
    with AtomicWriter(out / "decoded.jsonl") as wr:
        for n, row in enumerate(read_jsonl(args.results), 1):
            meta = row.get("text4seg") or {}
            answer = _response(row, n)
            image = None
            images = row.get("images") or ([row["image"]] if row.get("image") else [])
            if images:
                image = images[0].get("path") if isinstance(images[0], dict) else images[0]
                if args.images is not None and image and not os.path.isabs(image):
                    image = str(args.images / image)
            h = int(meta.get("height") or row.get("height") or 0)
            w = int(meta.get("width") or row.get("width") or 0)
            if not (h and w):
                if not image:
                    raise ValueError(f"{args.results}:{n}: no image path and no width/height")
                if not os.path.isfile(image):
                    raise OSError(f"{args.results}:{n}: image not found: {image} (use --images ROOT)")
                with Image.open(image) as im:
                    w, h = im.size
            g = tuple(meta["grid"]) if meta.get("grid") else grid
            am = answer_to_masks(answer, h, w, g, args.scheme or meta.get("scheme", "rrle"))
            mask_path = out / "masks" / f"{n - 1:06d}.png"
            _atomic_png(mask_path, am.mask.astype(np.uint8) * 255)
            rec = {
                "id": str(meta.get("id", n - 1)),
                "turn": 0,
                "image": image,
                "answer": answer,
                "width": w,
                "height": h,
                "parse_valid": am.parse_valid,
                "repairs": [list(r) for r in am.decoded.repairs],
                "pred_labels": am.names[1:],
                "coarse": mask_to_rle(am.mask),
                "refined": None,
                "mask_png": str(mask_path.relative_to(out)),
            }
            records.append(rec)
            wr.write(json.dumps(rec, ensure_ascii=False))
    report = repair_report(records)
    tmp = out / ".repairs.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out / "repairs.json")
    print(
        f"decoded {report['answers']} answers: {report['parse_valid']} parse strictly, "
        f"{report['answers_repaired']} repaired -> {out / 'decoded.jsonl'}, {out / 'repairs.json'}"
    )
    return 0
