"""Pixel masks and label maps <-> grids of text labels (semantic descriptors).

Geometry
--------
A grid has ``rows x cols`` cells (``size=16`` means 16 x 16; ``size=(rows, cols)`` is rectangular) and
always describes the **whole** image; aspect ratio is not preserved, exactly as the published Text4Seg
data were made.

* ``sampler="nearest"`` (default) picks, for every cell, the pixel that
  ``PIL.Image.resize((cols, rows), Image.NEAREST)`` picks. We obtain PIL's index vectors once per
  ``(length, cells)`` pair by resizing an integer ramp with PIL itself, so the result is identical to
  PIL's by construction, and sampling a ``480 x 640`` mask costs one fancy-index of 256 cells.
* ``sampler="any"`` keeps small objects: a cell is foreground if any pixel of its footprint is, and a
  multi-label cell takes its most frequent foreground label. ``sampler="majority"`` takes the most
  frequent label of the footprint, background included. A cell's footprint is the set of pixels that
  :func:`grid_to_mask` paints with that cell (the same PIL nearest geometry in the other direction), so
  the two directions are inverse: ``grid_to_mask(mask_to_grid(m))`` is ``m`` for any mask that is
  constant on footprints. ``benchmarks/codec.py`` prints how many small objects each sampler loses.

Labels
------
``others`` is the background word. In an integer label map, ``ignore_index`` (255) pixels and ids with no
name are background. Names are normalised with :func:`text4seg.descriptors.core.normalize_label`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

from text4seg.descriptors.core import BACKGROUND, Size, grid_shape, normalize_label

SAMPLERS = ("nearest", "any", "majority")


@lru_cache(maxsize=512)
def nearest_index(src: int, dst: int) -> np.ndarray:
    """Index into ``src`` samples that PIL's NEAREST resize from ``src`` to ``dst`` samples reads.

    Returns an int64 array of shape ``(dst,)`` (read-only, cached).
    """
    if src >= 2**31 - 1:
        raise ValueError(f"image side {src} too large")
    ramp = Image.fromarray(np.arange(src, dtype=np.int32)[None, :], mode="I")
    idx = np.asarray(ramp.resize((dst, 1), Image.NEAREST), dtype=np.int64)[0]
    idx.setflags(write=False)
    return idx


# How a grid is painted back onto pixels. "pil": PIL's NEAREST (centre sampling), the inverse of how the
# data were made (the default). "official": torch.nn.functional.interpolate(mode="nearest") (floor
# sampling), what the official Text4Seg evaluation uses; the two differ by up to one cell on sides that
# are not multiples of the grid, so published raw (no-SAM) numbers are reproduced with "official".
GEOMETRIES = ("pil", "official")


@lru_cache(maxsize=512)
def floor_index(src: int, dst: int) -> np.ndarray:
    """Index into ``src`` samples that ``F.interpolate(mode="nearest")`` reads for ``dst`` outputs.

    torch computes ``min(floor(i * scale), src - 1)`` in float32 with ``scale = src / dst`` (float32);
    the same arithmetic here, so the result equals torch's (tested). int64 ``(dst,)``, read-only, cached.
    """
    scale = np.float32(src) / np.float32(dst)
    idx = np.floor(np.arange(dst, dtype=np.float32) * scale).astype(np.int64)
    np.minimum(idx, src - 1, out=idx)
    idx.setflags(write=False)
    return idx


def _check_geometry(geometry: str) -> None:
    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown geometry {geometry!r}; choose one of {GEOMETRIES}")


def resize_nearest(arr: np.ndarray, height: int, width: int, geometry: str = "pil") -> np.ndarray:
    """Nearest resize of any 2-D array to ``(height, width)`` (``geometry``: see :data:`GEOMETRIES`),
    gathering the smaller side first."""
    _check_geometry(geometry)
    index = nearest_index if geometry == "pil" else floor_index
    ridx, cidx = index(arr.shape[0], height), index(arr.shape[1], width)
    arr = arr if isinstance(arr, np.ndarray) else np.asarray(arr)  # ndarray.take: no np.take wrapper
    if height <= arr.shape[0]:
        return arr.take(ridx, axis=0).take(cidx, axis=1)
    return arr.take(cidx, axis=1).take(ridx, axis=0)


def _as_map(mask_or_label_map: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask_or_label_map)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D mask or label map (H, W), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"empty mask of shape {arr.shape}")
    return arr


def _name_table(arr: np.ndarray, labels, ignore_index: int | None) -> tuple[np.ndarray, list[str]]:
    """Map the map's values to dense codes; code 0 is background. Returns (codes HxW int, names)."""
    if arr.dtype == bool:
        name = "object" if labels is None else labels
        if not isinstance(name, str):
            raise ValueError(f"a boolean mask takes one label string, got labels={labels!r}")
        return arr.astype(np.int64), [BACKGROUND, _fg_name(name)]
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"label map must be bool or integer, got dtype {arr.dtype}")
    values, inverse = np.unique(arr, return_inverse=True)
    names: list[str] = []
    for v in values.tolist():
        names.append(_lookup(v, labels, ignore_index))
    # Collapse duplicate names (several ids may map to the same word, e.g. background).
    uniq = [BACKGROUND]
    pos = {BACKGROUND: 0}
    remap = np.empty(len(names), dtype=np.int64)
    for i, n in enumerate(names):
        if n not in pos:
            pos[n] = len(uniq)
            uniq.append(n)
        remap[i] = pos[n]
    return remap[inverse.reshape(arr.shape)], uniq


