"""Synthetic shapes: generated images of coloured shapes with referring, multi-target, absent-target and
semantic questions. Needs no dataset on disk; deterministic by seed; the embedded default.

Every image holds ``min_shapes..max_shapes`` non-overlapping shapes, each a distinct (colour, shape) pair
drawn from ``colors`` x ``shapes``. Per image, ``per_image`` samples are made, each of ``turns`` rounds;
a round is one of:

* ``res`` (single target): "the red circle", "the circle" (when unique), "the red shape" (when unique);
* ``gres`` multi-target: "all squares", "all red shapes", "every shape" (union mask);
* ``gres`` absent target (rate ``absent_rate``): a (colour, shape) pair not in the image, e.g. "the purple
  circle" next to a purple square and a red circle: all-``others`` grid, empty mask;
* ``semantic`` (rate ``semantic_rate``, single round): classes are the shape names; open-vocab : partial :
  conditioned mixed as ``semantic_mix`` (default 1:3:6).

Images (PNG, ``image_size`` pixels: ``64`` or ``"WxH"``) are written to ``--root`` (default: a folder
``<out stem>_images`` next to the output). Splits ``train``/``val``/``test`` use disjoint seeds (the split
name is part of every seed key). Options (``build_jsonl(..., options={...})`` or CLI ``--set k=v``):
``image_size, num_images, min_shapes, max_shapes, colors, shapes, absent_rate, multi_rate,
semantic_rate, semantic_mix, per_image, turns``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from text4seg.data.jsonl import atomic_path
from text4seg.data.records import Sample
from text4seg.data.rle import mask_to_rle
from text4seg.descriptors import encode, mask_to_grid

from .base import BuildConfig, Builder
from .common import descriptors_of_mask, empty_grid, label_of
from .options import Option
from .prompts import refer_turn, semantic_turn

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 20),
    "purple": (140, 40, 170),
    "orange": (245, 130, 20),
    "black": (20, 20, 20),
    "white": (250, 250, 250),
    "pink": (245, 130, 190),
    "brown": (120, 70, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
PLURAL = {"cross": "crosses"}
DEFAULT_COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
DEFAULT_SHAPES = ("circle", "square", "triangle", "diamond")
DEFAULT_NUM_IMAGES = {"train": 2000, "val": 200, "test": 200}


def parse_size(value) -> tuple[int, int]:
    """``64 -> (64, 64)``; ``"96x64" -> (96, 64)`` as ``(width, height)``."""
    try:
        if isinstance(value, str) and "x" in value.lower():
            w, h = (int(v) for v in value.lower().split("x"))
        else:
            w = h = int(value)
    except ValueError:
        raise ValueError(f"image_size must be N or WxH, got {value!r}") from None
    if not (8 <= w <= 8192 and 8 <= h <= 8192):
        raise ValueError(f"image_size must be within 8..8192 pixels, got {value!r}")
    return w, h


def shape_mask(kind: str, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    """``(h, w)`` bool mask of a shape centred at ``(cx, cy)`` with half-size ``r`` (pixel centres)."""
    yy, xx = np.mgrid[:h, :w]
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    if kind == "circle":
        return dx * dx + dy * dy <= r * r
    if kind == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if kind == "triangle":
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if kind == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if kind == "cross":
        t = r * 0.35
        return ((np.abs(dx) <= t) & (np.abs(dy) <= r)) | ((np.abs(dy) <= t) & (np.abs(dx) <= r))
    raise ValueError(f"unknown shape {kind!r}; choose one of {SHAPES}")


def _plural(shape: str) -> str:
    return PLURAL.get(shape, shape + "s")


def _box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


class Synthetic(Builder):
    name = "synthetic"
    help = "generated coloured shapes with referring/multi/absent/semantic questions (no data needed)"
    splits = ("train", "val", "test")
    layout = "nothing needed; --root is where the generated PNG images go (default: <out stem>_images/)"
    needs_root = False
    options = (
        Option("image_size", str, "64", "image size, N or WxH pixels"),
        Option("num_images", int, None, "images to generate (unset: 2000 for train, 200 for val and test)"),
        Option("min_shapes", int, 1, "shapes per image at least"),
        Option("max_shapes", int, 3, "shapes per image at most"),
        Option("colors", list, DEFAULT_COLORS, "colours to draw from: " + ", ".join(COLORS)),
        Option("shapes", list, DEFAULT_SHAPES, "shapes to draw from: " + ", ".join(SHAPES)),
        Option("absent_rate", float, 0.15, "fraction of questions about an absent shape"),
        Option("multi_rate", float, 0.2, "fraction of questions about every shape of a colour"),
        Option("semantic_rate", float, 0.15, "fraction of semantic questions"),
        Option(
            "semantic_mix", list, (1.0, 3.0, 6.0), "weights of open_vocab, partial, conditioned", item=float
        ),
        Option("per_image", int, 1, "samples per image"),
        Option("turns", int, 1, "question turns per sample"),
    )

    def __init__(self, cfg: BuildConfig):
        super().__init__(cfg)
        o = self.opt
        self.size = parse_size(o("image_size"))
        self.num_images = o("num_images", DEFAULT_NUM_IMAGES[cfg.split])
        self.min_shapes, self.max_shapes = o("min_shapes"), o("max_shapes")
        self.colors = list(o("colors"))
        self.shapes = list(o("shapes"))
        for c in self.colors:
            if c not in COLORS:
                raise ValueError(f"unknown colour {c!r}; choose from {sorted(COLORS)}")
        for s in self.shapes:
            if s not in SHAPES:
                raise ValueError(f"unknown shape {s!r}; choose from {list(SHAPES)}")
        if not 1 <= self.min_shapes <= self.max_shapes:
            raise ValueError(f"need 1 <= min_shapes <= max_shapes, got {self.min_shapes}, {self.max_shapes}")
        if self.max_shapes >= len(self.colors) * len(self.shapes):
            raise ValueError("max_shapes must be below len(colors) * len(shapes) (an absent pair must exist)")
        self.absent_rate = o("absent_rate")
        self.multi_rate = o("multi_rate")
        self.semantic_rate = o("semantic_rate")
        mix = o("semantic_mix")
        self.semantic_mix = [float(x) for x in mix]
        if len(self.semantic_mix) != 3 or min(self.semantic_mix) < 0 or sum(self.semantic_mix) <= 0:
            raise ValueError(f"semantic_mix needs 3 non-negative weights, got {mix!r}")
        rates = (self.absent_rate, self.multi_rate, self.semantic_rate)
        if min(rates) < 0 or sum(rates) > 1:
            raise ValueError(f"absent_rate + multi_rate + semantic_rate must be within 0..1, got {rates}")
        self.per_image, self.turns = o("per_image"), o("turns")
        if self.num_images < 0 or self.per_image < 1 or self.turns < 1:
            raise ValueError("num_images >= 0, per_image >= 1 and turns >= 1 are required")
        if cfg.root is not None:
            self.image_dir = Path(cfg.root)
        elif cfg.out is not None:
            self.image_dir = cfg.out.parent / f"{cfg.out.stem}_images"
        else:
            raise ValueError("synthetic needs --root or an output path to place its images")
        self.classes = ["others", *self.shapes]
        # files already there before this build (another split, an earlier run): never removed by cleanup
        self._existing = set(os.listdir(self.image_dir)) if self.image_dir.is_dir() else set()

    def cleanup(self) -> None:
        """Remove the images and label maps this unfinished build wrote (workers included)."""
        if self.image_dir.is_dir():
            for p in self.image_dir.glob(f"{self.cfg.split}_*.png"):
                if p.name not in self._existing:
                    p.unlink(missing_ok=True)

    def units(self) -> list[int]:
        return list(range(self.num_images))

    # ----------------------------------------------------------------------------------------- scene
    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """``(rgb HxWx3 uint8, instance map HxW int32 (0 = bg, k = shape k-1), [(colour, shape)])``."""
        w, h = self.size
        rng = self.rng(f"synthetic/{self.cfg.split}/{index}/scene")
        n = rng.randint(self.min_shapes, self.max_shapes)
        pairs = [(c, s) for c in self.colors for s in self.shapes]
        rng.shuffle(pairs)
        inst = np.zeros((h, w), np.int32)
        placed: list[tuple[float, float, float]] = []
        objects: list[tuple[str, str]] = []
        side = min(w, h)
        for color, shape in pairs:
            if len(objects) == n:
                break
            for _ in range(30):
                r = rng.uniform(0.12, 0.24) * side
                cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
                if all(abs(cx - px) > r + pr + 1 or abs(cy - py) > r + pr + 1 for px, py, pr in placed):
                    m = shape_mask(shape, cx, cy, r, h, w)
                    if m.any():
                        placed.append((cx, cy, r))
                        objects.append((color, shape))
                        inst[m] = len(objects)
                        break
        bg = rng.randint(190, 240)
        rgb = np.empty((h, w, 3), np.uint8)
        rgb[:] = bg
        for k, (color, _) in enumerate(objects, 1):
            rgb[inst == k] = COLORS[color]
        return rgb, inst, objects

    def image_path(self, index: int) -> Path:
        return self.image_dir / f"{self.cfg.split}_{index:06d}.png"

    def _write_png(self, path: Path, array: np.ndarray) -> None:
        from PIL import Image

        with atomic_path(path) as tmp:
            Image.fromarray(array).save(tmp, format="PNG", compress_level=1)

    # ------------------------------------------------------------------------------------------ turns
    def _refer(self, rng, inst, objects, mode: str):
        """(expression, bool mask, target indices 1-based, task) for a referring round."""
        colors = [c for c, _ in objects]
        shapes = [s for _, s in objects]
        if mode == "absent":
            present = set(objects)
            options = [(c, s) for c in self.colors for s in self.shapes if (c, s) not in present]
            c, s = rng.choice(options)
            return f"the {c} {s}", np.zeros(inst.shape, bool), [], "gres"
        if mode == "multi":
            groups = [
                (f"all {_plural(s)}", [k for k, x in enumerate(shapes, 1) if x == s]) for s in set(shapes)
            ]
            groups += [
                (f"all {c} shapes", [k for k, x in enumerate(colors, 1) if x == c]) for c in set(colors)
            ]
            groups.append(("every shape", list(range(1, len(objects) + 1))))
            groups.sort()
            big = [g for g in groups if len(g[1]) > 1]
            expr, ids = rng.choice(big or groups)
            return expr, np.isin(inst, ids), ids, "gres"
        k = rng.randint(1, len(objects))
        c, s = objects[k - 1]
        options = [f"the {c} {s}"]
        if shapes.count(s) == 1:
            options.append(f"the {s}")
        if colors.count(c) == 1:
            options.append(f"the {c} shape")
        return rng.choice(options), inst == k, [k], "res"

    def _semantic(self, rng, inst, objects):
        present = sorted({self.shapes.index(s) + 1 for _, s in objects})
        label_map = np.zeros(inst.shape, np.uint8)
        for k, (_, s) in enumerate(objects, 1):
            label_map[inst == k] = self.shapes.index(s) + 1
        mode = rng.choices(("open_vocab", "partial", "conditioned"), weights=self.semantic_mix)[0]
        if mode == "open_vocab":
            keep, asked = present, [self.classes[i] for i in present]
        elif mode == "partial":
            keep = sorted(rng.sample(present, rng.randint(1, len(present))))
            asked = [self.classes[i] for i in keep]
            rng.shuffle(asked)
        else:
            absent = [i for i in range(1, len(self.classes)) if i not in present]
            keep = present
            ids = present + rng.sample(absent, rng.randint(min(1, len(absent)), len(absent)))
            asked = [self.classes[i] for i in ids]
            rng.shuffle(asked)
        names = {i: self.classes[i] for i in keep}
        grid = mask_to_grid(label_map, self.cfg.grid, labels=names)
        return mode, asked, grid, label_map, np.isin(label_map, keep)

    def make(self, unit: int, rep: int) -> list[Sample]:
        cfg = self.cfg
        rgb, inst, objects = self.scene(unit)
        path = self.image_path(unit)
        if rep == 0:
            self._write_png(path, rgb)
        h, w = inst.shape
        out = []
        for j in range(self.per_image):
            sid = self.sample_id(f"{unit:06d}", j, rep=rep)
            rng = self.rng(sid)
            turns, masks, labels, boxes = [], [], [], []
            task, label_map_path, classes, ignore, asked = "res", "", [], [], []
            for t in range(self.turns):
                u = rng.random()
                if t == 0 and u < self.semantic_rate:
                    mode, asked, grid, label_map, fg = self._semantic(rng, inst, objects)
                    turns.append(semantic_turn(rng, mode, asked, encode(grid, cfg.scheme)))
                    task, labels = "semantic", [s for s in asked if s in set(grid.ravel().tolist())]
                    if cfg.with_gt:
                        masks.append(mask_to_rle(fg))
                        lm = self.image_dir / f"{cfg.split}_{unit:06d}_labels.png"
                        self._write_png(lm, label_map)
                        label_map_path, classes, ignore = str(lm), list(self.classes), [255]
                    break
                u -= self.semantic_rate
                mode = (
                    "absent"
                    if u < self.absent_rate
                    else "multi"
                    if u < self.absent_rate + self.multi_rate
                    else "single"
                )
                expr, mask, ids, kind = self._refer(rng, inst, objects, mode)
                task = "gres" if kind == "gres" or task == "gres" else "res"
                if ids:
                    desc = descriptors_of_mask(mask, label_of(expr), cfg.grid, cfg.scheme)
                else:
                    desc = encode(empty_grid(cfg.grid), cfg.scheme)
                turns.append(refer_turn(rng, expr, desc, empty=not ids))
                labels.append(label_of(expr))
                boxes.extend(_box(inst == k) for k in ids)
                if cfg.with_gt:
                    masks.append(mask_to_rle(mask))
            out.append(
                self.sample(
                    sid,
                    image=str(path),
                    width=w,
                    height=h,
                    turns=turns,
                    task=task,
                    labels=labels,
                    asked=asked,
                    source={"dataset": "synthetic", "split": cfg.split, "image_id": f"{unit:06d}"},
                    masks=masks,
                    label_map=label_map_path,
                    classes=classes,
                    ignore=ignore,
                    boxes=boxes,
                )
            )
        return out
