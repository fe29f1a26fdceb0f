"""``coco-interactive``: PSALM's COCO-Interactive from COCO instance annotations (point, scribble, box, mask).

Layout (COCO 2017, official)::

    <root>/annotations/instances_<split>.json      split: train2017 | val2017
    <root>/<split>/<file_name>

One unit per non-crowd annotation with a non-empty mask, in file order (an annotation no grid cell samples
is ``lost_on_grid``: counted, dropped/kept/failed per ``--empty-targets``, the one rule of
:meth:`data_builders.base.Builder.screen_target`); one sample per prompt kind
(``--set kinds=point,scribble,box,mask``, the default: all four), id
``coco-interactive/<split>/<ann_id>/<kind>`` (``source.ref_id`` is ``<ann_id>:<kind>``). The prompts are
drawn as the PSALM appendix describes, seeded per (seed, annotation, kind, repeat pass):

Every prompt is drawn on the object's pixels: "the box" below is the box of the annotation's mask, and
a point or scribble is checked against the mask (PSALM's generator redraws a point until it is on the
object; this builder does the same for scribbles, and keeps boxes around the object):

* point: uniform in the disc centred on the mask's centroid, radius half the box's short side, redrawn
  (up to 1000 times) until it lies on the mask, else the mask pixel nearest the centroid;
* scribble: the box with width and height scaled by factors from [0.5, 1.2] (redrawn until its IoU with
  the box exceeds 0.5, at most 50 tries, else the box), one of its diagonals, and a sine wave along it
  (amplitude 10-20 px, angular frequency 0.2*2pi-2pi per diagonal length, phase 0-2pi), written as
  ``scribble_points`` (8) points; redrawn (up to 50 times) until every point lies on the mask, else the
  best draw with its off-object points moved to the nearest mask pixel;
* box: width and height scaled by factors from [1.0, 1.1] about the centre (PSALM's [0.9, 1.1] redrawn
  until the box contains the object);
* mask: the target blurred by a Gaussian (sigma 2 px) and thresholded at 0.5, written as a coarse
  descriptor grid (``--prompt-grid 8``) whose foreground label is ``region``.

Coordinates in the question (``--set coords=...``, one convention per backbone family, as ms-swift's
templates ground boxes: ``norm_bbox`` ``none`` for Qwen2.5-VL, ``norm1000`` for the others):

* ``norm1000`` (default; Qwen3-VL, Qwen2-VL, InternVL, LLaVA...): integers 0..1000,
  ``round(x / width * 1000)``, ``round(y / height * 1000)``;
* ``qwen2.5-vl``: absolute integer pixels of the image as the model sees it after Qwen2.5-VL's resize
  (:func:`smart_resize`: sides rounded to multiples of 28, area within ``min_pixels``..``max_pixels``,
  ``--set max_pixels=12845056``).

Text forms: point ``(x, y)``; box ``[x0, y0, x1, y1]`` (corners, pixel edges); scribble
``[(x, y), (x, y), ...]``; mask ``the 8x8 region mask below`` and the descriptor text on the lines
after the question. Options also: ``check_images`` (true). E.g. ``Please segment the object at the
point (412, 530).`` The answer is the usual sentence + ``<seg>`` block, foreground label = the category
name. Ground truth: ``gt.masks[0]`` the annotation's mask, ``gt.boxes[0]`` its box.
"""

from __future__ import annotations

import math
import random
from functools import partial

import numpy as np

from text4seg.data.records import Sample
from text4seg.data.rle import rle_to_json, rle_to_mask
from text4seg.descriptors import encode, mask_to_grid

from .base import CHECK_IMAGES, BadInput, BuildConfig, Builder
from .coco import rle_area, sample_rle, segmentation_rles, union_rle
from .common import PLACEHOLDER, checked_size, claimed_size, descriptor_template, inside, label_of, load_json
from .options import Option
from .prompts import answer, load_templates

