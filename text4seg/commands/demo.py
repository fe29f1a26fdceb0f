"""``text4seg demo``: the embedded default, end to end on a synthetic sample."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HELP = "run the embedded default end to end on synthetic data and print what it did"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument("--grid", type=int, default=16, help="grid size (default 16)")
    p.add_argument("--seed", type=int, default=0)


def _synthetic_label_map(seed: int, height: int = 480, width: int = 640) -> tuple[np.ndarray, list]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    label_map = np.zeros((height, width), np.uint8)
    cy, cx, r = rng.integers(120, 360), rng.integers(120, 300), rng.integers(50, 110)
    label_map[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1
    y0, x0 = rng.integers(60, 300), rng.integers(340, 520)
    label_map[y0 : y0 + 140, x0 : x0 + 100] = 2
    return label_map, [None, "red circle", "blue square on the right"]


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from text4seg import decode, encode, grid_to_mask, mask_to_grid, wrap

    label_map, names = _synthetic_label_map(args.seed)
    grid = mask_to_grid(label_map, args.grid, labels=names)
    text = encode(grid)
    answer = "Sure, here is the segmentation:\n" + wrap(text)
    decoded = decode(answer, args.grid, strict=True)
    h, w = label_map.shape
    print(f"synthetic label map {h}x{w} with labels {names[1:]} -> {args.grid}x{args.grid} grid")
    print(f"R-RLE answer ({len(answer)} characters):\n{answer}")
    for k, name in enumerate(names[1:], start=1):
        gt = label_map == k
        pred = grid_to_mask(decoded.grid, h, w, label=name)
        iou = (gt & pred).sum() / max((gt | pred).sum(), 1)
        print(f"  {name!r}: IoU of the decoded {args.grid}x{args.grid} mask against the pixels = {iou:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    vis = np.zeros((h, w, 3), np.uint8)
    vis[grid_to_mask(decoded.grid, h, w, label=names[1])] = (220, 40, 40)
    vis[grid_to_mask(decoded.grid, h, w, label=names[2])] = (40, 40, 220)
    Image.fromarray(vis).save(args.out / "decoded.png")
    (args.out / "answer.txt").write_text(answer)
    print(f"wrote {args.out / 'decoded.png'} and {args.out / 'answer.txt'}")
    return 0
