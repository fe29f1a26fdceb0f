"""The reference decoding of REFER-family targets, straight from pycocotools (the REFER API's way).

Independent of ``data_builders``: what the builders write is compared with this.
"""

from __future__ import annotations

import numpy as np


def annotation_mask(seg, h: int, w: int) -> np.ndarray:
    """``(h, w)`` bool mask of one annotation's ``segmentation``, decoded as the REFER API does.

    Polygon lists: ``frPyObjects`` + ``merge`` + ``decode`` (polygons of fewer than 3 points are left
    out, as detectron2/ReLA filter them); a list of RLE dicts (refCLEF): ``decode`` of each part, summed
    over the last axis; a bare RLE dict: ``frPyObjects`` for list counts, then ``decode``.
    """
    from pycocotools import mask as mu

    if isinstance(seg, dict):
        rle = mu.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else dict(seg)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode()
        return mu.decode(rle).astype(bool)
    if not seg:
        return np.zeros((h, w), bool)
    if isinstance(seg[0], list):
        polys = [p for p in seg if len(p) >= 6]
        if not polys:
            return np.zeros((h, w), bool)
        return mu.decode(mu.merge(mu.frPyObjects(polys, h, w))).astype(bool)
    parts = []
    for r in seg:
        if isinstance(r["counts"], list):
            parts.append(mu.frPyObjects(r, h, w))
        else:
            parts.append({"size": r["size"], "counts": r["counts"].encode()})
    return mu.decode(parts).sum(axis=2) > 0


def target_mask(anns: list[dict], h: int, w: int, drop_crowd: bool = False) -> np.ndarray:
    """Union of the annotations' masks; ``drop_crowd``: leave ``iscrowd`` ones out (ReLA's gRefCOCO rule)."""
    out = np.zeros((h, w), bool)
    for a in anns:
        if drop_crowd and a.get("iscrowd"):
            continue
        out |= annotation_mask(a["segmentation"], h, w)
    return out
