"""``labelme``: a folder of images with LabelMe JSON files -> referring samples.

Layout: every ``*.json`` under ``--root`` (recursively, sorted) is one LabelMe file::

    {"shapes": [{"label": "car", "points": [[x, y], ...], "shape_type": "polygon", "group_id": 1,
                 "mask": null}, ...],
     "imagePath": "../images/a.jpg", "imageData": null | "<base64>", "imageHeight": 480, "imageWidth": 640}

``imagePath`` is resolved relative to the JSON file and must stay inside ``--root``; when that file is
missing and ``imageData`` is embedded, the image is written once to ``--set image_dir=`` (default
``<out stem>_images/``). Shapes are rasterised at full resolution with Pillow (pixel centres; LabelMe's
own ``shape_to_mask`` draws the same way, with its defaults; golden masks from LabelMe 6.3.1 in
``tests/conformance/test_builders_reference.py``):

* ``polygon`` (also when ``shape_type`` is missing) and ``oriented_rectangle`` (its four corners, LabelMe
  6.x) are filled polygons; ``rectangle`` (two corners, inclusive), ``circle`` (centre, a point on the
  circle), ``mask`` (a base64 PNG whose top-left pixel is the box's first point; non-zero = inside);
* ``line`` and ``linestrip`` are drawn ``--line-width`` pixels wide (LabelMe's default 10);
* ``point`` is a disc of radius ``--point-size`` pixels (LabelMe's default 5);
* ``points`` (a point set) has no area in LabelMe (its ``shape_to_mask`` refuses it) and is skipped; a
  target made only of ``points`` yields no sample.

A target whose shapes cover no pixel (``empty_target``) or that no grid cell samples (``lost_on_grid``)
is counted and dropped, kept or failed on per ``--empty-targets`` (never written as absent).

Targets (``--set targets=``): ``label`` (default): one sample per distinct label of an image, the union
of its shapes (what "car" refers to); ``group``: one sample per ``(label, group_id)``, shapes with the same
label and ``group_id`` forming one target and each ungrouped shape its own. The label is the referring
text. Options: ``targets``, ``line_width``, ``point_size``, ``image_dir``, ``split_ratio`` (by JSON path
hash).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import numpy as np

from text4seg.data.images import check_image_size, open_image
from text4seg.data.jsonl import atomic_path
from text4seg.data.records import Sample
from text4seg.data.rle import mask_to_rle
from text4seg.descriptors import BACKGROUND, encode, mask_to_grid

from .base import BadInput, BuildConfig, Builder
from .coco import SegmentationError, _checked_polygon
from .common import (
    check_sample_pixels,
    claimed_size,
    hashable_id,
    image_size,
    inside,
    label_of,
    load_json,
    side_dir,
)
from .options import Option
from .owndata import SPLIT_RATIO, split_of, split_ratio_of
from .prompts import refer_turn

AREA_SHAPES = ("polygon", "oriented_rectangle", "rectangle", "circle", "mask", "line", "linestrip", "point")
POINT_SHAPES = ("points",)  # no area in LabelMe (shape_to_mask refuses it): skipped
# the fewest points LabelMe's shape_to_mask accepts per shape type (extra points are ignored, as before)
MIN_POINTS = {
    "polygon": 3,
    "oriented_rectangle": 4,
    "rectangle": 2,
    "circle": 2,
    "mask": 2,
    "line": 2,
    "linestrip": 2,
    "point": 1,
}
LINE_WIDTH = 10  # LabelMe's shape_to_mask defaults
POINT_SIZE = 5


def _png(data: str, what: str, mode: str | None = None):
    """The decoded image of an embedded base64 PNG (``mode``: converted), through the pixel limit of
    :func:`text4seg.data.images.open_image` (a 48 KB bomb claiming 20000 x 20000 pixels is refused)."""
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BadInput(f"{what}: cannot decode the embedded base64 image ({exc})") from None
    try:
        with open_image(raw, where=f"{what}: embedded image") as im:
            im.load()
            return im.convert(mode) if mode else im.copy()
    except (ValueError, OSError) as exc:
        raise BadInput(str(exc) if "embedded" in str(exc) else f"{what}: embedded image: {exc}") from None


def shape_mask(
    shape: dict, h: int, w: int, line_width: int = LINE_WIDTH, where: str = "", point_size: int = POINT_SIZE
) -> np.ndarray | None:
    """``(h, w)`` bool mask of one LabelMe shape as LabelMe's ``shape_to_mask`` draws it, or None for a
    ``points`` set (no area)."""
    kind = shape.get("shape_type") or "polygon"
    if kind in POINT_SHAPES:
        return None
    if kind not in AREA_SHAPES:
        raise BadInput(f"{where}: unknown shape_type {kind!r}; known: {[*AREA_SHAPES, *POINT_SHAPES]}")
    try:
        pts = [(float(x), float(y)) for x, y in shape["points"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"{where}: points must be a list of [x, y] pairs ({exc!r})") from None
    try:
        check_image_size(h, w, where)
        _checked_polygon([v for xy in pts for v in xy], h, w)  # finite, near the image (see coco.py)
    except SegmentationError as exc:
        raise BadInput(f"{where}: {exc}", cause=exc.cause) from None
    except ValueError as exc:
        raise BadInput(str(exc), cause="bad_image_size") from None
    need = MIN_POINTS[kind]
    if len(pts) < need:
        raise BadInput(f"{where}: a {kind} needs at least {need} points, got {len(pts)}")
    if kind == "mask":
        return _mask_shape(shape, pts, h, w, where)
    return _draw_shape(kind, pts, h, w, line_width, point_size)


def _draw_shape(kind: str, pts: list, h: int, w: int, line_width: int, point_size: int) -> np.ndarray:
    """``(h, w)`` bool raster of a drawn shape, with Pillow's ``ImageDraw`` calls of LabelMe's
    ``shape_to_mask`` (polygon/oriented_rectangle: ``polygon``; rectangle: ``rectangle`` of the sorted
    corners; circle and point: ``ellipse``; line/linestrip: ``line`` of ``line_width``)."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "polygon":
        draw.polygon(pts, outline=1, fill=1)
    elif kind == "oriented_rectangle":
        draw.polygon(pts[:4], outline=1, fill=1)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = pts[:2]
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
    elif kind in ("circle", "point"):
        (cx, cy) = pts[0]
        if kind == "circle":
            r = ((cx - pts[1][0]) ** 2 + (cy - pts[1][1]) ** 2) ** 0.5
        else:
            r = point_size
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=1, fill=1)
    else:  # line, linestrip
        draw.line(pts if kind == "linestrip" else pts[:2], fill=1, width=line_width)
    return np.asarray(canvas, dtype=bool)


