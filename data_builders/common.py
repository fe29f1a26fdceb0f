"""Helpers shared by builders: COCO RLE of masks, descriptor text, image sizes, safe relative paths."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np

from text4seg.data.images import check_image_size
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


def image_size(path: Path, where: str = "") -> tuple[int, int]:
    """``(width, height)`` of an image file from its header only (:func:`text4seg.data.images.image_size`:
    regular files only, the pixel limit); ``BadInput`` names the file (and ``where``, the record)."""
    from text4seg.data.images import image_size as header_size

    pre = f"{where}: " if where else ""
    try:
        return header_size(path)
    except FileNotFoundError:
        raise BadInput(f"{pre}image not found: {path}", cause="image_not_found") from None
    except (ValueError, OSError) as exc:
        raise BadInput(f"{pre}{exc}", cause="bad_image") from None


def claimed_size(height, width, where: str) -> tuple[int, int]:
    """An annotation's claimed ``(height, width)`` as ints in range (``BadInput`` naming ``where`` for NaN,
    infinity, a list, a string, ``None`` or a size over the pixel limit)."""
    try:
        return check_image_size(height, width, where)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadInput(str(exc), cause="bad_image_size") from None


def checked_size(path: Path, height, width, where: str) -> tuple[int, int]:
    """``(height, width)`` claimed by an annotation, checked against the header of the image at ``path``:
    an annotation file must not decide how much memory a sample takes (a 1 KB JSON claiming 16384 x 16384
    for a 48 x 64 image). ``BadInput`` names ``where`` (file and record) and both sizes."""
    h, w = claimed_size(height, width, where)
    iw, ih = image_size(path, where)
    if (ih, iw) != (h, w):
        raise BadInput(
            f"{where}: claims height x width {h}x{w} but the image {path} is {ih}x{iw}", cause="size_mismatch"
        )
    return h, w


MAX_SAMPLE_PIXELS = int(os.environ.get("TEXT4SEG_MAX_SAMPLE_PIXELS") or 2**30)


def check_sample_pixels(n_masks: int, height: int, width: int, where: str) -> None:
    """Bound what one sample may allocate: ``n_masks`` full-resolution masks of ``height x width`` at most
    :data:`MAX_SAMPLE_PIXELS` (``2**30``, env ``TEXT4SEG_MAX_SAMPLE_PIXELS``) pixels in all."""
    total = int(n_masks) * int(height) * int(width)
    if total > MAX_SAMPLE_PIXELS:
        raise BadInput(
            f"{where}: {n_masks} masks of {height}x{width} pixels ({total} in all) exceed the limit of "
            f"{MAX_SAMPLE_PIXELS} pixels per sample (TEXT4SEG_MAX_SAMPLE_PIXELS)",
            cause="sample_too_large",
        )


def as_int(value, where: str, field: str) -> int:
    """``value`` as an int (an int, an integral finite float or a decimal string such as ``"12"``);
    ``BadInput`` quoting it and naming ``where`` and ``field`` for ``None``, lists, NaN, ``"²"``..."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError
        out = int(value.strip()) if isinstance(value, str) else int(value)
        if isinstance(value, float) and out != value:
            raise ValueError
        return out
    except (TypeError, ValueError, OverflowError):
        raise BadInput(
            f"{where}: {field} {str(value)[:80]!r} is not an integer", cause="malformed_record"
        ) from None


def hashable_id(value, where: str, field: str = "id"):
    """``value`` if it can be an id (an int or a string); ``BadInput`` for a list, dict, float, ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadInput(
            f"{where}: {field} {str(value)[:80]!r} is not an int or a string", cause="malformed_record"
        )
    return value


def _no_json_constant(name: str):
    raise ValueError(f"{name} is not JSON (write null or a number)")


def load_json(path: Path, what: str = "annotation file"):
    """The parsed JSON of ``path``; one ``ValueError``/``FileNotFoundError`` naming the file for a missing,
    non-UTF-8, corrupt or absurdly nested file (``json`` raises ``RecursionError`` at about 1000 levels)."""
    from text4seg.data.images import check_regular_file

    try:
        check_regular_file(path)
        with open(path, encoding="utf-8") as fh:
            return json.load(fh, parse_constant=_no_json_constant)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except RecursionError:
        raise ValueError(f"corrupt {what} {path}: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, NaN/Infinity
        raise ValueError(f"corrupt {what} {path}: {exc}") from None


def read_text(path: Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; ``ValueError`` naming the file if it is not UTF-8 or not a regular file."""
    from text4seg.data.images import check_regular_file

    check_regular_file(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def side_dir(path: Path, top: Path | None) -> Path:
    """``path``, a folder of side outputs (label maps, images) next to ``--out``: refused when it, or a
    folder between ``top`` (``--out``'s folder, not checked) and it, is a symbolic link (the build would
    write through the link, outside what ``--out`` names)."""
    path = Path(path)
    p = path
    while p != p.parent and p != top:
        if p.is_symlink():
            raise ValueError(
                f"{p} is a symbolic link: the build writes side outputs there and refuses to write through "
                "a link (remove it, or name a real folder with --set label_dir=/image_dir=)"
            )
        if top is None:
            break
        p = p.parent
    return path


def check_write_target(path: Path) -> None:
    """Refuse to replace ``path`` when it is a symbolic link or a hard link (``st_nlink > 1``): the file is
    shared with something outside the build."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or st.st_nlink > 1:
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else f"a hard link ({st.st_nlink} names)"
        raise ValueError(f"{path} is {kind}; the build refuses to replace a file shared with another path")


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