KINDS = ("point", "scribble", "box", "mask")
COORDS = ("norm1000", "qwen2.5-vl")


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 12845056
) -> tuple[int, int]:
    """``(height, width)`` of the image Qwen2.5-VL sees: sides rounded to multiples of ``factor``, area kept
    within ``[min_pixels, max_pixels]`` by a common scale (Qwen2.5-VL's published resize rule)."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


class Coords:
    """Pixel coordinates ``(x, y)`` of an ``height x width`` image -> the integers a backbone family reads."""

    def __init__(self, convention: str, height: int, width: int, max_pixels: int = 12845056):
        if convention not in COORDS:
            raise ValueError(f"unknown coords {convention!r}; choose one of {list(COORDS)}")
        if convention == "norm1000":
            self.sx, self.sy = 1000 / width, 1000 / height
            self.mx, self.my = 1000, 1000
        else:
            rh, rw = smart_resize(height, width, max_pixels=max_pixels)
            self.sx, self.sy = rw / width, rh / height
            self.mx, self.my = rw, rh

    def xy(self, x: float, y: float) -> tuple[int, int]:
        return (min(self.mx, max(0, round(x * self.sx))), min(self.my, max(0, round(y * self.sy))))

    def point(self, x: float, y: float) -> str:
        return "({}, {})".format(*self.xy(x, y))

    def box(self, x0: float, y0: float, x1: float, y1: float) -> str:
        return "[{}, {}, {}, {}]".format(*self.xy(x0, y0), *self.xy(x1, y1))

    def polyline(self, pts) -> str:
        return "[" + ", ".join(self.point(x, y) for x, y in pts) + "]"


def _clip_box(b, w, h):
    x0, y0, x1, y1 = b
    return (min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w), min(max(y1, 0.0), h))


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def _scaled(box, sx: float, sy: float):
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    return (cx - w * sx / 2, cy - h * sy / 2, cx + w * sx / 2, cy + h * sy / 2)


def mask_box(mask: np.ndarray) -> list[float]:
    """``[x, y, w, h]`` of the pixels of a non-empty ``(H, W)`` bool mask (pixel edges)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])]


def on_mask(mask: np.ndarray, x: float, y: float) -> bool:
    """Whether the pixel holding the point ``(x, y)`` (pixel edges at integers) is on ``mask``."""
    r, c = math.floor(y), math.floor(x)
    return 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and bool(mask[r, c])


def nearest_on_mask(mask: np.ndarray, x: float, y: float) -> tuple[float, float]:
    """The centre of the ``mask`` pixel nearest ``(x, y)`` (first in row-major order on ties)."""
    rows, cols = np.nonzero(mask)
    k = int(np.argmin((rows + 0.5 - y) ** 2 + (cols + 0.5 - x) ** 2))
    return float(cols[k]) + 0.5, float(rows[k]) + 0.5


def point_prompt(
    rng: random.Random, box, mask: np.ndarray | None = None, tries: int = 1000
) -> tuple[float, float]:
    """A point uniform in a disc of radius half the short side of ``box`` ``[x, y, w, h]``.

    Without ``mask``: the disc at the box centre. With ``mask`` (PSALM's generator): the disc at the
    mask's centroid, redrawn (up to ``tries`` times) until the point lies on the mask; when every draw
    misses (a thin or scattered object), the mask pixel nearest the centroid. The point is then always on
    the object, rings and L shapes included."""
    x, y, w, h = box
    if mask is None:
        r = min(w, h) / 2 * math.sqrt(rng.random())
        t = rng.uniform(0, 2 * math.pi)
        return x + w / 2 + r * math.cos(t), y + h / 2 + r * math.sin(t)
    rows, cols = np.nonzero(mask)
    cx, cy = float(cols.mean()) + 0.5, float(rows.mean()) + 0.5
    radius = min(w, h) / 2
    for _ in range(tries):
        r = radius * math.sqrt(rng.random())
        t = rng.uniform(0, 2 * math.pi)
        px, py = cx + r * math.cos(t), cy + r * math.sin(t)
        if on_mask(mask, px, py):
            return px, py
    return nearest_on_mask(mask, cx, cy)


