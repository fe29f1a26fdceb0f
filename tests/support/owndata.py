"""Fixture writers for the own-data builders, each in its tool's native layout (tiny, seeded).

* :func:`make_coco_format`: ``images/*.png`` + ``instances.json`` with polygons, compressed RLE
  (``str`` counts) and uncompressed RLE (``list`` counts, ``iscrowd: 1``), as CVAT/Roboflow export.
* :func:`make_labelme`: ``*.png`` + LabelMe ``*.json`` with every shape kind (polygon, rectangle,
  circle, line, linestrip, point, mask, LabelMe 6.x's oriented_rectangle and points) and a ``group_id``
  pair; one file with embedded ``imageData``.
* :func:`make_mask_folder`: ``images/``, ``masks/`` in the three forms, ``classes.txt`` and queries.
"""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = [{"id": 1, "name": "cup"}, {"id": 2, "name": "person"}, {"id": 5, "name": "dog"}]


def _image(path: Path, h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _rect_poly(x0, y0, x1, y1) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def make_coco_format(root: str | Path, n_images: int = 4, seed: int = 0, size=(48, 64)) -> dict:
    """Write ``root/images/img{i}.png`` and ``root/instances.json``; returns the JSON dict.

    Image i: two ``person`` polygons side by side, a ``cup`` as compressed RLE, and (odd i) a crowd of
    ``person`` as uncompressed RLE; image 0 also has a ``dog`` of two polygon parts.
    """
    from pycocotools import mask as mu

    root = Path(root)
    h, w = size
    rng = random.Random(seed)
    images, anns = [], []
    aid = 100
    for i in range(n_images):
        fn = f"img{i}.png"
        _image(root / "images" / fn, h, w, seed * 1000 + i)
        images.append({"id": i + 1, "file_name": fn, "height": h, "width": w})
        y = rng.randint(0, h // 4)
        for x0 in (2, w // 2 + 2):
            aid += 1
            poly = _rect_poly(x0, y, x0 + w // 4, y + h // 3)
            anns.append(
                {"id": aid, "image_id": i + 1, "category_id": 2, "iscrowd": 0, "segmentation": [poly]}
            )
        cup = np.zeros((h, w), np.uint8)
        cup[h - 12 : h - 2, w // 2 - 5 : w // 2 + 5] = 1
        rle = mu.encode(np.asfortranarray(cup))
        aid += 1
        anns.append(
            {
                "id": aid,
                "image_id": i + 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode()},
            }
        )
        if i % 2:
            crowd = np.zeros((h, w), np.uint8)
            crowd[h // 2 : h // 2 + 6, :] = 1
            flat = crowd.flatten(order="F")
            counts, prev, run = [], 0, 0
            for v in flat:
                if v != prev:
                    counts.append(run)
                    prev, run = v, 0
                run += 1
            counts.append(run)
            aid += 1
            anns.append(
                {
                    "id": aid,
                    "image_id": i + 1,
                    "category_id": 2,
                    "iscrowd": 1,
                    "segmentation": {"size": [h, w], "counts": counts},
                }
            )
        if i == 0:
            aid += 1
            anns.append(
                {
                    "id": aid,
                    "image_id": 1,
                    "category_id": 5,
                    "iscrowd": 0,
                    "segmentation": [_rect_poly(2, h - 10, 10, h - 2), _rect_poly(14, h - 10, 20, h - 2)],
                }
            )
    data = {"images": images, "annotations": anns, "categories": [dict(c) for c in CATEGORIES]}
    (root / "instances.json").write_text(json.dumps(data))
    return data


def _png_b64(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def make_labelme(root: str | Path, n_images: int = 2, seed: int = 0, size=(48, 64)) -> list[dict]:
    """Write LabelMe files under ``root/ann/`` with images in ``root/images/`` (imagePath
    ``../images/x.png``); the last file has no image file, only ``imageData``. Returns the JSON dicts."""
    root = Path(root)
    h, w = size
    out = []
    for i in range(n_images):
        stem = f"shot{i}"
        embedded = i == n_images - 1
        rng = np.random.default_rng(seed * 100 + i)
        pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        if not embedded:
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / "images" / f"{stem}.png")
        mask = np.zeros((6, 8), np.uint8)
        mask[1:5, 2:6] = 1
        shapes = [
            {
                "label": "cat",
                "points": [[2, 2], [20, 2], [20, 16], [2, 16]],
                "shape_type": "polygon",
                "group_id": None,
            },
            {"label": "box", "points": [[30, 2], [40, 12]], "shape_type": "rectangle", "group_id": None},
            {"label": "ball", "points": [[50, 30], [54, 30]], "shape_type": "circle", "group_id": None},
            {"label": "wire", "points": [[2, 40], [30, 40]], "shape_type": "line", "group_id": None},
            {
                "label": "path",
                "points": [[2, 30], [10, 34], [20, 30]],
                "shape_type": "linestrip",
                "group_id": None,
            },
            {"label": "eye", "points": [[5, 5]], "shape_type": "point", "group_id": None},
            {
                "label": "car",
                "points": [[30, 30], [38, 30], [38, 36], [30, 36]],
                "shape_type": "polygon",
                "group_id": 1,
            },
            {
                "label": "car",
                "points": [[40, 38], [46, 38], [46, 44], [40, 44]],
                "shape_type": "polygon",
                "group_id": 1,
            },
            {
                "label": "car",
                "points": [[56, 2], [62, 2], [62, 8], [56, 8]],
                "shape_type": "polygon",
                "group_id": None,
            },
            {
                "label": "blob",
                "points": [[10, 20], [17, 25]],
                "shape_type": "mask",
                "mask": _png_b64(mask * 255),
                "group_id": None,
            },
            {
                "label": "tag",
                "points": [[50, 14], [58, 18], [56, 22], [48, 18]],
                "shape_type": "oriented_rectangle",
                "group_id": None,
            },
            {"label": "dots", "points": [[3, 44], [6, 45]], "shape_type": "points", "group_id": None},
        ]
        doc = {
            "version": "5.4.1",
            "flags": {},
            "shapes": shapes,
            "imagePath": f"../images/{stem}.png",
            "imageData": _png_b64(pixels) if embedded else None,
            "imageHeight": h,
            "imageWidth": w,
        }
        (root / "ann").mkdir(parents=True, exist_ok=True)
        (root / "ann" / f"{stem}.json").write_text(json.dumps(doc))
        out.append(doc)
    return out


def make_mask_folder(
    root: str | Path, seed: int = 0, size=(48, 64), fmt: str = "jsonl", copies: int = 1
) -> list[dict]:
    """Write ``images/``, ``masks/`` (binary, class-id and instance-id PNGs), ``classes.txt`` and
    ``queries.jsonl`` (or ``queries.csv``); ``copies`` > 1 repeats the 3 images (prefix ``c<k>_``) for
    benchmarks. Returns the query records."""
    root = Path(root)
    queries = []
    for c in range(copies):
        queries += _mask_folder_copy(root, seed + c, size, "" if c == 0 else f"c{c}_")
    if fmt == "jsonl":
        (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    else:
        import csv

        with open(root / "queries.csv", "w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=["image", "mask", "id", "query"])
            wr.writeheader()
            for q in queries:
                wr.writerow({"id": "", **q})
    return queries


def _mask_folder_copy(root: Path, seed: int, size, pre: str) -> list[dict]:
    h, w = size
    for i in range(3):
        _image(root / "images" / f"{pre}p{i}.jpg", h, w, seed * 10 + i)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    binary = np.zeros((h, w), np.uint8)
    binary[4:20, 4:30] = 255
    Image.fromarray(binary).save(root / "masks" / f"{pre}p0.png")
    classes = np.zeros((h, w), np.uint8)
    classes[:10, :] = 1  # sky
    classes[30:, 10:40] = 2  # road
    Image.fromarray(classes).save(root / "masks" / f"{pre}p1_classes.png")
    inst = np.zeros((h, w), np.uint16)
    inst[5:15, 5:15] = 7
    inst[20:40, 30:60] = 300  # instance ids beyond 8 bits
    Image.fromarray(inst).save(root / "masks" / f"{pre}p2_instances.png")
    (root / "classes.txt").write_text("background\nsky\nroad\nbuilding\n")
    p0, p1, p2 = f"{pre}p0", f"{pre}p1", f"{pre}p2"
    return [
        {"image": f"{p0}.jpg", "mask": f"{p0}.png", "query": "the thing you would sit on"},
        {"image": f"{p1}.jpg", "mask": f"{p1}_classes.png", "id": "sky", "query": ""},
        {"image": f"{p1}.jpg", "mask": f"{p1}_classes.png", "id": 2, "query": "where cars drive"},
        {"image": f"{p1}.jpg", "mask": f"{p1}_classes.png", "id": "building", "query": "the building"},
        {"image": f"{p2}.jpg", "mask": f"{p2}_instances.png", "id": 7, "query": "the small square"},
        {"image": f"{p2}.jpg", "mask": f"{p2}_instances.png", "id": 300, "query": "the large box"},
    ]
