"""COCO ``instances.json`` index, every segmentation form of the REFER files, fast exact grid sampling.

Segmentation forms (one annotation's ``segmentation``; :func:`segmentation_rles`)::

    [[x0, y0, x1, y1, ...], ...]                    polygons (COCO, refCOCO/+/g, gRefCOCO, part of refCLEF)
    [{"size": [h, w], "counts": "..."}, ...]        a list of RLE dicts (refCLEF: the REFER API decodes
                                                    them and sums over the parts)
    {"size": [h, w], "counts": [n0, n1, ...]}       a bare RLE dict (COCO crowd annotations: uncompressed)
    {"size": [h, w], "counts": "..."}               a bare compressed RLE dict
    []                                              no region

Anything else is a bad annotation (``BadInput`` naming the file and the annotation id).

Masks stay in COCO's compressed RLE (pycocotools ``frPyObjects`` + ``merge``: polygons, uncompressed and
compressed RLE alike). For the grid we never decode the full-resolution mask: the RLE counts are decoded
with numpy and only the ``rows x cols`` pixels that PIL's nearest resize reads are looked up
(:func:`sample_rle`). The result is the same as ``mask_to_grid(pycocotools.mask.decode(rle))`` by
construction (same RLE, same sample points); ``benchmarks/builders.py`` checks it.
"""

from __future__ import annotations

import math
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from text4seg._lazy import require
from text4seg.data.images import check_image_size
from text4seg.descriptors import nearest_index

from .base import BadInput


class CocoIndex:
    """``images[id] = (file_name, height, width)``, ``anns[id] = (image_id, segmentation, iscrowd)``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._sizes: set[tuple[int, int]] = set()  # (height, width) pairs found in range
        from .common import load_json

        data = load_json(self.path)
        try:
            self.images = {
                im["id"]: (im["file_name"], int(im["height"]), int(im["width"])) for im in data["images"]
            }
            self.anns = {
                a["id"]: (a["image_id"], a["segmentation"], bool(a.get("iscrowd", 0)))
                for a in data["annotations"]
            }
            self.categories = {c["id"]: c["name"] for c in data.get("categories", [])}
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(
                f"{self.path} is not a COCO instances file (missing or bad {type(exc).__name__}: {exc})"
            ) from None

    def image(self, image_id) -> tuple[str, int, int]:
        try:
            return self.images[image_id]
        except KeyError:
            raise BadInput(
                f"image id {image_id!r} is not in {self.path}", cause="missing_image_record"
            ) from None

    def _ann(self, ann_id) -> tuple:
        try:
            return self.anns[ann_id]
        except (KeyError, TypeError):
            raise BadInput(
                f"annotation id {ann_id!r} is not in {self.path}", cause="missing_annotation"
            ) from None

    def segmentation(self, ann_id):
        return self._ann(ann_id)[1]

    def is_crowd(self, ann_id) -> bool:
        return self._ann(ann_id)[2]

    def rle(self, ann_ids: list, h: int, w: int) -> dict:
        """Union of the annotations ``ann_ids`` as one compressed RLE (``BadInput`` names the bad one)."""
        if (h, w) not in self._sizes:  # checked once per distinct size
            _check_size(h, w, f"{self.path}: image of annotation(s) {ann_ids}")
            self._sizes.add((h, w))
        rles = []
        for a in ann_ids:
            try:
                rles.extend(segmentation_rles(self.segmentation(a), h, w))
            except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
                if isinstance(exc, BadInput):
                    raise
                raise BadInput(
                    f"bad segmentation of annotation {a!r} in {self.path}: {exc}",
                    cause=getattr(exc, "cause", "bad_segmentation"),
                ) from None
        return union_rle(rles, h, w)


@cache
def mask_api():
    """``pycocotools.mask``, imported once (an ``ImportError`` naming the extra to install if missing)."""
    return require("pycocotools.mask")


def _rle_of_dict(seg: dict, h: int, w: int) -> dict:
    """One RLE dict (``counts`` compressed str/bytes or an uncompressed list) as a pycocotools RLE."""
    mu = mask_api()
    if "counts" not in seg or "size" not in seg:
        raise ValueError(f"RLE dict without 'size' and 'counts' (keys: {sorted(seg)})")
    size = [int(v) for v in seg["size"]]
    if size != [h, w]:
        raise SegmentationError(f"RLE size {size} differs from the image size {[h, w]}", "rle_size_mismatch")
    c = seg["counts"]
    if isinstance(c, list):
        if not _numbers(c, (int,)) or (c and min(c) < 0):
            raise SegmentationError(
                f"uncompressed RLE counts {str(c)[:60]} are not non-negative ints", "rle_bad_counts"
            )
        if sum(c) != h * w:
            raise SegmentationError(
                f"uncompressed RLE counts sum to {sum(c)}, not height*width = {h * w}", "rle_bad_counts"
            )
        return mu.frPyObjects({"size": size, "counts": c}, h, w)
    if not isinstance(c, (str, bytes)):
        raise ValueError(f"RLE counts of type {type(c).__name__}; expected a string or a list of ints")
    try:
        rle = {"size": size, "counts": c.encode("ascii") if isinstance(c, str) else c}
    except UnicodeEncodeError:
        raise SegmentationError("compressed RLE counts are not ASCII", "rle_bad_counts") from None
    runs = rle_counts(rle["counts"])
    if (runs < 0).any():
        raise SegmentationError("compressed RLE has negative run lengths", "rle_bad_counts")
    total = int(runs.sum())
    if total != h * w:
        raise SegmentationError(
            f"compressed RLE counts sum to {total}, not height*width = {h * w}", "rle_bad_counts"
        )
    return rle


class SegmentationError(ValueError):
    """A bad segmentation, with the ``cause`` the build report counts it under (``bad_causes``)."""

    def __init__(self, message: str, cause: str = "bad_segmentation"):
        super().__init__(message)
        self.cause = cause


POLYGON_MARGIN = 1.0  # coordinates may lie this many image sides outside the image (clipped by raster)


def _numbers(values: list, kinds: tuple[type, ...]) -> bool:
    """Whether every item of ``values`` is an instance of ``kinds`` and none is a ``bool``: one C-level pass
    over the items' exact types (what JSON gives), the per-item check only for other types (subclasses)."""
    types = set(map(type, values))
    if types <= set(kinds):
        return True
    return all(isinstance(v, kinds) and not isinstance(v, bool) for v in values)


