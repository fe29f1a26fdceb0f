"""``coco-panoptic``: COCO panoptic segmentation as one descriptor grid (things numbered, stuff named).

Layout (COCO 2017 panoptic, official)::

    <root>/annotations/panoptic_<split>.json       images, annotations[*].segments_info, categories
    <root>/annotations/panoptic_<split>/<file_name of the annotation>.png
    <root>/<split>/<file_name of the image>

``segments_info`` entries carry ``id``, ``category_id``, ``iscrowd``, ``bbox``, ``area``; a PNG pixel of
colour ``(R, G, B)`` belongs to segment ``R + 256 * G + 256**2 * B`` (0 = void); ``categories`` carry
``isthing``.

The grid (one per image): a cell takes the segment of the pixel PIL-nearest sampling reads for it. A
thing segment (``isthing`` 1, not crowd) is labelled ``"<name> <k>"``, numbered as
:mod:`text4seg.descriptors.instances` numbers instances; a stuff segment is labelled by its class name;
a crowd region by its bare class name (``"person"``; the panoptic protocol never matches a crowd); void
is ``others``. Worked example (4 x 4)::

    sky sky sky sky
    person 1 grass grass person 2        rrle: "sky *4\\n person 1 *1| grass *2| person 2 *1\\n ..."
    person 1 grass grass grass
    grass grass grass others

Row fields (task ``panoptic``): ``labels`` = one label per segment in ``segments_info`` order (things
numbered like the grid, then the instances too small for the grid), ``gt.masks[i]`` its full-resolution
mask, ``gt.ignore`` the indices of the crowd segments, ``gt.classes`` the dataset's thing class names
(labels normalised), so :func:`text4seg.evaluation.panoptic.score_panoptic` needs nothing else. At
prediction time SAM refines every label alone (``text4seg.inference.refine``), so every thing instance
is refined separately. Options: ``check_images`` (true). ADE20K panoptic has the same layout: build it
with ``--set ann=<json> --set png_dir=<folder> --set image_dir=<folder>`` (relative to the root).
"""

from __future__ import annotations

import numpy as np

from text4seg.data.images import open_image
from text4seg.data.records import Sample
from text4seg.data.rle import mask_to_rle
from text4seg.descriptors import encode, nearest_index, normalize_label
from text4seg.descriptors.instances import instance_label, number_instances

