"""Tiny video datasets in their native layouts (Ref-YouTube-VOS, MeViS, ReVOS, DAVIS-2017) and clips.

Every clip is ``N_FRAMES`` frames of ``H x W`` pixels: a red square (object 1) moving right by
``STEP`` pixels per frame on a grey background, and a static blue bar (object 2). Frame names are
``00000 ...``; :func:`target_masks` gives the ground-truth masks of one object.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from text4seg.data.rle import mask_to_rle

N_FRAMES, H, W, STEP, SIDE = 6, 48, 64, 6, 16
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)


def target_masks(obj: int = 1, n: int = N_FRAMES, gone_after: int | None = None) -> np.ndarray:
    """``(n, H, W)`` bool masks of object ``obj`` (1 the moving square, 2 the static bar)."""
    out = np.zeros((n, H, W), bool)
    for t in range(n):
        if obj == 1 and (gone_after is None or t < gone_after):
            x = 4 + STEP * t
            out[t, 16 : 16 + SIDE, x : x + SIDE] = True
        elif obj == 2:
            out[t, 38:44, 4:60] = True
    return out


def frame_names(n: int = N_FRAMES) -> list[str]:
    return [f"{t:05d}" for t in range(n)]


def write_clip(folder: Path, n: int = N_FRAMES, gone_after: int | None = None) -> list[Path]:
    """JPEG frames ``folder/00000.jpg ...`` of the clip; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    sq, bar = target_masks(1, n, gone_after), target_masks(2, n)
    paths = []
    for t, name in enumerate(frame_names(n)):
        img = np.full((H, W, 3), 128, np.uint8)
        img[sq[t]] = (220, 30, 30)
        img[bar[t]] = (30, 30, 220)
        p = folder / f"{name}.jpg"
        Image.fromarray(img).save(p, quality=95)
        paths.append(p)
    return paths


def write_palette_masks(folder: Path, n: int = N_FRAMES, gone_after: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    sq, bar = target_masks(1, n, gone_after), target_masks(2, n)
    for t, name in enumerate(frame_names(n)):
        arr = np.zeros((H, W), np.uint8)
        arr[sq[t]] = 1
        arr[bar[t]] = 2
        im = Image.fromarray(arr, mode="P")
        im.putpalette(PALETTE)
        im.save(folder / f"{name}.png")


EXPRESSIONS = {"0": ("the red square moving right", 1), "1": ("the blue bar at the bottom", 2)}


def _meta(with_anno_ids: bool, n: int = N_FRAMES) -> dict:
    exps = {}
    for eid, (text, obj) in EXPRESSIONS.items():
        e = {"exp": text, "obj_id": [obj] if with_anno_ids else str(obj)}
        if with_anno_ids:
            e["anno_id"] = [100 + obj]
        exps[eid] = e
    return {"videos": {"vid_a": {"expressions": exps, "frames": frame_names(n)}}}


def _mask_dict(n: int = N_FRAMES) -> dict:
    out = {}
    for obj in (1, 2):
        ms = target_masks(obj, n)
        out[str(100 + obj)] = [mask_to_rle(m) if m.any() else None for m in ms]
    return out


def write_refytvos(root: Path, split: str = "train") -> Path:
    (root / "meta_expressions" / split).mkdir(parents=True, exist_ok=True)
    (root / "meta_expressions" / split / "meta_expressions.json").write_text(json.dumps(_meta(False)))
    write_clip(root / split / "JPEGImages" / "vid_a")
    if split == "train":
        write_palette_masks(root / split / "Annotations" / "vid_a")
    return root


def write_mevis(root: Path, split: str = "train") -> Path:
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / split / "meta_expressions.json").write_text(json.dumps(_meta(True)))
    (root / split / "mask_dict.json").write_text(json.dumps(_mask_dict()))
    write_clip(root / split / "JPEGImages" / "vid_a")
    return root


def write_revos(root: Path, split: str = "valid") -> Path:
    """ReVOS: one JPEGImages and mask_dict.json for all splits; expressions carry ``type_id``."""
    meta = _meta(True)
    exps = meta["videos"]["vid_a"]["expressions"]
    exps["0"]["type_id"] = 0
    exps["2"] = {
        "exp": "Which object could be hit by the moving one?",
        "obj_id": [2],
        "anno_id": [102],
        "type_id": 1,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / f"meta_expressions_{split}_.json").write_text(json.dumps(meta))
    (root / "mask_dict.json").write_text(json.dumps(_mask_dict()))
    (root / "mask_dict_foreground.json").write_text(json.dumps({}))
    write_clip(root / "JPEGImages" / "vid_a")
    return root


def write_davis(root: Path, split: str = "val") -> Path:
    write_clip(root / "JPEGImages" / "480p" / "vid_a")
    write_palette_masks(root / "Annotations" / "480p" / "vid_a")
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / f"{split}.txt").write_text("vid_a\n")
    return root