def box_prompt(rng: random.Random, box) -> tuple[float, float, float, float]:
    """``box`` ``[x, y, w, h]``, width and height scaled by factors from [1.0, 1.1] about the centre:
    ``(x0, y0, x1, y1)``. PSALM draws from [0.9, 1.1]; a factor below 1 would cut the object, so the draw
    is redrawn until the box contains it, which is a uniform draw from [1.0, 1.1]."""
    return _scaled(box, rng.uniform(1.0, 1.1), rng.uniform(1.0, 1.1))


def _scribble_once(rng: random.Random, box, n: int) -> list[tuple[float, float]]:
    """``n`` points of one sine-wave scribble along a diagonal of a jittered ``box`` (module docstring)."""
    x, y, w, h = box
    ref = (x, y, x + w, y + h)
    jit = ref
    for _ in range(50):
        cand = _scaled(box, rng.uniform(0.5, 1.2), rng.uniform(0.5, 1.2))
        if _iou(cand, ref) > 0.5:
            jit = cand
            break
    x0, y0, x1, y1 = jit
    if rng.random() < 0.5:
        y0, y1 = y1, y0  # the other diagonal
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    nx, ny = -(y1 - y0) / length, (x1 - x0) / length  # unit normal
    amp = rng.uniform(10, 20)
    freq = rng.uniform(0.2 * 2 * math.pi, 2 * math.pi)
    phase = rng.uniform(0, 2 * math.pi)
    pts = []
    for i in range(n):
        t = i / (n - 1)
        off = amp * math.sin(freq * t + phase)
        pts.append((x0 + t * (x1 - x0) + off * nx, y0 + t * (y1 - y0) + off * ny))
    return pts


def scribble_prompt(
    rng: random.Random, box, n: int = 8, mask: np.ndarray | None = None, tries: int = 50
) -> list[tuple[float, float]]:
    """``n`` points of a sine wave along a diagonal of a jittered ``box`` (module docstring).

    With ``mask``: redrawn (up to ``tries`` times) until every point lies on the mask; when no draw does
    (a ring, a thin object), the draw with the most points on it, each point off the object moved to the
    nearest mask pixel. Every point then lies on the object."""
    pts = _scribble_once(rng, box, n)
    if mask is None:
        return pts
    best, best_on = pts, -1
    for k in range(tries):
        if k:
            pts = _scribble_once(rng, box, n)
        hits = sum(on_mask(mask, x, y) for x, y in pts)
        if hits == n:
            return pts
        if hits > best_on:
            best, best_on = pts, hits
    return [(x, y) if on_mask(mask, x, y) else nearest_on_mask(mask, x, y) for x, y in best]