from .base import CHECK_IMAGES, BadInput, BuildConfig, Builder
from .common import checked_size, claimed_size, inside, load_json
from .options import Option
from .prompts import answer, load_templates


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 panoptic PNG -> ``(H, W)`` int64 segment ids ``R + 256 G + 256^2 B``."""
    a = np.asarray(rgb).astype(np.int64)
    return a[..., 0] + 256 * a[..., 1] + 65536 * a[..., 2]


def panoptic_grid(
    ids: np.ndarray, segments: list[dict], names: dict, things: set, size
) -> tuple[np.ndarray, list[str]]:
    """``(grid, labels)``: the ``(rows, cols)`` label grid of a segment-id map and every segment's label.

    ``segments``: ``segments_info`` entries; ``names``: category id -> name; ``things``: thing category
    ids. ``labels[i]`` is segment ``i``'s label (module docstring).
    """
    rows, cols = size
    h, w = ids.shape
    thing_idx = [i for i, s in enumerate(segments) if s["category_id"] in things and not s.get("iscrowd", 0)]
    masks = [ids == segments[i]["id"] for i in thing_idx]
    tnames = [names[segments[i]["category_id"]] for i in thing_idx]
    grid, instances, order = number_instances(masks, tnames, (rows, cols))
    labels = [instance_label(names[s["category_id"]], 0) for s in segments]
    counters: dict[str, int] = {}
    ranked = {}
    for j in order:  # visible instances first, numbered as in the grid; then the invisible ones
        cname = instance_label(tnames[j], 0)
        counters[cname] = counters.get(cname, 0) + 1
        ranked[thing_idx[j]] = instance_label(cname, counters[cname])
    labels = [ranked.get(i, lab) for i, lab in enumerate(labels)]
    grid = grid.astype(object)
    sampled = ids[np.ix_(nearest_index(h, rows), nearest_index(w, cols))]
    by_id = {s["id"]: i for i, s in enumerate(segments)}
    for r in range(rows):
        for c in range(cols):
            i = by_id.get(int(sampled[r, c]))
            if i is not None and i not in ranked:  # stuff or crowd
                grid[r, c] = labels[i]
    return grid.astype(str), labels


class CocoPanoptic(Builder):
    name = "coco-panoptic"
    help = "COCO panoptic (PNG + JSON): one grid, things instance-numbered, stuff by class name"
    splits = ()
    layout = (
        "<root>/annotations/panoptic_<split>.json, <root>/annotations/panoptic_<split>/*.png, <root>/<split>/"
    )

    options = (
        Option("ann", str, None, "panoptic JSON under --root (unset: annotations/panoptic_<split>.json)"),
        Option(
            "png_dir", str, None, "panoptic PNG folder under --root (unset: annotations/panoptic_<split>)"
        ),
        Option("image_dir", str, None, "image folder under --root (unset: <split>)"),
        CHECK_IMAGES,
    )

    def __init__(self, cfg: BuildConfig):
        Builder.__init__(self, cfg)
        split = cfg.split
        self.ann = inside(cfg.root, self.opt("ann", f"annotations/panoptic_{split}.json"))
        self.png_dir = inside(cfg.root, self.opt("png_dir", f"annotations/panoptic_{split}"))
        self.image_dir = inside(cfg.root, self.opt("image_dir", split))
        self.check_images = self.opt("check_images")
        try:
            data = load_json(self.ann)
            self.images = {im["id"]: im for im in data["images"]}
            self.names = {c["id"]: c["name"] for c in data["categories"]}
            self.things = {c["id"] for c in data["categories"] if c.get("isthing", 0)}
            self.anns = list(data["annotations"])
        except FileNotFoundError:
            raise FileNotFoundError(f"annotation file not found: {self.ann}") from None
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{self.ann} is not a COCO panoptic file: {exc}") from None
        self.thing_names = sorted({normalize_label(self.names[c]) for c in self.things})

    def conventions(self) -> dict:
        return {"things": "instance-numbered", "stuff": "class name", "crowd": "bare class name"}

    def units(self) -> list[int]:
        return list(range(len(self.anns)))

    def where(self, unit) -> str:
        a = self.anns[unit]
        return (
            f"annotation of image {str(a.get('image_id') if isinstance(a, dict) else a)[:40]} in {self.ann}"
        )

    def make(self, unit: int, rep: int) -> list[Sample]:
        cfg = self.cfg
        a = self.anns[unit]
        im = self.images.get(a.get("image_id"))
        if im is None:
            raise BadInput(f"{self.ann}: annotation of image {a.get('image_id')!r} has no image entry")
        h, w = claimed_size(im.get("height"), im.get("width"), f"{self.ann}: image {str(im.get('id'))[:40]}")
        png = inside(self.png_dir, str(a["file_name"]))
        try:
            with open_image(png) as pim:
                ids = rgb_to_id(np.asarray(pim.convert("RGB")))
        except FileNotFoundError:
            raise BadInput(f"panoptic PNG not found: {png}", "image_not_found") from None
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot read panoptic PNG {png}: {exc}") from None
        if ids.shape != (h, w):
            raise BadInput(f"{png} is {ids.shape[1]}x{ids.shape[0]}, its image entry says {w}x{h}")
        segs = list(a.get("segments_info") or [])
        unknown = [s.get("category_id") for s in segs if s.get("category_id") not in self.names]
        if unknown:
            raise BadInput(f"{png}: segments with unknown category ids {unknown[:5]}", "malformed_record")
        path = inside(self.image_dir, str(im["file_name"]))
        if self.check_images:
            if not path.exists():
                raise BadInput(f"image not found: {path}", "image_not_found")
            checked_size(path, h, w, f"{self.ann}: image {str(im.get('id'))[:40]}")
        grid, labels = panoptic_grid(ids, segs, self.names, self.things, cfg.grid)
        sid = self.sample_id(im["id"], rep=rep)
        rng = self.rng(sid)
        t = load_templates("panoptic")
        turn = (rng.choice(t["question"]), answer(rng.choice(t["answer"]), encode(grid, cfg.scheme)))
        return [
            self.sample(
                sid,
                image=str(path),
                width=w,
                height=h,
                turns=[turn],
                task="panoptic",
                labels=labels,
                source={
                    "dataset": self.name,
                    "split": cfg.split,
                    "image_id": im["id"],
                    "ann_ids": [s["id"] for s in segs],
                },
                masks=[mask_to_rle(ids == s["id"]) for s in segs] if cfg.with_gt else [],
                classes=self.thing_names,
                ignore=[i for i, s in enumerate(segs) if s.get("iscrowd", 0)],
            )
        ]
