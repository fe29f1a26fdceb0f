"""Hugging Face datasets stored on local disk (``datasets.save_to_disk`` folders or parquet files).

Local paths only: nothing is downloaded. ``--root`` is either a ``save_to_disk`` folder (a ``Dataset``
or a ``DatasetDict``, whose split ``--split`` is taken) or a folder of parquet files (searched
recursively), where a split's files are ``<split>-*.parquet`` (the Hub's ``data/`` layout),
``<split>.parquet``, or, for names without ``-``, any ``*.parquet`` directly in a folder ``<split>``.

Two schemas (column names are options, defaults shown):

``hf-refer`` (refcoco-style: one row per ref; every sentence is one sample)
    ``image`` (an ``Image`` feature or a path string), ``sentences`` (a string, a list of strings, or a
    list of ``{"sent": ...}``/``{"raw": ...}``), ``segmentation`` (COCO polygons ``[[x, y, ...], ...]`` or
    an RLE ``{"size", "counts"}``), optional ``width``/``height``, ``ref_id``, ``image_id``, ``ann_id``.
``hf-mask`` (image + text + mask; every text is one sample)
    ``image``, ``text`` (a string or a list of strings), ``mask`` (an ``Image`` feature or a path: a
    single-channel PNG, non-zero = target, or a 2-D integer/bool array).

Images stored as bytes are written once to ``<out stem>_images/`` (``--image-dir DIR``) with their
original encoding, so ms-swift gets absolute paths; images given as paths are used where they are
(relative paths resolve against ``--root`` and may not escape it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from text4seg._lazy import require
from text4seg.data.images import open_image
from text4seg.data.jsonl import atomic_path
from text4seg.data.records import Sample
from text4seg.data.rle import mask_to_rle, rle_to_json
from text4seg.descriptors import encode

from .base import BadInput, BuildConfig, Builder
from .coco import rle_of_segmentations, sample_rle
from .common import PLACEHOLDER, descriptor_template, empty_grid, inside, label_of, side_dir
from .options import Option
from .prompts import refer_turn

EXT_OF_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}


def load_local_split(root: Path, split: str):
    """A ``datasets.Dataset`` for ``split`` from a ``save_to_disk`` folder or parquet files under ``root``."""
    datasets = require("datasets")
    root = Path(root)
    if any((root / f).is_file() for f in ("dataset_dict.json", "state.json", "dataset_info.json")):
        try:
            ds = datasets.load_from_disk(str(root))
        except Exception as exc:  # datasets raises many types for a damaged folder
            raise ValueError(f"cannot load the dataset saved in {root}: {exc}") from None
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"unknown split {split!r} in {root}; choose one of {sorted(ds)}")
            ds = ds[split]
        return ds
    files = sorted(root.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no save_to_disk dataset or parquet files under {root}")

    def split_of(p: Path) -> str:
        if "-" in p.stem:  # <split>-00000-of-00001.parquet (the Hub's layout, under data/ or not)
            return p.stem.split("-")[0]
        return p.parent.name if p.parent != root else p.stem  # <split>/x.parquet or <split>.parquet

    mine = [str(p) for p in files if split_of(p) == split]
    if not mine:
        have = sorted({split_of(p) for p in files})
        raise ValueError(f"unknown split {split!r}: no parquet files for it under {root}; found {have}")
    try:
        return datasets.Dataset.from_parquet(mine)
    except Exception as exc:
        raise ValueError(f"cannot read parquet files {mine[:3]}: {exc}") from None


IMAGE_DIR = Option("image_dir", str, "", "folder for images stored as bytes (default: <out stem>_images/)")


def column_options(columns: dict[str, str]) -> tuple[Option, ...]:
    """One ``<kind>_col`` option per column kind (its name in the dataset), then ``image_dir``."""
    return (
        *(Option(f"{k}_col", str, v, f"name of the dataset's {k} column") for k, v in columns.items()),
        IMAGE_DIR,
    )


class HFBase(Builder):
    """Rows of a local HF dataset; subclasses implement :meth:`targets`."""

    columns: dict[str, str] = {"image": "image"}
    options = column_options(columns)

    def __init__(self, cfg: BuildConfig):
        Builder.__init__(self, cfg)
        self.root = Path(cfg.root)
        self.col = {k: self.opt(f"{k}_col") for k in self.columns}
        ds = load_local_split(self.root, cfg.split)
        missing = [c for c in self.col.values() if c not in ds.column_names]
        if missing:
            raise ValueError(
                f"{self.root}: columns {missing} not found; the dataset has {ds.column_names} "
                f"(rename with --<kind>-col NAME, kinds: {sorted(self.col)})"
            )
        datasets = require("datasets")
        for key in ("image", "mask"):
            c = self.col.get(key)
            if c and isinstance(ds.features.get(c), datasets.Image):
                ds = ds.cast_column(c, datasets.Image(decode=False))
        self.ds = ds
        image_dir = self.opt("image_dir")
        if image_dir:
            self.image_dir = Path(image_dir).resolve()
        elif cfg.out is not None:
            self.image_dir = side_dir(cfg.out.parent / f"{cfg.out.stem}_images", cfg.out.parent)
        else:
            self.image_dir = self.root / "text4seg_images"

    def units(self) -> list[int]:
        return list(range(len(self.ds)))

    def _image(self, value, index: int) -> tuple[str, int, int]:
        """(absolute path, width, height) of an image cell; bytes are written to ``image_dir`` once."""
        path, data = None, None
        if isinstance(value, dict):
            path, data = value.get("path"), value.get("bytes")
        elif isinstance(value, str):
            path = value
        else:
            raise BadInput(
                f"row {index} of {self.root}: unsupported image value of type {type(value).__name__}"
            )
        try:
            if data:
                with open_image(data, f"row {index} of {self.root}: image bytes") as im:
                    (w, h), fmt = im.size, im.format
                out = self.image_dir / self.cfg.split / f"{index:08d}{EXT_OF_FORMAT.get(fmt, '.img')}"
                if not out.is_file():
                    side_dir(out.parent, self.image_dir)  # the split folder
                    with atomic_path(out) as tmp:
                        tmp.write_bytes(data)
                return str(out), w, h
            if not path:
                raise BadInput(f"row {index} of {self.root}: image has neither bytes nor path")
            p = Path(path) if Path(path).is_absolute() else inside(self.root, path)
            with open_image(p) as im:
                w, h = im.size
            return str(p), w, h
        except FileNotFoundError:
            raise BadInput(f"row {index} of {self.root}: image not found: {path}") from None
        except BadInput:
            raise
        except (ValueError, OSError) as exc:
            raise BadInput(
                f"row {index} of {self.root}: cannot read image {path or '(bytes)'}: {exc}"
            ) from None

    def targets(self, row: dict, index: int, h: int, w: int) -> tuple[dict, list[str], dict]:
        """(compressed RLE of the target, sentences, extra source ids) of a row."""
        raise NotImplementedError

    def make(self, unit: int, rep: int) -> list[Sample]:
        cfg = self.cfg
        row = self.ds[unit]
        path, w, h = self._image(row[self.col["image"]], unit)
        rle, texts, source = self.targets(row, unit, h, w)
        fg = sample_rle(rle, *cfg.grid)
        tpl = descriptor_template(fg, cfg.scheme) if fg.any() or _has_fg(rle) else None
        # an empty segmentation/mask is a no-target row by design; a target no grid cell samples is not
        if tpl is not None and self.screen_target(
            1, bool(fg.any()), len(texts), f"row {unit} of {self.root}"
        ):
            return []
        empty = encode(empty_grid(cfg.grid), cfg.scheme)
        out = []
        for k, text in enumerate(texts):
            sid = self.sample_id(unit, k, rep=rep)
            rng = self.rng(sid)
            label = label_of(text)
            desc = empty if tpl is None else tpl.replace(PLACEHOLDER, label)
            out.append(
                self.sample(
                    sid,
                    image=path,
                    width=w,
                    height=h,
                    turns=[refer_turn(rng, text, desc, empty=tpl is None)],
                    task="res",
                    labels=[label],
                    source={"dataset": self.name, "split": cfg.split, "sent_ids": [k], **source},
                    masks=[rle_to_json(rle)] if cfg.with_gt else [],
                )
            )
        return out


def _has_fg(rle: dict) -> bool:
    from .coco import rle_counts

    return bool(rle_counts(rle["counts"])[1::2].sum())


def _texts(value, index: int, where: Path) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise BadInput(
            f"row {index} of {where}: sentences must be a string or a list, got {type(value).__name__}"
        )
    out = []
    for v in value:
        if isinstance(v, dict):
            v = v.get("sent") or v.get("raw") or ""
        v = " ".join(str(v).split())
        if v:
            out.append(v)
    return out


class HFRefer(HFBase):
    name = "hf-refer"
    help = "local HF dataset, refcoco-style rows: image, sentences, segmentation (polygons or RLE)"
    layout = "a datasets.save_to_disk folder or <split>-*.parquet files with image/sentences/segmentation"
    columns = {"image": "image", "sentences": "sentences", "segmentation": "segmentation"}
    options = column_options(columns)

    def targets(self, row, index, h, w):
        seg = row[self.col["segmentation"]]
        if isinstance(seg, dict):
            segs = [seg]
        elif isinstance(seg, list):
            # polygon lists or a list of RLE dicts (refCLEF's form); a flat [x0, y0, ...] is one polygon
            segs = [seg] if seg and isinstance(seg[0], (list, dict)) else [[seg]] if seg else []
        else:
            raise BadInput(f"row {index} of {self.root}: segmentation must be polygons or an RLE dict")
        rle = rle_of_segmentations(segs, h, w, where=f"in row {index} of {self.root}")
        source = {k: row[k] for k in ("ref_id", "image_id") if k in row and row[k] is not None}
        if "ann_id" in row and row["ann_id"] is not None:
            source["ann_ids"] = row["ann_id"] if isinstance(row["ann_id"], list) else [row["ann_id"]]
        return rle, _texts(row[self.col["sentences"]], index, self.root), source


class HFMask(HFBase):
    name = "hf-mask"
    help = "local HF dataset, rows of image + text + mask (binary mask image or array)"
    layout = "a datasets.save_to_disk folder or <split>-*.parquet files with image/text/mask columns"
    columns = {"image": "image", "text": "text", "mask": "mask"}
    options = column_options(columns)

    def targets(self, row, index, h, w):
        value = row[self.col["mask"]]
        try:
            if isinstance(value, dict):
                src = value["bytes"] if value.get("bytes") else inside(self.root, value["path"])
                with open_image(src, f"mask of row {index}") as im:
                    mask = np.asarray(im.convert("L") if im.mode not in ("1", "L", "P", "I") else im)
            elif isinstance(value, str):
                with open_image(inside(self.root, value)) as im:
                    mask = np.asarray(im)
            else:
                mask = np.asarray(value)
        except BadInput:
            raise
        except (FileNotFoundError, ValueError, OSError, KeyError, TypeError) as exc:
            raise BadInput(f"row {index} of {self.root}: cannot read mask: {exc}") from None
        if mask.shape != (h, w):
            raise BadInput(f"row {index} of {self.root}: mask is {mask.shape} but the image is {(h, w)}")
        return mask_to_rle(mask != 0), _texts(row[self.col["text"]], index, self.root), {}