def mask_prompt(mask: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """``(H, W)`` bool: the mask blurred by a Gaussian of ``sigma`` pixels, thresholded at 0.5."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(np.asarray(mask, np.float32), sigma) > 0.5


class CocoInteractive(Builder):
    name = "coco-interactive"
    help = "COCO-Interactive (PSALM): point/scribble/box/mask prompts from COCO instances, as text"
    splits = ("train2017", "val2017")
    layout = "<root>/annotations/instances_<split>.json, <root>/<split>/<file_name>"
    options = (
        Option("kinds", list, KINDS, "prompt kinds, one sample each", choices=KINDS),
        Option("coords", str, "norm1000", "how prompt coordinates are written", choices=COORDS),
        Option("max_pixels", int, 12845056, "Qwen2.5-VL's pixel budget (coords qwen2.5-vl)"),
        Option("prompt_grid", int, 8, "side of the coarse region-mask prompt's grid"),
        Option("scribble_points", int, 8, "points of a scribble prompt"),
        CHECK_IMAGES,
    )

    def __init__(self, cfg: BuildConfig):
        Builder.__init__(self, cfg)
        self.kinds = self.opt("kinds")
        if not self.kinds:
            raise ValueError(f"option kinds={self.kinds!r}: choose from {list(KINDS)}")
        self.coords = self.opt("coords")
        self.max_pixels = self.opt("max_pixels")
        self.prompt_grid = self.opt("prompt_grid")
        self.points = self.opt("scribble_points")
        self.check_images = self.opt("check_images")
        path = cfg.root / "annotations" / f"instances_{cfg.split}.json"
        try:
            data = load_json(path)
            self.images = {im["id"]: im for im in data["images"]}
            self.cats = {c["id"]: c["name"] for c in data["categories"]}
            self.anns = [a for a in data["annotations"] if not a.get("iscrowd", 0)]
        except FileNotFoundError:
            raise FileNotFoundError(f"annotation file not found: {path}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path} is not a COCO instances file: {type(exc).__name__}: {exc}") from None
        self.ann_path = path

    def conventions(self) -> dict:
        return {"coords": self.coords, "kinds": list(self.kinds), "crowd": "left out"}

    def units(self) -> list[int]:
        return list(range(len(self.anns)))

    def where(self, unit) -> str:
        a = self.anns[unit]
        return f"annotation {str(a.get('id') if isinstance(a, dict) else unit)[:40]} in {self.ann_path}"

    def make(self, unit: int, rep: int) -> list[Sample]:
        cfg = self.cfg
        a = self.anns[unit]
        where = f"annotation {a.get('id')!r} in {self.ann_path}"
        im = self.images.get(a.get("image_id"))
        if im is None:
            raise BadInput(f"{where}: image id {a.get('image_id')!r} not in images", "missing_image_record")
        h, w = claimed_size(im.get("height"), im.get("width"), where)
        path = inside(cfg.root / cfg.split, str(im["file_name"]))
        if self.check_images:
            if not path.exists():
                raise BadInput(f"image not found: {path}", "image_not_found")
            checked_size(path, h, w, where)
        try:
            rle = union_rle(segmentation_rles(a["segmentation"], h, w), h, w)
            box = [float(v) for v in a["bbox"]]
            name = self.cats[a["category_id"]]
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise BadInput(f"bad {where}: {exc}", "bad_segmentation") from None
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise BadInput(f"bad {where}: bbox {str(a.get('bbox'))[:60]} is not 4 finite numbers", "bad_bbox")
        if rle_area(rle) == 0 or box[2] <= 0 or box[3] <= 0:
            self.count("empty_annotations")
            return []
        fg = sample_rle(rle, *cfg.grid)
        if self.screen_target(partial(rle_area, rle), bool(fg.any()), len(self.kinds), where):
            return []
        mask = rle_to_mask(rle)
        mbox = mask_box(mask)  # the prompts are drawn on the object's pixels (PSALM), not its claimed bbox
        label = label_of(name)
        desc = descriptor_template(fg, cfg.scheme).replace(PLACEHOLDER, label)
        co = Coords(self.coords, h, w, self.max_pixels)
        t = load_templates("interactive")
        out = []
        for kind in self.kinds:
            sid = self.sample_id(a["id"], kind, rep=rep)
            rng = self.rng(sid)
            if kind == "point":
                prompt = "the point " + co.point(*point_prompt(rng, mbox, mask))
            elif kind == "box":
                prompt = "the box " + co.box(*_clip_box(box_prompt(rng, mbox), w, h))
            elif kind == "scribble":
                pts = scribble_prompt(rng, mbox, self.points, mask)
                prompt = "the scribble " + co.polyline(pts)
            else:
                coarse = mask_to_grid(mask_prompt(mask), self.prompt_grid, labels="region")
                prompt = f"the {self.prompt_grid}x{self.prompt_grid} region mask below"
            q = rng.choice(t["question"]).format(prompt=prompt)
            if kind == "mask":
                q += "\n" + encode(coarse, cfg.scheme)
            ans = answer(rng.choice(t["answer"]).format(name=label), desc)
            out.append(
                self.sample(
                    sid,
                    image=str(path),
                    width=w,
                    height=h,
                    turns=[(q, ans)],
                    task="interactive",
                    labels=[label],
                    source={
                        "dataset": self.name,
                        "split": cfg.split,
                        "image_id": a["image_id"],
                        "ref_id": f"{a['id']}:{kind}",
                        "ann_ids": [a["id"]],
                    },
                    masks=[rle_to_json(rle)] if cfg.with_gt else [],
                    boxes=[box],
                )
            )
        return out
