"""Pictures for people: an image with its predicted mask, the query, a legend, and the ground truth.

:func:`overlay_image` returns an ``(H', W', 3)`` uint8 array (:func:`save_overlay` writes it as PNG):

    +-----------------------------------------------+
    | "Please segment the red circle."  (the query) |
    | coarse (16x16 answer)  | SAM-refined          |   <- titles; the second panel only when
    | [image + labels filled | [image + refined     |      refinement ran
    |  + faint 16x16 grid    |  labels]             |
    |  + yellow GT outline]  |                      |
    | [] red circle  [] cat   -- ground truth       |   <- legend: one colour per label
    +-----------------------------------------------+

Panels are scaled up (nearest for masks, bilinear for the image) so that a 48 x 80 test image is still
readable (shorter side >= ``min_side`` pixels, longer side <= ``max_side``). Label ``k`` of ``names``
(``names[0]`` is ``others``, never filled) gets one colour in every panel and in the legend: the palette
colour farthest from the mean colour of the pixels under it (:func:`label_colours`; a red fill on a red
object is invisible), each label its own. A label is drawn as a translucent fill, diagonal stripes and
a 2-pixel outline in its colour, with a 1-pixel black or white line around it (whichever contrasts with
the pixels there), so it shows on any image. The ground truth is a yellow outline; a sample whose ground
truth is empty (no target) gets a dashed yellow frame around the panel, and the legend says so. Legend
labels are wrapped, never cut.

Only numpy and PIL are needed. :func:`save_png` / :func:`save_mask_png` (atomic PNG writes) live here too;
:mod:`text4seg.data.results` re-exports all three under their old names.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence

import numpy as np

from text4seg.data.jsonl import atomic_path

# Colour-blind-friendly qualitative palette (Okabe-Ito without black), RGB.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 60, 40),
    (0, 114, 178),
    (0, 158, 115),
    (204, 121, 167),
    (86, 180, 233),
    (213, 94, 0),
    (240, 228, 66),
    (120, 80, 200),
)
GT_COLOUR = (255, 230, 0)
BACKGROUND_RGB = (250, 250, 250)
TEXT_RGB = (20, 20, 20)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _as_rgb(image, h: int, w: int) -> np.ndarray:
    from text4seg.data.images import load_rgb

    if image is None:
        return np.zeros((h, w, 3), np.uint8)
    img = load_rgb(image) if isinstance(image, (str, os.PathLike)) else image
    if not isinstance(img, np.ndarray):
        img = np.asarray(img.convert("RGB"))
    img = np.asarray(img, np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    out = np.zeros((h, w, 3), np.uint8)
    out[: img.shape[0], : img.shape[1]] = img[:h, :w, :3]
    return out


def _scale(h: int, w: int, min_side: int, max_side: int) -> float:
    s = max(1.0, min_side / max(1, min(h, w)))
    return min(s, max_side / max(h, w)) if max(h, w) * s > max_side else s


def _resize(a: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    from PIL import Image

    if a.shape[1] == size[0] and a.shape[0] == size[1]:
        return a
    if a.dtype == bool:
        return np.asarray(Image.fromarray(a.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
    if a.dtype != np.uint8:  # int label map
        return np.asarray(Image.fromarray(a.astype(np.int32)).resize(size, Image.NEAREST)).astype(a.dtype)
    return np.asarray(Image.fromarray(a).resize(size, Image.NEAREST if nearest else Image.BILINEAR))


def _outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """``(H, W)`` bool: the pixels of ``mask`` within ``width`` of its edge (image borders included)."""
    inner = mask.copy()
    for _ in range(max(1, width)):
        p = np.pad(inner, 1, constant_values=False)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def label_colours(base: np.ndarray, maps: Sequence[np.ndarray], n_labels: int) -> dict[int, tuple]:
    """``{k: RGB}`` for labels ``1..n_labels``: each the palette colour farthest (RGB distance) from the
    mean colour of the ``base`` pixels under label ``k`` in any of ``maps``, not taken by another label
    while the palette lasts; the yellow of the ground-truth outline is left out. A label with no pixel
    keeps ``PALETTE[(k - 1) % len(PALETTE)]``."""
    choices = [c for c in PALETTE if np.abs(np.subtract(c, GT_COLOUR)).sum() > 150]
    taken: set[tuple] = set()
    out: dict[int, tuple] = {}
    img = base.reshape(-1, 3).astype(np.float32)
    for k in range(1, n_labels + 1):
        under = np.zeros(img.shape[0], bool)
        for m in maps:
            under |= (m == k).ravel()
        default = PALETTE[(k - 1) % len(PALETTE)]
        if not under.any():
            out[k] = default
            continue
        mean = img[under].mean(axis=0)
        free = [c for c in choices if c not in taken] or choices
        out[k] = max(free, key=lambda c: (float(np.square(np.subtract(c, mean)).sum()), c == default))
        taken.add(out[k])
    return out


def _contrast(pixels: np.ndarray) -> np.ndarray:
    """Black or white, whichever stands out more on ``pixels`` (``(N, 3)``; their mean luminance)."""
    lum = (
        float((pixels.reshape(-1, 3) @ np.array([0.299, 0.587, 0.114], np.float32)).mean())
        if pixels.size
        else 0
    )
    return np.array((0, 0, 0) if lum > 110 else (255, 255, 255), np.float32)


def _dilate(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1, constant_values=False)
    return mask | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]


def _panel(
    base: np.ndarray,
    label_map: np.ndarray,
    gt: np.ndarray | None,
    grid: tuple[int, int] | None,
    colours: dict[int, tuple] | None = None,
    alpha: float = 0.45,
) -> np.ndarray:
    out = base.astype(np.float32)
    h, w = label_map.shape
    yy, xx = np.mgrid[:h, :w]
    stripes = (xx + yy) % 8 < 2  # diagonal hatching: visible whatever the colour under it
    colours = colours or {}
    for k in range(1, int(label_map.max(initial=0)) + 1):
        m = label_map == k
        if m.any():
            colour = np.array(colours.get(k, PALETTE[(k - 1) % len(PALETTE)]), np.float32)
            under = base[m].astype(np.float32)
            out[m] = (1 - alpha) * out[m] + alpha * colour
            hatch = m & stripes
            out[hatch] = 0.5 * out[hatch] + 0.5 * colour
            halo = _dilate(m) & ~m  # a contrasting line just outside the label
            out[halo] = _contrast(under)
            out[_outline(m, 2)] = colour
    if grid is not None:  # the answer's cells, faintly
        rows, cols = grid
        lines = np.zeros((h, w), bool)
        for i in range(1, rows):
            lines[min(h - 1, round(i * h / rows)), :] = True
        for j in range(1, cols):
            lines[:, min(w - 1, round(j * w / cols))] = True
        out[lines] = 0.75 * out[lines] + 0.25 * 255
    if gt is not None and gt.any():
        edge = _outline(gt, 2)
        out[edge] = np.array(GT_COLOUR, np.float32)
    elif gt is not None:  # no target: a dashed frame around the panel
        frame = np.zeros((h, w), bool)
        frame[:3, :] = frame[-3:, :] = frame[:, :3] = frame[:, -3:] = True
        frame &= (xx + yy) // 10 % 2 == 0
        out[frame] = np.array(GT_COLOUR, np.float32)
    return out.clip(0, 255).astype(np.uint8)


def _label_map(mask: np.ndarray | None, label_map: np.ndarray | None) -> np.ndarray | None:
    if label_map is not None:
        return np.asarray(label_map)
    if mask is None:
        return None
    m = np.asarray(mask)
    return m.astype(np.int32) if m.dtype == bool else m


def overlay_image(
    image,
    coarse: np.ndarray,
    refined: np.ndarray | None = None,
    *,
    label_map: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    query: str | None = None,
    gt: np.ndarray | None = None,
    grid: tuple[int, int] | None = None,
    min_side: int = 256,
    max_side: int = 640,
) -> np.ndarray:
    """The overlay picture as an ``(H', W', 3)`` uint8 array (layout: module docstring).

    ``image``: a path, a PIL image, an ``(H, W, 3)`` uint8 array or None (black). ``coarse``: ``(H, W)``
    bool mask of the decoded answer; ``label_map``: its ``(H, W)`` int map (0 = ``others``, k =
    ``names[k]``) for one colour per label (default: ``coarse`` as one label ``"mask"``). ``refined``:
    the SAM-refined ``(H, W)`` int label map (same ids) or bool mask, shown as a second panel. ``gt``:
    ``(H, W)`` bool ground truth, outlined in yellow (an empty one: the no-target frame). ``grid``:
    ``(rows, cols)`` of the answer, drawn faintly on the coarse panel.
    """
    from PIL import Image, ImageDraw

    h, w = coarse.shape
    lm = _label_map(coarse, label_map)
    names = list(names) if names is not None else ["others", "mask"]
    rm = _label_map(refined, None)
    s = _scale(h, w, min_side, max_side)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    base = _resize(_as_rgb(image, h, w), size, nearest=False)
    gt_s = None if gt is None else _resize(np.asarray(gt, bool), size, True)
    lm_s = _resize(lm, size, True)
    rm_s = None if rm is None else _resize(rm, size, True)
    colours = label_colours(base, [x for x in (lm_s, rm_s) if x is not None], len(names) - 1)
    panels = [
        (
            "coarse" + (f" ({grid[0]}x{grid[1]} answer)" if grid else ""),
            _panel(base, lm_s, gt_s, grid, colours),
        )
    ]
    if rm_s is not None:
        panels.append(("SAM-refined", _panel(base, rm_s, gt_s, None, colours)))

    pad, gap = 10, 10
    f_text, f_small = _font(15), _font(13)
    pw, ph = size
    width = max(pad * 2 + len(panels) * pw + (len(panels) - 1) * gap, 320)
    chars = max(20, int((width - 2 * pad) / 8))
    qlines = textwrap.wrap(query or "", chars)[:4] if query else []
    legend = [(colours[k], n, "fill") for k, n in enumerate(names) if k > 0]
    if gt is not None:
        legend.append(
            (GT_COLOUR, "ground truth (outline)", "outline")
            if gt_s is not None and gt_s.any()
            else (GT_COLOUR, "ground truth: no target (dashed frame)", "frame")
        )
    if len(names) <= 1:
        legend.append(((200, 200, 200), "no label predicted (all others)", "fill"))
    rows = _legend_rows(legend, width - 2 * pad, f_small)
    top = pad + 20 * len(qlines) + (6 if qlines else 0)
    title_h = 18
    height = top + title_h + ph + 8 + sum(_row_height(r) for r in rows) + pad
    canvas = Image.new("RGB", (width, height), BACKGROUND_RGB)
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(qlines):
        draw.text((pad, pad + 20 * i), line, fill=TEXT_RGB, font=f_text)
    for i, (title, arr) in enumerate(panels):
        x0 = pad + i * (pw + gap)
        draw.text((x0, top), title, fill=(90, 90, 90), font=f_small)
        canvas.paste(Image.fromarray(arr), (x0, top + title_h))
    y = top + title_h + ph + 8
    for row in rows:
        x = pad
        for colour, lines, kind, wd in row:
            if kind == "outline":
                draw.rectangle((x, y + 3, x + 14, y + 13), outline=colour, width=3)
            elif kind == "frame":
                for j in range(0, 15, 6):
                    draw.rectangle((x + j, y + 3, x + min(14, j + 2), y + 13), fill=colour)
            else:
                draw.rectangle((x, y + 3, x + 14, y + 13), fill=colour, outline=(60, 60, 60))
            for i, text in enumerate(lines):
                draw.text((x + 20, y + 16 * i), text, fill=TEXT_RGB, font=f_small)
            x += wd
        y += _row_height(row)
    return np.asarray(canvas)


def _text_width(text: str, font) -> float:
    try:
        return float(font.getlength(text))
    except AttributeError:  # the old bitmap font
        return 6.0 * len(text)


def _wrap(text: str, room: float, font) -> list[str]:
    """``text`` in lines no wider than ``room`` pixels (words kept whole where they fit; a longer word
    is broken); nothing is cut."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and _text_width(lines[-1] + " " + word, font) <= room:
            lines[-1] += " " + word
            continue
        lines.append("")
        for ch in word:
            if lines[-1] and _text_width(lines[-1] + ch, font) > room:
                lines.append("")
            lines[-1] += ch
    return lines or [""]


