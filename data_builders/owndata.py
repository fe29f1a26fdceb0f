"""Helpers shared by the own-data builders (``coco-format``, ``labelme``, ``mask-folder``).

* :func:`split_of`: a deterministic train/val split for sources that have none: an item goes to
  ``train`` when ``sha1(f"{seed}:{key}")``, read as a fraction in [0, 1), is below ``split_ratio``.
  The split depends on the key (image id or file name) and the seed only, not on order or sharding.
* :func:`instance_turn`: question/answer templates of the instance-numbered task.
* :func:`write_label_png`: atomic label-map PNG (8-bit, or 16-bit when values exceed 255).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np

from text4seg.data.jsonl import atomic_path

from .options import Option
from .prompts import answer, join_classes, load_templates

SPLITS = ("train", "val")

SPLIT_RATIO = Option(
    "split_ratio",
    float,
    None,
    "fraction of the items in split train, the rest in val, by a seeded hash of each item's key "
    "(unset: every item is in the --split named)",
)
LABEL_DIR = Option("label_dir", str, None, "folder for the label-map PNGs (unset: <out stem>_labels/)")


def split_ratio_of(cfg) -> float | None:
    """The ``split_ratio`` option (``None`` when unset); checks it and the split name."""
    ratio = cfg.options.get("split_ratio")
    if ratio is None:
        return None
    if not 0 < ratio < 1:
        raise ValueError(f"option split_ratio={ratio!r}: expected a number in (0, 1)")
    if cfg.split not in SPLITS:
        raise ValueError(f"with split_ratio, --split must be one of {list(SPLITS)}, got {cfg.split!r}")
    return ratio


def split_of(key: str, seed: int, ratio: float) -> str:
    """``"train"`` or ``"val"`` for ``key`` (see the module docstring)."""
    h = hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()
    return "train" if int(h[:15], 16) / 16**15 < ratio else "val"


def instance_turn(rng: random.Random, classes: list[str], descriptors: str) -> tuple[str, str]:
    """(question, answer) of the instance task; ``classes`` are the class names asked for."""
    t = load_templates("instance")
    q = rng.choice(t["question"]).format(classes=join_classes(classes) or "all objects")
    return q, answer(rng.choice(t["answer"]), descriptors)


def write_label_png(path: Path, label_map: np.ndarray) -> None:
    """Write an integer label map as a PNG through a temporary file (8-bit up to 255, else 16-bit)."""
    from PIL import Image

    from .common import side_dir

    side_dir(path.parent, path.parent.parent)  # the split folder: never written through a link
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(label_map)
    if arr.max(initial=0) > 65535:
        raise ValueError(f"label map {path}: value {int(arr.max())} does not fit a 16-bit PNG")
    im = (
        Image.fromarray(arr.astype(np.uint8))
        if arr.max(initial=0) < 256
        else Image.fromarray(arr.astype(np.uint16))
    )
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def label_dir_of(cfg, default_name: str) -> Path:
    """Folder for ground-truth label maps: option ``label_dir``, else ``<out stem>_labels/``."""
    d = cfg.options.get("label_dir")
    if d:
        return Path(d).expanduser().resolve()
    if cfg.out is not None:
        from .common import side_dir

        return side_dir(cfg.out.parent / f"{cfg.out.stem}_labels", cfg.out.parent)
    return Path(cfg.root) / default_name