def _checked_polygon(p: list, h: int, w: int) -> list | np.ndarray:
    """A polygon's numbers, checked: numbers (not bools or strings), finite, within :data:`POLYGON_MARGIN`
    image sides of the image (pycocotools allocates by the coordinates' range: NaN or 1e12 exhaust memory),
    even in length. Returns ``p`` itself when it passes (pycocotools reads the list as is); the checks run
    over the whole list in C (``sum``, ``min``, ``max``), the detailed numpy pass only to word an error."""
    if len(p) % 2 or not _numbers(p, (int, float)):
        raise SegmentationError(f"polygon {str(p)[:60]} is not an even-length list of numbers", "bad_polygon")
    try:
        # a NaN or an infinity makes the sum non-finite; with every value finite, min and max are exact
        if p and math.isfinite(sum(p)):
            xs, ys = p[0::2], p[1::2]
            mx, my = POLYGON_MARGIN * w, POLYGON_MARGIN * h
            if min(xs) >= -mx and max(xs) <= w + mx and min(ys) >= -my and max(ys) <= h + my:
                return p
    except OverflowError:  # an int beyond float range: the numpy pass words the error
        pass
    return _polygon_array(p, h, w)


def _polygon_array(p: list, h: int, w: int) -> np.ndarray:
    """:func:`_checked_polygon`'s numpy pass: the polygon as a float64 array, or the error naming what is
    wrong (NaN/infinity, coordinates far outside the image)."""
    xy = np.asarray(p, np.float64)
    if not np.isfinite(xy).all():
        raise SegmentationError(
            f"polygon {str(p)[:60]} has NaN or infinite coordinates", "polygon_not_finite"
        )
    xs, ys = xy[0::2], xy[1::2]
    mx, my = POLYGON_MARGIN * w, POLYGON_MARGIN * h
    if xs.size and (xs.min() < -mx or xs.max() > w + mx or ys.min() < -my or ys.max() > h + my):
        raise SegmentationError(
            f"polygon {str(p)[:60]} reaches far outside the {h}x{w} image "
            f"(x {xs.min():g}..{xs.max():g}, y {ys.min():g}..{ys.max():g})",
            "polygon_out_of_range",
        )
    return xy


