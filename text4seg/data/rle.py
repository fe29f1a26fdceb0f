"""COCO run-length encoding (RLE) of binary masks: the one pair of helpers of the whole project.

JSON form (what built rows store in ``text4seg.gt.masks`` and results files in ``coarse``/``refined``)::

    {"size": [height, width], "counts": "<compressed string>"}

``counts`` is pycocotools' compressed string (column-major runs, starting with background) as ``str``.
Worked example: the 2 x 3 mask ``[[0, 1, 1], [0, 1, 0]]`` read column-major is ``0 0 1 1 1 0``: runs
``[2, 3, 1]`` (background first), which pycocotools compresses to ``{"size": [2, 3], "counts": "231"}``.
:func:`rle_to_mask` also accepts ``bytes`` counts and uncompressed ``list`` counts (the form COCO uses
for crowd annotations).
pycocotools is imported lazily (extra ``data``).
"""

from __future__ import annotations

import numpy as np

from text4seg._lazy import require


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO RLE ``{"size": [h, w], "counts": str}`` of an ``(H, W)`` bool mask (pycocotools)."""
    mask_util = require("pycocotools.mask")
    m = np.asfortranarray(np.asarray(mask, dtype=np.uint8))
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) mask, got shape {m.shape}")
    return rle_to_json(mask_util.encode(m))


def rle_to_mask(rle: dict) -> np.ndarray:
    """``(H, W)`` bool mask of a COCO RLE (``counts`` as ``str``, ``bytes`` or an uncompressed list)."""
    mask_util = require("pycocotools.mask")
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"expected a COCO RLE dict with 'size' and 'counts', got {str(rle)[:80]!r}")
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        obj = mask_util.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        obj = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_util.decode(obj).astype(bool)


def rle_to_json(rle: dict) -> dict:
    """``{"size": [h, w], "counts": str}`` of a pycocotools RLE (``bytes`` counts become ``str``)."""
    c = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": c.decode("ascii") if isinstance(c, bytes) else c,
    }
