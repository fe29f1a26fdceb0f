"""Dataset builders: datasets on disk (or generated) -> instruction JSONL for ms-swift.

``BUILDERS`` maps a builder name to its class (see :mod:`data_builders.base` for the contract).
:func:`build_jsonl` builds one file in one call; ``text4seg build`` is its command line.

>>> from data_builders import build_jsonl
>>> report = build_jsonl("synthetic", "out/train.jsonl", split="train", limit=100)  # doctest: +SKIP
"""

from __future__ import annotations

import os

from text4seg.descriptors import DEFAULT_SCHEME

from .base import BadInput, BuildConfig, Builder, make_config
from .coco_format import CocoFormat
from .hf import HFMask, HFRefer
from .interactive import CocoInteractive
from .labelme import LabelMe
from .mask_folder import MaskFolder
from .multi import GRefCOCOMulti
from .panoptic import CocoPanoptic
from .reason import ReasonSeg
from .refer import GRefCOCO, RefCLEF, RefCOCO, RefCOCOg, RefCOCOPlus, RefZOM
from .run import run_build
from .semantic import ADE20K, CocoStuff, PascalContext59, PascalVOC20
from .synthetic import Synthetic
from .video import DAVIS17, MeViS, RefYouTubeVOS, ReVOS

BUILDERS: dict[str, type[Builder]] = {
    "synthetic": Synthetic,
    "refcoco": RefCOCO,
    "refcoco+": RefCOCOPlus,
    "refcocog": RefCOCOg,
    "refclef": RefCLEF,
    "grefcoco": GRefCOCO,
    "ref-zom": RefZOM,
    "grefcoco-multi": GRefCOCOMulti,
    "coco-interactive": CocoInteractive,
    "coco-panoptic": CocoPanoptic,
    "coco-stuff": CocoStuff,
    "ade20k": ADE20K,
    "pc59": PascalContext59,
    "voc20": PascalVOC20,
    "reasonseg": ReasonSeg,
    "hf-refer": HFRefer,
    "hf-mask": HFMask,
    "coco-format": CocoFormat,
    "labelme": LabelMe,
    "mask-folder": MaskFolder,
    "refytvos": RefYouTubeVOS,
    "mevis": MeViS,
    "revos": ReVOS,
    "davis17": DAVIS17,
}


def get_builder(name: str) -> type[Builder]:
    """The builder class called ``name``; ``ValueError`` lists the valid names."""
    try:
        return BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown builder {name!r}; choose one of {sorted(BUILDERS)}") from None


def build_jsonl(
    name: str,
    out: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    split: str = "train",
    grid: int | tuple[int, int] = 16,
    scheme: str = DEFAULT_SCHEME,
    limit: int | None = None,
    seed: int = 0,
    repeat: int = 1,
    workers: int = 1,
    shard: str | tuple[int, int] | None = None,
    skip_bad: bool = False,
    with_gt: bool | None = None,
    progress: bool = False,
    stats: bool = True,
    options: dict | None = None,
) -> dict:
    """Build ``out`` (JSONL, written atomically) with builder ``name``; return the build report.

    ``with_gt=None`` stores ground-truth masks except for the ``train`` split. ``options`` are
    builder-specific settings (e.g. synthetic's ``image_size``). The report has ``samples``,
    ``skipped_bad``, ``seconds``, ``samples_per_s`` and, with ``stats``, ``answers`` (length statistics).
    """
    cls = get_builder(name)
    cfg = make_config(root, split, out, grid, scheme, seed, with_gt, options)
    report = run_build(
        cls,
        cfg,
        out,
        limit=limit,
        repeat=repeat,
        workers=workers,
        shard=shard,
        skip_bad=skip_bad,
        progress=progress,
        stats=stats,
    )
    # what the file holds: tasks, targets per sample, no-target samples (one more streamed read); a build
    # that wrote no row (every unit skipped or dropped) has nothing to summarise: the stats reader refuses
    # an empty file
    if stats and report["samples"]:
        from text4seg.data.stats import target_summary

        report.update({k: v for k, v in target_summary(out).items() if k != "samples"})
    return report


__all__ = ["BUILDERS", "BadInput", "BuildConfig", "Builder", "build_jsonl", "get_builder", "make_config"]
