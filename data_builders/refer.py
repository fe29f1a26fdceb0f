"""REFER family (refcoco, refcoco+, refcocog, refclef) and gRefCOCO: referring expression segmentation.

Layout under ``--root`` (LISA's and the official Text4Seg instructions)::

    <root>/refcoco/refs(unc).p  refs(google).p  instances.json
    <root>/refcoco+/refs(unc).p instances.json
    <root>/refcocog/refs(umd).p refs(google).p  instances.json
    <root>/refclef/refs(unc).p  refs(berkeley).p  instances.json
    <root>/grefcoco/grefs(unc).json  instances.json
    <root>/images/mscoco/images/train2014/COCO_train2014_*.jpg     (refcoco, refcoco+, refcocog, grefcoco)
    <root>/images/saiapr_tc-12/<file_name from instances.json>      (refclef)

Every sentence of every ref is one sample, whose descriptor label is the sentence itself (the paper's
recipe). A ref's mask is computed once for all its sentences, from its COCO polygons or RLE; gRefCOCO's
several targets make one union mask and no-target expressions an all-``others`` grid. Image sizes come
from ``instances.json`` (images are never opened; their existence is checked once per image unless
``--set check_images=false``). The ``.p`` pickles go through :mod:`data_builders.safe_pickle`.
Options: ``split_by`` (unc/umd/google/berkeley), ``image_dir`` (relative to root), ``check_images``,
``turns`` (> 1: several expressions of one image in one multi-round sample).
"""

from __future__ import annotations

import json
from pathlib import Path

from text4seg.data.prompts import refer_turn, sample_rng
from text4seg.data.records import Sample
from text4seg.data.rle import rle_to_json
from text4seg.descriptors import encode

from .base import BadInput, BuildConfig, Builder
from .coco import CocoIndex, rle_of_segmentations, sample_rle
from .common import PLACEHOLDER, descriptor_template, empty_grid, inside, label_of
from .safe_pickle import safe_load

COCO_IMAGES = "images/mscoco/images/train2014"
CLEF_IMAGES = "images/saiapr_tc-12"


def _sent_text(sent: dict) -> str:
    text = sent.get("sent") or sent.get("raw") or ""
    return " ".join(str(text).split())


class ReferBase(Builder):
    """Shared REFER/gREFER machinery; subclasses set ``dataset``, ``split_bys``, ``image_subdir``."""

    dataset = ""
    split_bys: tuple[str, ...] = ()
    image_subdir = COCO_IMAGES
    task = "res"

    def __init__(self, cfg: BuildConfig):
        Builder.__init__(self, cfg)
        self.split_by = cfg.opt("split_by", self.split_bys[0])
        if self.split_by not in self.split_bys:
            raise ValueError(
                f"unknown split_by {self.split_by!r} for {self.name}; choose one of {list(self.split_bys)}"
            )
        self.ddir = Path(cfg.root) / self.dataset
        self.image_dir = inside(Path(cfg.root), cfg.opt("image_dir", self.image_subdir))
        self.check_images = cfg.opt("check_images", True)
        self.turns = cfg.opt("turns", 1)
        if self.turns < 1:
            raise ValueError(f"turns must be >= 1, got {self.turns}")
        refs = self.load_refs()
        splits = sorted({str(r.get("split")) for r in refs})
        if cfg.split not in splits:
            raise ValueError(
                f"unknown split {cfg.split!r} for {self.name} ({self.split_by}); choose one of {splits}"
            )
        self.coco = CocoIndex(self.ddir / "instances.json")
        self.refs = [r for r in refs if str(r.get("split")) == cfg.split]
        self._exists: dict[str, tuple[str, bool]] = {}
        self._empty = ""
        if self.turns > 1:  # one unit per image: its refs in file order, chunked into samples of `turns`
            by_image: dict = {}
            for i, r in enumerate(self.refs):
                by_image.setdefault(r.get("image_id"), []).append(i)
            self._units = [tuple(v) for v in by_image.values()]
        else:
            self._units = [(i,) for i in range(len(self.refs))]

    def load_refs(self) -> list[dict]:
        raise NotImplementedError

    def target_ann_ids(self, ref: dict) -> list:
        raise NotImplementedError

    def units(self) -> list[tuple[int, ...]]:
        return self._units

    def _image_path(self, file_name: str) -> str:
        """Absolute image path (checked to exist once per image unless ``check_images`` is off)."""
        hit = self._exists.get(file_name)
        if hit is None:
            path = inside(self.image_dir, file_name)
            hit = self._exists[file_name] = (str(path), not self.check_images or path.is_file())
        if not hit[1]:
            raise BadInput(f"image not found: {hit[0]}")
        return hit[0]

    def _ref_items(self, ref: dict) -> tuple[dict, list, list[dict]]:
        """(compressed RLE of the ref's target, target ann ids, sentences)."""
        file_name, h, w = self.coco.image(ref["image_id"])
        ann_ids = self.target_ann_ids(ref)
        segs = [self.coco.segmentation(a) for a in ann_ids]
        rle = rle_of_segmentations(segs, h, w, where=f"of ref {ref.get('ref_id')} in {self.coco.path}")
        sents = ref.get("sentences") or []
        if not isinstance(sents, list):
            raise BadInput(f"ref {ref.get('ref_id')} in {self.ddir} has no sentence list")
        return rle, ann_ids, sents

    def make(self, unit: tuple[int, ...], rep: int) -> list[Sample]:
        cfg = self.cfg
        rows, cols = cfg.grid
        items = []  # (ref, rle, ann_ids, sentence, descriptor template or None)
        for i in unit:
            ref = self.refs[i]
            rle, ann_ids, sents = self._ref_items(ref)
            tpl = descriptor_template(sample_rle(rle, rows, cols), cfg.scheme) if ann_ids else None
            for sent in sents:
                items.append((ref, rle, ann_ids, sent, tpl))
        if not items:
            return []
        file_name, h, w = self.coco.image(items[0][0]["image_id"])
        path = self._image_path(file_name)
        empty = self._empty or encode(empty_grid((rows, cols)), cfg.scheme)
        self._empty = empty
        out = []
        for start in range(0, len(items), self.turns):
            chunk = items[start : start + self.turns]
            ref0, sent0 = chunk[0][0], chunk[0][3]
            sid = f"{self.name}/{cfg.split}/{ref0.get('ref_id')}/{sent0.get('sent_id', start)}"
            if rep:
                sid += f"/r{rep}"
            rng = sample_rng(cfg.seed, sid)
            turns, labels, masks, ann_all, sent_ids, ref_ids = [], [], [], [], [], []
            for ref, rle, ann_ids, sent, tpl in chunk:
                expr = _sent_text(sent)
                label = label_of(expr)
                desc = empty if tpl is None else tpl.replace(PLACEHOLDER, label)
                turns.append(refer_turn(rng, expr, desc, empty=tpl is None))
                labels.append(label)
                if cfg.with_gt:
                    masks.append(rle_to_json(rle))
                ann_all.extend(ann_ids)
                sent_ids.append(sent.get("sent_id", ""))
                if str(ref.get("ref_id")) not in ref_ids:
                    ref_ids.append(str(ref.get("ref_id")))
            out.append(
                Sample(
                    id=sid,
                    image=path,
                    width=w,
                    height=h,
                    turns=turns,
                    task=self.task,
                    labels=labels,
                    grid=cfg.grid,
                    scheme=cfg.scheme,
                    source={
                        "dataset": self.name,
                        "split": cfg.split,
                        "image_id": ref0["image_id"],
                        "ref_id": ",".join(ref_ids),
                        "ann_ids": ann_all,
                        "sent_ids": sent_ids,
                    },
                    masks=masks,
                )
            )
        return out