def _mask_shape(shape: dict, pts: list, h: int, w: int, where: str) -> np.ndarray:
    """``(h, w)`` bool mask of a ``mask`` shape: its PNG pasted with its top-left pixel at the box's first
    corner (rounded), cut at the image's edges."""
    if not isinstance(shape.get("mask"), str):
        raise BadInput(f"{where}: a mask shape needs a base64 PNG in 'mask'")
    m = np.asarray(_png(shape["mask"], where)) != 0
    if m.ndim == 3:
        m = m.any(axis=2)
    x0, y0 = (int(round(min(p[0] for p in pts[:2]))), int(round(min(p[1] for p in pts[:2]))))
    out = np.zeros((h, w), bool)
    ys, xs = slice(max(y0, 0), min(y0 + m.shape[0], h)), slice(max(x0, 0), min(x0 + m.shape[1], w))
    if ys.start < ys.stop and xs.start < xs.stop:
        out[ys, xs] = m[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    return out


class LabelMe(Builder):
    name = "labelme"
    help = "LabelMe folder: <root>/**/*.json (every LabelMe 6.x shape type) + their images"
    layout = "<root>/**/*.json (LabelMe), images at each file's imagePath (inside <root>) or embedded"
    options = (
        Option("targets", str, "label", "one sample per label, or per group_id", choices=("label", "group")),
        Option("line_width", int, LINE_WIDTH, "width in pixels of line and linestrip shapes (LabelMe's)"),
        Option("point_size", int, POINT_SIZE, "radius in pixels of the disc of a point shape (LabelMe's)"),
        Option("image_dir", str, None, "folder for embedded images (unset: <out stem>_images/)"),
        SPLIT_RATIO,
    )

    def __init__(self, cfg: BuildConfig):
        Builder.__init__(self, cfg)
        self.root = Path(cfg.root)
        cfg = self.cfg
        self.targets = self.opt("targets")
        self.line_width = self.opt("line_width")
        if self.line_width < 1:
            raise ValueError(f"line_width must be >= 1, got {self.line_width}")
        self.point_size = self.opt("point_size")
        if self.point_size < 0:
            raise ValueError(f"point_size must be >= 0, got {self.point_size}")
        d = self.opt("image_dir")
        if d:
            self.image_dir = Path(d).expanduser().resolve()
        elif cfg.out is not None:
            self.image_dir = side_dir(cfg.out.parent / f"{cfg.out.stem}_images", cfg.out.parent)
        else:
            self.image_dir = self.root / "text4seg_images"
        files = sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*.json"))
        ratio = split_ratio_of(cfg)
        if ratio is not None:
            files = [f for f in files if split_of(f, cfg.seed, ratio) == cfg.split]
        self._units = files

    def units(self) -> list[str]:
        return self._units

    def _image(self, rel: str, doc: dict) -> tuple[str, tuple[int, int]]:
        """(path of the image, its ``(width, height)`` from the real header)."""
        where = self.root / rel
        ip = doc.get("imagePath")
        if ip:
            target = os.path.normpath(os.path.join(os.path.dirname(rel), str(ip).replace("\\", "/")))
            path = inside(self.root, target)
            if path.is_file() or path.is_fifo():
                return str(path), image_size(path, str(where))
        if doc.get("imageData"):
            if not isinstance(doc["imageData"], str):
                raise BadInput(f"{where}: imageData must be a base64 string", cause="malformed_record")
            out = self.image_dir / (Path(rel).with_suffix("").as_posix().replace("/", "__") + ".png")
            if not out.exists():
                im = _png(doc["imageData"], str(where), "RGB")
                with atomic_path(out) as tmp:
                    im.save(tmp, format="PNG")
            return str(out), image_size(out, str(where))
        raise BadInput(f"{where}: image not found (imagePath {ip!r}) and no imageData embedded")

    def where(self, unit) -> str:
        return f"LabelMe file {self.root / unit}"

    def make(self, unit: str, rep: int) -> list[Sample]:
        cfg = self.cfg
        where = self.root / unit
        try:
            doc = load_json(where, "LabelMe file")
        except (ValueError, OSError) as exc:
            raise BadInput(str(exc)) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
            raise BadInput(f"{where} is not a LabelMe file (no 'shapes' list)")
        if "imageHeight" not in doc or "imageWidth" not in doc:
            raise BadInput(f"{where}: imageHeight and imageWidth must be integers")
        h, w = claimed_size(doc["imageHeight"], doc["imageWidth"], f"{where}: imageHeight x imageWidth")
        image, (iw, ih) = self._image(unit, doc)
        if (ih, iw) != (h, w):
            raise BadInput(
                f"{where}: imageHeight x imageWidth {h}x{w} differ from the image {image} ({ih}x{iw})",
                cause="size_mismatch",
            )
        keys: list[tuple] = []
        for n, shape in enumerate(doc["shapes"]):
            sw = f"{where} shape {n}"
            label = shape.get("label") if isinstance(shape, dict) else None
            if not isinstance(label, (str, int, float)) or isinstance(label, bool) or not str(label).strip():
                raise BadInput(f"{sw}: a shape needs a non-empty label, got {str(label)[:80]!r}")
            label = str(label).strip()
            gid = shape.get("group_id")
            if gid is not None:
                gid = hashable_id(gid, sw, "group_id")
            keys.append(
                (label,) if self.targets == "label" else (label, ("g", gid) if gid is not None else ("s", n))
            )
        check_sample_pixels(len(set(keys)) + 1, h, w, str(where))  # one mask per target, one canvas
        groups: dict[tuple, np.ndarray | None] = {}
        for n, (shape, key) in enumerate(zip(doc["shapes"], keys)):
            sw = f"{where} shape {n}"
            m = shape_mask(shape, h, w, self.line_width, sw, self.point_size)
            prev = groups.get(key)
            groups[key] = m if prev is None else (prev if m is None else prev | m)
        out = []
        for key, m in groups.items():
            if m is None:  # ``points`` sets only: no area, no sample
                continue
            text = key[0]
            tag = "" if len(key) == 1 else f"/{key[1][0]}{key[1][1]}"
            sid = self.sample_id(unit, f"{text}{tag}", rep=rep)
            grid = mask_to_grid(m, cfg.grid, labels=text)
            # every shape is a present target: empty or lost on the grid, it is screened (base.py)
            if self.screen_target(int(m.sum()), bool((grid != BACKGROUND).any()), 1, f"{sid} ({where})"):
                continue
            turn = refer_turn(self.rng(sid), text, encode(grid, cfg.scheme))
            out.append(
                self.sample(
                    sid,
                    image=image,
                    width=w,
                    height=h,
                    turns=[turn],
                    task="res",
                    labels=[label_of(text)],
                    source={
                        "dataset": self.name,
                        "split": cfg.split,
                        "image_id": unit,
                        "ref_id": "" if len(key) == 1 else str(key[1][1]),
                    },
                    masks=[mask_to_rle(m)] if cfg.with_gt else [],
                )
            )
        return out
