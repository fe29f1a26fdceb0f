"""COCO ``instances.json`` index and fast, exact mask sampling from COCO RLE.

Masks stay in COCO's compressed RLE (pycocotools ``frPyObjects`` + ``merge``: polygons, uncompressed and
compressed RLE alike). For the grid we never decode the full-resolution mask: the RLE counts are decoded
with numpy and only the ``rows x cols`` pixels that PIL's nearest resize reads are looked up
(:func:`sample_rle`). The result is the same as ``mask_to_grid(pycocotools.mask.decode(rle))`` by
construction (same RLE, same sample points); ``benchmarks/builders.py`` checks it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from text4seg._lazy import require
from text4seg.descriptors import nearest_index

from .base import BadInput


class CocoIndex:
    """``images[id] = (file_name, height, width)``, ``anns[id] = (image_id, segmentation)``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise FileNotFoundError(f"annotation file not found: {self.path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"corrupt annotation file {self.path}: {exc}") from None
        try:
            self.images = {
                im["id"]: (im["file_name"], int(im["height"]), int(im["width"])) for im in data["images"]
            }
            self.anns = {a["id"]: (a["image_id"], a["segmentation"]) for a in data["annotations"]}
            self.categories = {c["id"]: c["name"] for c in data.get("categories", [])}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{self.path} is not a COCO instances file (missing or bad {exc})") from None

    def image(self, image_id) -> tuple[str, int, int]:
        try:
            return self.images[image_id]
        except KeyError:
            raise BadInput(f"image id {image_id!r} is not in {self.path}") from None

    def segmentation(self, ann_id):
        try:
            return self.anns[ann_id][1]
        except KeyError:
            raise BadInput(f"annotation id {ann_id!r} is not in {self.path}") from None


def rle_of_segmentations(segs: list, h: int, w: int, where: str = "") -> dict:
    """Union of COCO segmentations (polygon lists or RLE dicts) as one compressed RLE (bytes counts).

    An empty list gives the all-zero mask. ``BadInput`` (naming ``where``) on malformed input.
    """
    mu = require("pycocotools.mask")
    rles = []
    try:
        for seg in segs:
            if isinstance(seg, list):
                polys = [p for p in seg if len(p) >= 6]
                if polys:
                    rles.extend(mu.frPyObjects(polys, h, w))
            elif isinstance(seg, dict):
                if isinstance(seg.get("counts"), list):
                    rles.append(mu.frPyObjects(seg, h, w))
                else:
                    c = seg["counts"]
                    rles.append(
                        {"size": list(seg["size"]), "counts": c.encode() if isinstance(c, str) else c}
                    )
            else:
                raise TypeError(f"segmentation of type {type(seg).__name__}")
        if not rles:
            return mu.frPyObjects({"size": [h, w], "counts": [h * w]}, h, w)
        return rles[0] if len(rles) == 1 else mu.merge(rles, intersect=False)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise BadInput(f"bad segmentation {where}: {exc}") from None


def rle_counts(counts: bytes | str) -> np.ndarray:
    """Decode COCO's compressed RLE string into run lengths (int64), vectorised (pycocotools' format)."""
    s = np.frombuffer(counts.encode() if isinstance(counts, str) else counts, np.uint8).astype(np.int64) - 48
    if s.size == 0:
        return np.zeros(0, np.int64)
    more = (s & 0x20) != 0
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    value_of = np.repeat(np.arange(ends.size), ends - starts + 1)
    pos = np.arange(s.size) - starts[value_of]
    x = np.add.reduceat((s & 0x1F) << (5 * pos), starts)
    neg = (s[ends] & 0x10) != 0
    x[neg] |= -1 << (5 * (pos[ends][neg] + 1))
    # delta coding: counts[m] = x[m] + counts[m - 2] for m > 2
    out = x.copy()
    out[2::2] = np.cumsum(x[2::2])
    out[1::2] = np.cumsum(x[1::2])
    return out


def sample_rle(rle: dict, rows: int, cols: int) -> np.ndarray:
    """The ``(rows, cols)`` bool grid PIL-nearest reads from the mask of ``rle`` (no full decode)."""
    h, w = int(rle["size"][0]), int(rle["size"][1])
    cum = np.cumsum(rle_counts(rle["counts"]))
    idx = nearest_index(w, cols)[None, :] * h + nearest_index(h, rows)[:, None]  # column-major
    return (np.searchsorted(cum, idx, side="right") & 1).astype(bool)