def _fg_name(name: str) -> str:
    """Normalise a foreground name; a foreground class literally called ``others`` is renamed."""
    n = normalize_label(name)
    return "others (class)" if n == BACKGROUND else n


def _lookup(value: int, labels, ignore_index: int | None) -> str:
    if ignore_index is not None and value == ignore_index:
        return BACKGROUND
    if labels is None:
        return BACKGROUND if value == 0 else str(value)
    if isinstance(labels, str):
        return BACKGROUND if value == 0 else _fg_name(labels)
    if isinstance(labels, Mapping):
        name = labels.get(value)
    elif isinstance(labels, Sequence):
        name = labels[value] if 0 <= value < len(labels) else None
    else:
        raise ValueError(f"labels must be a str, a sequence or a mapping, got {type(labels).__name__}")
    if name is None or name == BACKGROUND:
        return BACKGROUND
    return _fg_name(name)


def _footprint_codes(codes: np.ndarray, rows: int, cols: int) -> np.ndarray:
    h, w = codes.shape
    rcell = nearest_index(rows, h)  # pixel row -> cell row
    ccell = nearest_index(cols, w)
    return rcell[:, None] * cols + ccell[None, :]


def mask_to_grid(
    mask_or_label_map: np.ndarray,
    size: Size = 16,
    labels: str | Sequence[str | None] | Mapping[int, str] | None = None,
    *,
    sampler: str = "nearest",
    ignore_index: int | None = 255,
) -> np.ndarray:
    """Sample a mask or label map to a grid of text labels.

    Args:
        mask_or_label_map: ``(H, W)`` bool mask, or integer label map (any int dtype).
        size: grid size, ``int`` or ``(rows, cols)``.
        labels: for a bool mask, the name of ``True`` (default ``"object"``); for a label map, a sequence
            indexed by id or a ``{id: name}`` mapping (ids without a name, ``None`` names and id
            ``ignore_index`` are background). ``None``: id 0 is background, other ids keep their number.
        sampler: one of ``"nearest"`` (PIL-exact, default), ``"any"``, ``"majority"``.
        ignore_index: label-map value treated as background (255 by convention); ``None`` disables it.

    Returns:
        ``(rows, cols)`` numpy array of ``str`` (dtype ``<U``), background cells ``"others"``.
    """
    rows, cols = grid_shape(size)
    arr = _as_map(mask_or_label_map)
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if sampler == "nearest":
        h, w = arr.shape
        arr = resize_nearest(arr, rows, cols)
        codes, names = _name_table(arr, labels, ignore_index)
    else:
        codes, names = _name_table(arr, labels, ignore_index)
        k = len(names)
        cell = _footprint_codes(codes, rows, cols)
        counts = np.bincount((cell * k + codes).ravel(), minlength=rows * cols * k).reshape(rows * cols, k)
        if sampler == "any" and k > 1:
            fg = counts[:, 1:]
            codes = np.where(fg.max(axis=1) > 0, fg.argmax(axis=1) + 1, 0)
        else:
            codes = counts.argmax(axis=1)
        codes = codes.reshape(rows, cols)
    return np.asarray(names, dtype=str)[codes]


def grid_to_label_map(
    grid: np.ndarray, height: int, width: int, geometry: str = "pil"
) -> tuple[np.ndarray, list[str]]:
    """Paint a grid onto an ``(height, width)`` image with PIL-nearest geometry (``geometry="official"``:
    the official evaluation's floor sampling, see :data:`GEOMETRIES`).

    Returns ``(label_map, names)``: an int32 map where 0 is ``others`` and ``k`` is ``names[k]``
    (``names[0] == "others"``, the rest in order of first appearance, row-major).
    """
    g = np.asarray(grid)
    if g.ndim != 2:
        raise ValueError(f"expected a 2-D grid of labels, got shape {g.shape}")
    flat = g.ravel().tolist()
    pos = {BACKGROUND: 0}
    names = [BACKGROUND]
    codes = np.empty(len(flat), dtype=np.int32)
    for i, lab in enumerate(flat):
        c = pos.get(lab)
        if c is None:
            c = pos[lab] = len(names)
            names.append(lab)
        codes[i] = c
    codes = codes.reshape(g.shape)
    up = resize_nearest(codes, int(height), int(width), geometry)
    return up, names


def grid_to_mask(
    grid: np.ndarray, height: int, width: int, label: str | None = None, geometry: str = "pil"
) -> np.ndarray:
    """Binary ``(height, width)`` bool mask of a grid, PIL-nearest geometry (inverse of sampling;
    ``geometry="official"``: the official evaluation's, see :data:`GEOMETRIES`).

    ``label=None``: every non-``others`` cell is foreground (the published evaluation's convention);
    otherwise only cells equal to ``label``. An all-``others`` grid gives an all-False mask (no target).
    """
    g = np.asarray(grid)
    if g.ndim != 2:
        raise ValueError(f"expected a 2-D grid of labels, got shape {g.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    fg = g != BACKGROUND if label is None else g == label
    return resize_nearest(fg, int(height), int(width), geometry)


def grid_labels(grid: np.ndarray) -> list[str]:
    """Distinct non-background labels of a grid, in row-major order of first appearance."""
    seen: dict[str, None] = {}
    for lab in np.asarray(grid).ravel().tolist():
        if lab != BACKGROUND:
            seen.setdefault(lab, None)
    return list(seen)