def segmentation_rles(seg, h: int, w: int) -> list[dict]:
    """The pycocotools RLEs of one annotation's ``segmentation``, in every form the REFER files use.

    * a list of polygons ``[[x0, y0, x1, y1, ...], ...]`` (COCO, refCOCO*, part of refCLEF); polygons with
      fewer than 3 points (< 6 numbers) have no area and are left out, as detectron2/ReLA do;
    * a list of RLE dicts ``[{"size": [h, w], "counts": ...}, ...]`` (refCLEF: the REFER API decodes them
      with ``mask.decode`` and sums over the parts);
    * a bare RLE dict (COCO crowd annotations: uncompressed ``list`` counts; or compressed counts);
    * ``[]``: no region (the caller decides whether that is a problem).

    RLE counts may be compressed (``str``/``bytes``) or uncompressed (``list``); an RLE's ``size`` must be
    the image's ``[h, w]`` and its counts must cover ``h * w`` pixels. Anything else raises ``ValueError``
    describing the problem (the caller adds the file and annotation id).
    """
    mu = mask_api()
    if isinstance(seg, dict):
        return [_rle_of_dict(seg, h, w)]
    if not isinstance(seg, list):
        raise ValueError(
            f"segmentation of type {type(seg).__name__}; expected polygon lists, a list of RLE dicts "
            "or an RLE dict"
        )
    if not seg:
        return []
    if all(isinstance(p, dict) for p in seg):
        return [_rle_of_dict(p, h, w) for p in seg]
    if all(isinstance(p, list) for p in seg):
        polys = [_checked_polygon(p, h, w) for p in seg]
        # fewer than 3 points: no area, left out (as detectron2/ReLA do); an annotation left with no
        # polygon, or whose polygons lie outside the image, has an empty mask, which the empty-target
        # policy of the build counts (empty_target) and keeps, drops or fails on (data_builders.base)
        polys = [p for p in polys if len(p) >= 6]
        if not polys:
            return []
        return mu.frPyObjects(polys, h, w)
    kinds = sorted({type(p).__name__ for p in seg})
    raise ValueError(
        f"segmentation list of {'/'.join(kinds)}; expected polygon lists (lists of numbers) or RLE dicts"
    )


def union_rle(rles: list[dict], h: int, w: int) -> dict:
    """Union of pycocotools RLEs as one compressed RLE; the all-zero ``h x w`` mask for ``[]``."""
    mu = mask_api()
    if not rles:
        return mu.frPyObjects({"size": [h, w], "counts": [h * w]}, h, w)
    return rles[0] if len(rles) == 1 else mu.merge(rles, intersect=False)


def rle_of_segmentations(segs: list, h: int, w: int, where: str = "") -> dict:
    """Union of COCO segmentations (each in any form :func:`segmentation_rles` reads) as one compressed RLE.

    An empty list gives the all-zero mask. ``BadInput`` (naming ``where``) on malformed input.
    """
    _check_size(h, w, where)
    rles = []
    try:
        for seg in segs:
            rles.extend(segmentation_rles(seg, h, w))
        return union_rle(rles, h, w)
    except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
        if isinstance(exc, BadInput):
            raise
        raise BadInput(
            f"bad segmentation {where}: {exc}", cause=getattr(exc, "cause", "bad_segmentation")
        ) from None


def _check_size(h, w, where: str) -> None:
    try:
        check_image_size(h, w, where)
    except ValueError as exc:
        raise BadInput(str(exc), cause="bad_image_size") from None


def rle_area(rle: dict) -> int:
    """Foreground pixel count of a compressed RLE (no decode)."""
    return int(rle_counts(rle["counts"])[1::2].sum())


def rle_counts(counts: bytes | str) -> np.ndarray:
    """Decode COCO's compressed RLE string into run lengths (int64), vectorised (pycocotools' format)."""
    s = np.frombuffer(counts.encode() if isinstance(counts, str) else counts, np.uint8)
    if s.size == 0:
        return np.zeros(0, np.int64)
    s = s.astype(np.int64)
    s -= 48
    cont = s & 0x20  # continuation bit: another character of the same value follows
    if cont[-1]:
        raise ValueError("compressed RLE counts end inside a value (truncated string)")
    ends = np.flatnonzero(cont == 0)  # the last character of each value
    if ends.size == s.size:  # every value one character: 5 bits, bit 4 the sign
        x = s & 0x1F
        x -= (s & 0x10) << 1
    else:
        first = np.empty(s.size, bool)  # the first character of each value
        first[0] = True
        first[1:] = cont[:-1] == 0
        starts = np.flatnonzero(first)
        pos = np.arange(s.size)  # position of each character within its value
        pos -= np.repeat(starts, ends - starts + 1)
        x = np.add.reduceat((s & 0x1F) << (5 * pos), starts)
        # the last character's bit 4 is the sign: subtract 2**(5 * characters) (two's complement)
        x -= ((s[ends] & 0x10) << 1) << (5 * pos[ends])
    # delta coding: counts[m] = x[m] + counts[m - 2] for m > 2
    x[2::2] = np.cumsum(x[2::2])
    x[1::2] = np.cumsum(x[1::2])
    return x


@lru_cache(maxsize=256)
def _sample_points(h: int, w: int, rows: int, cols: int) -> np.ndarray:
    """Column-major pixel indices of the ``rows x cols`` points PIL's nearest resize reads (read-only)."""
    idx = nearest_index(w, cols)[None, :] * h + nearest_index(h, rows)[:, None]
    idx.setflags(write=False)
    return idx


def sample_rle(rle: dict, rows: int, cols: int) -> np.ndarray:
    """The ``(rows, cols)`` bool grid PIL-nearest reads from the mask of ``rle`` (no full decode)."""
    h, w = int(rle["size"][0]), int(rle["size"][1])
    cum = rle_counts(rle["counts"]).cumsum()
    return (cum.searchsorted(_sample_points(h, w, rows, cols), side="right") & 1).astype(bool)
