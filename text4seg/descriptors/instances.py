"""Instance-numbered descriptors: several instances of a class in one grid, as ``"<name> <k>"`` labels.

The format
----------
Every instance gets the label ``"<name> <k>"``: its class name (normalised like any label, ``others``
renamed ``others (class)``), one space, and its number ``k`` (1, 2, ...) among the instances of that
class. The grid is then an ordinary label grid and is written by any scheme (``rrle``, ``compact``...).

Worked example (4 x 4 grid, two people and a dog)::

    person 1  person 1  others  person 2
    person 1  person 1  others  person 2        rrle: "person 1 *2| others *1| person 2 *1\\n ..."
    others    others    dog 1   dog 1
    others    others    dog 1   dog 1

Numbering order (deterministic, documented): instances are computed on the **grid** (what the answer
shows). A cell belongs to the instance whose pixel mask contains the pixel that PIL-nearest sampling reads
for that cell (:func:`text4seg.descriptors.mask_to_grid`'s geometry); when several do, the instance with
the smallest pixel area wins (it lies on top), ties by input order. Instances that own no cell are not
numbered (they are invisible in a grid of that size). The visible instances of a class are numbered by
the centroid of their **pixel** mask: by the grid row band of the centroid (``floor(cy * rows / H)``),
top to bottom, then by the centroid's x, left to right, then by its y, then by input order. So two
instances whose centres lie in the same grid row are numbered left to right.

Decoding: :func:`split_instances` reads the labels back: a label whose last word is a positive integer is
instance ``k`` of the class named by the words before it; any other label is one instance numbered 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from text4seg.descriptors import BACKGROUND, grid_shape, nearest_index, normalize_label


class Instance(NamedTuple):
    """One numbered instance: ``name``, number ``k`` (0 = unnumbered label), ``index`` into the input
    masks (-1 after decoding), and ``cells``: ``(rows, cols)`` bool grid of its cells."""

    name: str
    k: int
    index: int
    cells: np.ndarray

    @property
    def label(self) -> str:
        """``"<name> <k>"`` (``name`` alone for k = 0)."""
        return instance_label(self.name, self.k)


def instance_label(name: str, k: int) -> str:
    """``"<normalised name> <k>"``; ``k = 0`` gives the bare name."""
    n = normalize_label(name)
    n = "others (class)" if n == BACKGROUND else n
    return n if k == 0 else f"{n} {int(k)}"


def parse_instance_label(label: str) -> tuple[str, int]:
    """``"person 2" -> ("person", 2)``; a label without a trailing positive integer -> ``(label, 0)``."""
    head, sep, tail = label.rpartition(" ")
    if sep and head and tail.isdigit() and tail[0] != "0":
        return head, int(tail)
    return label, 0


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return (float(ys.mean()) + 0.5, float(xs.mean()) + 0.5) if ys.size else (0.0, 0.0)


def number_instances(
    masks: Sequence[np.ndarray], names: Sequence[str], size: int | tuple[int, int] = 16
) -> tuple[np.ndarray, list[Instance], list[int]]:
    """Number instances and paint them into one grid.

    Args:
        masks: ``(H, W)`` bool pixel masks, all the same shape (instances may overlap).
        names: class name of each mask.
        size: grid size, ``int`` or ``(rows, cols)``.

    Returns:
        ``(grid, instances, order)``: the ``(rows, cols)`` ``str`` grid with ``"<name> <k>"`` labels
        (``others`` elsewhere); the visible instances in label order (class by first appearance in
        ``names``, then ``k``); and ``order``, every input index ranked by the numbering key within its
        class, visible instances first (ground truth for instances too small for the grid can number
        them after the visible ones with it).
    """
    rows, cols = grid_shape(size)
    if len(masks) != len(names):
        raise ValueError(f"got {len(masks)} masks but {len(names)} names")
    if not masks:
        return np.full((rows, cols), BACKGROUND, dtype="<U6"), [], []
    shape = np.asarray(masks[0]).shape
    for i, m in enumerate(masks):
        if np.asarray(m).shape != shape or np.asarray(m).ndim != 2:
            raise ValueError(f"mask {i} has shape {np.asarray(m).shape}; expected {shape} like mask 0")
    h, w = shape
    ri, ci = nearest_index(h, rows), nearest_index(w, cols)
    areas = [int(np.count_nonzero(m)) for m in masks]
    owner = np.full((rows, cols), -1, dtype=np.int64)
    # paint the largest first, so the smallest (on top) wins a shared cell; stable: ties keep input order
    for i in sorted(range(len(masks)), key=lambda j: (-areas[j], -j)):
        owner[np.asarray(masks[i], dtype=bool)[np.ix_(ri, ci)]] = i
    visible = set(np.unique(owner[owner >= 0]).tolist())
    keys = {}
    for i, m in enumerate(masks):
        cy, cx = _centroid(np.asarray(m, dtype=bool))
        keys[i] = (i not in visible, int(cy * rows // h), cx, cy, i)
    classes = list(dict.fromkeys(instance_label(n, 0) for n in names))
    order: list[int] = []
    instances: list[Instance] = []
    labels = np.full(len(masks), BACKGROUND, dtype=object)
    for cname in classes:
        members = sorted((i for i, n in enumerate(names) if instance_label(n, 0) == cname), key=keys.get)
        order.extend(members)
        for k, i in enumerate((i for i in members if i in visible), start=1):
            labels[i] = instance_label(cname, k)
            instances.append(Instance(cname, k, i, owner == i))
    grid = np.full((rows, cols), BACKGROUND, dtype=object)
    grid[owner >= 0] = labels[owner[owner >= 0]]
    return grid.astype(str), instances, order


def split_instances(grid: np.ndarray) -> list[Instance]:
    """The instances of a decoded grid: one per distinct non-``others`` label, in label order (class by
    first appearance row-major, then ``k``). ``index`` is -1; ``cells`` is a ``(rows, cols)`` bool grid."""
    g = np.asarray(grid)
    if g.ndim != 2:
        raise ValueError(f"expected a 2-D grid of labels, got shape {g.shape}")
    labels = list(dict.fromkeys(x for x in g.ravel().tolist() if x != BACKGROUND))
    parsed = [(parse_instance_label(lab), lab) for lab in labels]
    first = {}
    for (name, _), _lab in parsed:
        first.setdefault(name, len(first))
    parsed.sort(key=lambda p: (first[p[0][0]], p[0][1]))
    return [Instance(name, k, -1, g == lab) for (name, k), lab in parsed]


def instance_masks(grid: np.ndarray, height: int, width: int) -> list[tuple[str, int, np.ndarray]]:
    """``[(name, k, (height, width) bool mask), ...]`` of a decoded grid (PIL-nearest upsampling, as
    :func:`text4seg.descriptors.grid_to_mask`)."""
    if height < 1 or width < 1:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    out = []
    for inst in split_instances(grid):
        rows, cols = inst.cells.shape
        up = inst.cells[np.ix_(nearest_index(rows, int(height)), nearest_index(cols, int(width)))]
        out.append((inst.name, inst.k, up))
    return out


__all__ = [
    "Instance",
    "instance_label",
    "instance_masks",
    "number_instances",
    "parse_instance_label",
    "split_instances",
]