def _legend_rows(legend: list[tuple], room: float, font) -> list[list[tuple]]:
    """Legend entries ``(colour, text, kind)`` laid out in rows of ``room`` pixels: each entry is
    ``(colour, lines, kind, width)``, a text too long for a row wrapped over several lines."""
    rows: list[list[tuple]] = [[]]
    x = 0.0
    for colour, text, kind in legend:
        lines = _wrap(text, room - 20, font)
        wd = 20 + max(_text_width(t, font) for t in lines) + 16
        if rows[-1] and x + wd > room:
            rows.append([])
            x = 0.0
        rows[-1].append((colour, lines, kind, int(round(wd))))
        x += wd
    return rows


def _row_height(row: list[tuple]) -> int:
    return 4 + 16 * max((len(e[1]) for e in row), default=1)


def save_overlay(
    path: str | os.PathLike,
    image,
    coarse: np.ndarray,
    refined: np.ndarray | None = None,
    **options,
) -> None:
    """Write :func:`overlay_image` ``(image, coarse, refined, **options)`` as a PNG (atomically)."""
    save_png(path, overlay_image(image, coarse, refined, **options))


def save_mask_png(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write an ``(H, W)`` bool mask as a 0/255 grey PNG (atomically)."""
    save_png(path, np.asarray(mask, bool).astype(np.uint8) * 255)


def png_bytes(array: np.ndarray) -> bytes:
    """A uint8 ``(H, W)`` or ``(H, W, 3)`` array encoded as PNG bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(png_bytes(array))
