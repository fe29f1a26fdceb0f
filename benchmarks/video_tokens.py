"""Token cost of video answers per frame and per sample (real Qwen2 tokenizer), for each answer form.

Synthetic clips: T = 8 frames of 480 x 854; one ellipse per clip (random size 8-35 % of the height,
random speed and growth), absent from a random tail of the frames in a third of the clips; the
expression is "the person in the red jacket". Prints one line per (scheme, form): mean tokens of the
``Frame k:`` lines per frame and per sample (the sentence before them is not counted).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/video_tokens.py [--clips 200] [--grid 16]
"""

from __future__ import annotations

import argparse

import numpy as np

from text4seg.data.tokens import count_many
from text4seg.descriptors import mask_to_grid
from text4seg.descriptors.video import encode_frames

LABEL = "the person in the red jacket"


def clip(rng: np.random.Generator, t: int, h: int = 480, w: int = 854) -> list[np.ndarray]:
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.1, 0.9) * w
    ry, rx = rng.uniform(0.08, 0.35) * h, rng.uniform(0.05, 0.25) * w
    vy, vx, grow = rng.normal(0, 10), rng.normal(0, 30), rng.uniform(0.95, 1.05)
    gone = int(rng.integers(t // 2, t)) if rng.random() < 1 / 3 else t
    out = []
    for k in range(t):
        m = ((yy - cy - vy * k) / (ry * grow**k)) ** 2 + ((xx - cx - vx * k) / (rx * grow**k)) ** 2 <= 1
        out.append(m if k < gone else np.zeros_like(m))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--grid", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    grids = [[mask_to_grid(m, a.grid, labels=LABEL) for m in clip(rng, a.frames)] for _ in range(a.clips)]
    print(f"{a.clips} clips x {a.frames} frames, grid {a.grid}, label {LABEL!r}")
    for scheme, form in (("rrle", "frames"), ("rrle", "delta"), ("compact", "frames")):
        n = count_many([encode_frames(g, scheme, form) for g in grids])
        print(
            f"{scheme:8s} {form:7s} tokens/sample {np.mean(n):7.1f}"
            f"  tokens/frame {np.mean(n) / a.frames:6.1f}"
            f"  (min {min(n)}, max {max(n)} per sample)"
        )


if __name__ == "__main__":
    main()
