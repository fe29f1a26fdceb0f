"""Helpers shared by builders: COCO RLE of masks, descriptor text, image sizes, safe relative paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from text4seg.data.records import check_image_size
from text4seg.descriptors import BACKGROUND, encode, mask_to_grid, normalize_label

from .base import BadInput


def empty_grid(grid: tuple[int, int]) -> np.ndarray:
    """An all-``others`` ``(rows, cols)`` grid (no target)."""
    return np.full(grid, BACKGROUND, dtype="<U6")


def descriptors_of_mask(mask: np.ndarray, label: str, grid: tuple[int, int], scheme: str) -> str:
    """Descriptor text (no tags) of a bool mask whose foreground is called ``label``."""
    return encode(mask_to_grid(mask, grid, labels=label), scheme)


PLACEHOLDER = "\x01"  # kept by normalize_label and by numpy str arrays; label_of() removes it from labels


def label_of(expression: str) -> str:
    """The descriptor label of a referring expression: the expression itself, normalised as
    :func:`text4seg.mask_to_grid` names a foreground (``others`` would be renamed ``others (class)``)."""
    n = normalize_label(str(expression).replace(PLACEHOLDER, " "))
    return "others (class)" if n == BACKGROUND else n


def descriptor_template(fg: np.ndarray, scheme: str) -> str:
    """Descriptor text of a ``(rows, cols)`` bool grid with :data:`PLACEHOLDER` as the foreground label.

    ``descriptor_template(fg, s).replace(PLACEHOLDER, label_of(expr))`` equals
    ``encode(mask_to_grid(fg, fg.shape, labels=expr), s)``: run boundaries do not depend on the label, so
    a ref's descriptors are encoded once for all its sentences.
    """
    return encode(np.where(fg, PLACEHOLDER, BACKGROUND), scheme)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, reading its header only; ``BadInput`` names a bad file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
        check_image_size(h, w, str(path))
        return w, h
    except FileNotFoundError:
        raise BadInput(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise BadInput(f"cannot read image {path}: {exc}") from None


def inside(root: Path, rel: str) -> Path:
    """``root / rel``, refusing a ``rel`` that escapes ``root`` lexically (absolute, or ``..`` above it).

    The check is on the path text: symbolic links inside the root (a common way to place COCO images) are
    followed as the user set them up.
    """
    rel = str(rel)
    norm = os.path.normpath(rel)
    if os.path.isabs(rel) or norm == ".." or norm.startswith(".." + os.sep) or "\x00" in rel:
        raise BadInput(f"path {rel!r} escapes the dataset root {root}")
    return Path(root) / norm
