"""Fixtures of the peers' datasets in their native layouts: COCO 2017 instances (COCO-Interactive's
source) and COCO panoptic (PNG + JSON, official layout)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from support.fakes import _rect_counts, _write_png, random_polygon

SIZES = ((48, 64), (64, 48), (40, 56))


def make_coco_instances(root: str | Path, split: str = "val2017", n_images: int = 2, seed: int = 0) -> dict:
    """``<root>/annotations/instances_<split>.json`` + ``<root>/<split>/*.jpg``-named PNGs.

    Per image: two polygon instances (categories 1 "person" and 2 "dog") and one crowd annotation
    (uncompressed RLE, iscrowd 1, category 1). ``bbox`` is ``[x, y, w, h]`` of each polygon's points.
    """
    rng = random.Random(seed)
    root = Path(root)
    images, anns = [], []
    for i in range(n_images):
        h, w = SIZES[i % len(SIZES)]
        name = f"{i + 1:012d}.jpg"
        _write_png(root / split / name, h, w, 40 * i)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for cat in (1, 2):
            poly = random_polygon(rng, h, w)
            xs, ys = poly[0::2], poly[1::2]
            bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            anns.append(
                {
                    "id": 100 * (i + 1) + cat,
                    "image_id": i + 1,
                    "category_id": cat,
                    "iscrowd": 0,
                    "segmentation": [poly],
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                }
            )
        crowd = {"size": [h, w], "counts": _rect_counts(h, w, 2, 2, 5, 6)}
        anns.append(
            {
                "id": 100 * (i + 1) + 9,
                "image_id": i + 1,
                "category_id": 1,
                "iscrowd": 1,
                "segmentation": crowd,
                "bbox": [2, 2, 6, 5],
                "area": 30,
            }
        )
    cats = [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 2, "name": "dog", "supercategory": "animal"},
    ]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    data = {"images": images, "annotations": anns, "categories": cats}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return data


def id_to_rgb(seg_id: int) -> tuple[int, int, int]:
    """Panoptic PNG colour of a segment id: ``id = R + 256 * G + 256**2 * B``."""
    return seg_id % 256, seg_id // 256 % 256, seg_id // 65536


def make_coco_panoptic(root: str | Path, split: str = "val2017", n_images: int = 2) -> dict:
    """COCO panoptic layout: ``<root>/annotations/panoptic_<split>.json``, the PNGs in
    ``<root>/annotations/panoptic_<split>/<file_name>``, images in ``<root>/<split>/``.

    Image ``i`` (``h x w``): sky (stuff, category 187) on the top third, grass (stuff, 193) below it, two
    person rectangles (thing, 1) and one crowd person region (iscrowd 1), a void strip (id 0) on the last
    column. Segment ids are large (``>= 256``) so every colour channel is used. Returns the JSON dict plus
    ``"id_maps"``: the ``(h, w)`` int id map of each image.
    """
    from PIL import Image

    root = Path(root)
    pdir = root / "annotations" / f"panoptic_{split}"
    pdir.mkdir(parents=True, exist_ok=True)
    images, annotations, id_maps = [], [], []
    for i in range(n_images):
        h, w = SIZES[i % len(SIZES)]
        name = f"{i + 1:012d}"
        _write_png(root / split / f"{name}.jpg", h, w, 30 * i)
        ids = np.zeros((h, w), np.int64)
        segs = []
        layout = [
            (70000 + i, 187, 0, (slice(0, h // 3), slice(0, w))),
            (300 + i, 193, 0, (slice(h // 3, h), slice(0, w))),
            (1000 + i, 1, 0, (slice(h // 3, h // 3 + 12), slice(4, 16))),
            (1100 + i, 1, 0, (slice(h // 2, h // 2 + 10), slice(w // 2, w // 2 + 14))),
            (1200 + i, 1, 1, (slice(h - 8, h - 2), slice(2, 12))),
        ]
        for sid, _cat, _crowd, sl in layout:
            ids[sl] = sid
        ids[:, -1] = 0  # void
        for sid, cat, crowd, _ in layout:
            ys, xs = np.nonzero(ids == sid)
            bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
            segs.append({"id": sid, "category_id": cat, "iscrowd": crowd, "bbox": bbox, "area": int(ys.size)})
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(pdir / f"{name}.png")
        images.append({"id": i + 1, "file_name": f"{name}.jpg", "height": h, "width": w})
        annotations.append({"image_id": i + 1, "file_name": f"{name}.png", "segments_info": segs})
        id_maps.append(ids)
    cats = [
        {"id": 1, "name": "person", "supercategory": "person", "isthing": 1, "color": [220, 20, 60]},
        {
            "id": 187,
            "name": "sky-other-merged",
            "supercategory": "sky",
            "isthing": 0,
            "color": [70, 130, 180],
        },
        {"id": 193, "name": "grass-merged", "supercategory": "plant", "isthing": 0, "color": [152, 251, 152]},
    ]
    data = {"images": images, "annotations": annotations, "categories": cats}
    (root / "annotations" / f"panoptic_{split}.json").write_text(json.dumps(data))
    return data | {"id_maps": id_maps}