class Refer(ReferBase):
    """REFER pickles: ``refs(<split_by>).p``."""

    def load_refs(self) -> list[dict]:
        path = self.ddir / f"refs({self.split_by}).p"
        refs = safe_load(path)
        if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs[:100]):
            raise ValueError(f"{path} is not a REFER refs file (expected a list of dicts)")
        return refs

    def target_ann_ids(self, ref: dict) -> list:
        if "ann_id" not in ref:
            raise BadInput(f"ref {ref.get('ref_id')} in {self.ddir} has no ann_id")
        return [ref["ann_id"]]


class RefCOCO(Refer):
    name = dataset = "refcoco"
    help = "RefCOCO (UNC), REFER layout: <root>/refcoco/refs(unc).p + instances.json, COCO train2014"
    split_bys = ("unc", "google")
    layout = "<root>/refcoco/refs(unc).p, <root>/refcoco/instances.json, <root>/" + COCO_IMAGES + "/"


class RefCOCOPlus(Refer):
    name = dataset = "refcoco+"
    help = "RefCOCO+ (UNC), REFER layout: <root>/refcoco+/refs(unc).p + instances.json, COCO train2014"
    split_bys = ("unc",)
    layout = "<root>/refcoco+/refs(unc).p, <root>/refcoco+/instances.json, <root>/" + COCO_IMAGES + "/"


class RefCOCOg(Refer):
    name = dataset = "refcocog"
    help = "RefCOCOg (UMD; --set split_by=google), REFER layout: <root>/refcocog/refs(umd).p + instances.json"
    split_bys = ("umd", "google")
    layout = "<root>/refcocog/refs(umd).p, <root>/refcocog/instances.json, <root>/" + COCO_IMAGES + "/"


class RefCLEF(Refer):
    name = dataset = "refclef"
    help = (
        "RefCLEF (UNC; --set split_by=berkeley), <root>/refclef/refs(unc).p + instances.json, saiapr images"
    )
    split_bys = ("unc", "berkeley")
    image_subdir = CLEF_IMAGES
    layout = "<root>/refclef/refs(unc).p, <root>/refclef/instances.json, <root>/" + CLEF_IMAGES + "/"


class GRefCOCO(ReferBase):
    name = dataset = "grefcoco"
    help = "gRefCOCO (multi/no-target): <root>/grefcoco/grefs(unc).json + instances.json, COCO train2014"
    split_bys = ("unc",)
    task = "gres"
    layout = "<root>/grefcoco/grefs(unc).json, <root>/grefcoco/instances.json, <root>/" + COCO_IMAGES + "/"

    def load_refs(self) -> list[dict]:
        path = self.ddir / f"grefs({self.split_by}).json"
        try:
            with open(path, encoding="utf-8") as fh:
                refs = json.load(fh)
        except FileNotFoundError:
            raise FileNotFoundError(f"annotation file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"corrupt annotation file {path}: {exc}") from None
        if not isinstance(refs, list):
            raise ValueError(f"{path} is not a gRefCOCO grefs file (expected a list)")
        return refs

    def target_ann_ids(self, ref: dict) -> list:
        if ref.get("no_target"):
            return []
        ids = ref.get("ann_id", [])
        ids = ids if isinstance(ids, list) else [ids]
        return [a for a in ids if a != -1 and a is not None]
