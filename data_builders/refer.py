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
recipe). A ref's mask is computed once for all its sentences, from its segmentation in any form the REFER
files use (polygons, a list of RLE dicts as in refCLEF, a bare RLE dict as COCO's crowd annotations:
:func:`data_builders.coco.segmentation_rles`); gRefCOCO's several targets make one union mask and
no-target expressions an all-``others`` grid. Image sizes come from ``instances.json`` (images are never
opened; their existence is checked once per image unless ``--set check_images=false``). The ``.p``
pickles go through :mod:`data_builders.safe_pickle`.

Split names as the REFER API: ``train``/``val`` exactly; ``testA``/``testB``/``testC`` every split whose
name is ``test`` + letters including that one (REFER also counts ``testAB``...); ``test`` the union of
every split whose name contains ``test`` (refcoco/refcoco+ unc: testA + testB; refcocog umd: test).
A sample's id and ``source.split`` carry its ref's own split.

No silent empty targets: a ref that should have a target but whose decoded mask is empty
(``empty_target``) or whose grid has no foreground cell (``lost_on_grid``) is counted in the report and
dropped, kept or fails the build per :meth:`data_builders.base.Builder._empty_policy`.

gRefCOCO follows ReLA (its authors): crowd annotations are left out of a ref's target
(``--keep-crowd`` keeps them); the report counts the refs this changed.

Options: ``split_by`` (unc/umd/google/berkeley), ``image_dir`` (relative to root), ``check_images``,
``turns`` (> 1: several expressions of one image in one multi-round sample), ``empty_targets``
(drop/keep/fail), ``keep_crowd`` (grefcoco), ``templates`` (``ours``, or ``official``: the released
Text4Seg models' questions and answers verbatim, :func:`data_builders.prompts.official_refer_turn`, the
expression lower-cased and stripped, commas also removed outside the training splits as the official
evaluation does).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from text4seg.data.records import Sample
from text4seg.data.rle import rle_to_json
from text4seg.descriptors import encode

from .base import CHECK_IMAGES, TEMPLATES, TRAIN_SPLITS, BadInput, BuildConfig, Builder
from .coco import CocoIndex, rle_area, sample_rle
from .common import PLACEHOLDER, checked_size, descriptor_template, empty_grid, inside, label_of, load_json
from .options import Option
from .prompts import official_refer_turn, refer_turn
from .safe_pickle import safe_load

COCO_IMAGES = "images/mscoco/images/train2014"
CLEF_IMAGES = "images/saiapr_tc-12"


def split_matches(wanted: str, split: str) -> bool:
    """Whether a ref of ``split`` belongs to the requested split ``wanted`` (the REFER API's rule)."""
    if wanted == "test":
        return "test" in split
    if wanted in ("testA", "testB", "testC"):
        return split.startswith("test") and wanted[-1] in split[4:]
    return split == wanted


def _sent_text(sent: dict) -> str:
    text = sent.get("sent") or sent.get("raw") or ""
    return " ".join(str(text).split())


class ReferBase(Builder):
    """Shared REFER/gREFER machinery; subclasses set ``dataset``, ``split_bys``, ``image_subdir``."""

    dataset = ""
    split_bys: tuple[str, ...] = ()
    image_subdir = COCO_IMAGES
    task = "res"
    options = (
        Option("split_by", str, None, "the REFER partition (unset: the dataset's first, e.g. unc)"),
        Option("image_dir", str, None, "image folder under --root (unset: the dataset's usual one)"),
        CHECK_IMAGES,
        Option("turns", int, 1, "expressions of one ref per sample (multi-turn when > 1)"),
        TEMPLATES,
    )

    def __init__(self, cfg: BuildConfig):
        Builder.__init__(self, cfg)
        self.refs_path = Path()
        self.split_by = self.opt("split_by", self.split_bys[0])
        if self.split_by not in self.split_bys:
            raise ValueError(
                f"unknown split_by {self.split_by!r} for {self.name}; choose one of {list(self.split_bys)}"
            )
        self.ddir = Path(cfg.root) / self.dataset
        self.image_dir = inside(Path(cfg.root), self.opt("image_dir", self.image_subdir))
        self.check_images = self.opt("check_images")
        self.turns = self.opt("turns")
        self.official = self.opt("templates") == "official"
        self.strip_commas = cfg.split not in TRAIN_SPLITS  # the official evaluation removes commas
        if self.turns < 1:
            raise ValueError(f"turns must be >= 1, got {self.turns}")
        refs = self.load_refs()
        splits = sorted({str(r.get("split")) for r in refs})
        choices = splits + (["test"] if any("test" in s for s in splits) and "test" not in splits else [])
        if cfg.split not in choices:
            raise ValueError(
                f"unknown split {cfg.split!r} for {self.name} ({self.split_by}); choose one of {choices}"
            )
        self.coco = CocoIndex(self.ddir / "instances.json")
        self.refs = [r for r in refs if split_matches(cfg.split, str(r.get("split")))]
        self._exists: dict[str, tuple[str, str]] = {}  # file name -> (path, error message or "")
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

    def target_ann_ids(self, ref: dict, rep: int) -> tuple[list, bool]:
        """(annotation ids that make the ref's target, whether the ref is meant to have a target)."""
        raise NotImplementedError

    def units(self) -> list[tuple[int, ...]]:
        return self._units

    def where(self, unit) -> str:
        ids = [self.refs[i].get("ref_id") if isinstance(self.refs[i], dict) else i for i in unit]
        return f"ref(s) {str(ids)[:80]} in {self.refs_path}"

    def _image_path(self, file_name: str, h: int, w: int) -> str:
        """Absolute image path, checked once per image unless ``check_images`` is off: it exists and its
        header has the height x width that ``instances.json`` claims (masks are drawn at that size)."""
        hit = self._exists.get(file_name)
        if hit is None:
            path = inside(self.image_dir, str(file_name))
            err = ""
            if self.check_images:
                try:
                    checked_size(path, h, w, f"{self.coco.path}: image {file_name!r}")
                except BadInput as exc:  # a missing image is named so whatever else is wrong
                    missing = exc.cause == "image_not_found" or not path.exists()
                    err = f"image not found: {path}" if missing else str(exc)
            hit = self._exists[file_name] = (str(path), err)
        if hit[1]:
            raise BadInput(
                hit[1], "image_not_found" if hit[1].startswith("image not found") else "size_mismatch"
            )
        return hit[0]

    def _ref_items(self, ref: dict, rep: int) -> tuple[dict, list, bool, list[dict]]:
        """(compressed RLE of the ref's target, target ann ids, meant to have a target, sentences)."""
        file_name, h, w = self.coco.image(ref["image_id"])
        self._image_path(file_name, h, w)  # before any mask is made at the claimed size
        ann_ids, wants_target = self.target_ann_ids(ref, rep)
        rle = self.coco.rle(ann_ids, h, w)
        sents = ref.get("sentences") or []
        if not isinstance(sents, list):
            raise BadInput(
                f"ref {ref.get('ref_id')} in {self.refs_path} has no sentence list", "malformed_record"
            )
        return rle, ann_ids, wants_target, sents

    def _unit_targets(self, unit: tuple[int, ...], rep: int) -> Iterator[tuple[dict, dict, list, list, Any]]:
        """Each kept ref of ``unit`` as ``(ref, rle, ann_ids, sentences, fg)``: ``fg`` the ``(rows, cols)``
        bool target grid, None for a ref meant to have no target. A ref whose target is empty
        (``empty_target``) or has no grid cell (``lost_on_grid``) is flagged per ``empty_targets`` and left
        out when the policy drops it."""
        rows, cols = self.cfg.grid
        for i in unit:
            ref = self.refs[i]
            rle, ann_ids, wants_target, sents = self._ref_items(ref, rep)
            fg = None
            if wants_target:
                fg = sample_rle(rle, rows, cols)
                if not fg.any():  # a cell on the target needs no screening (Builder.screen_target)
                    where = f"ref {ref.get('ref_id')} (ann_id {ref.get('ann_id')!r}) in {self.refs_path}"
                    if self.screen_target(partial(rle_area, rle), False, len(sents), where):
                        continue
            yield ref, rle, ann_ids, sents, fg

    def make(self, unit: tuple[int, ...], rep: int) -> list[Sample]:
        cfg = self.cfg
        rows, cols = cfg.grid
        items = []  # (ref, rle, ann_ids, sentence, descriptor template or None)
        for ref, rle, ann_ids, sents, fg in self._unit_targets(unit, rep):
            tpl = None if fg is None else descriptor_template(fg, cfg.scheme)
            for sent in sents:
                items.append((ref, rle, ann_ids, sent, tpl))
        if not items:
            return []
        file_name, h, w = self.coco.image(items[0][0]["image_id"])
        path = self._image_path(file_name, h, w)
        empty = self._empty or encode(empty_grid((rows, cols)), cfg.scheme)
        self._empty = empty
        out = []
        for start in range(0, len(items), self.turns):
            chunk = items[start : start + self.turns]
            ref0, sent0 = chunk[0][0], chunk[0][3]
            split = str(ref0.get("split"))
            sid = self.sample_id(ref0.get("ref_id"), sent0.get("sent_id", start), rep=rep, split=split)
            rng = self.rng(sid)
            turns, labels, masks, ann_all, sent_ids, ref_ids = [], [], [], [], [], []
            for ref, rle, ann_ids, sent, tpl in chunk:
                expr = _sent_text(sent)
                label = label_of(expr)
                desc = empty if tpl is None else tpl.replace(PLACEHOLDER, label)
                if self.official:
                    turns.append(official_refer_turn(rng, expr, desc, self.strip_commas))
                else:
                    turns.append(refer_turn(rng, expr, desc, empty=tpl is None))
                labels.append(label)
                if cfg.with_gt:
                    masks.append(rle_to_json(rle))
                ann_all.extend(ann_ids)
                sent_ids.append(sent.get("sent_id", ""))
                if str(ref.get("ref_id")) not in ref_ids:
                    ref_ids.append(str(ref.get("ref_id")))
            out.append(
                self.sample(
                    sid,
                    image=path,
                    width=w,
                    height=h,
                    turns=turns,
                    task=self.task,
                    labels=labels,
                    source={
                        "dataset": self.name,
                        "split": split,
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
        path = self.refs_path = self.ddir / f"refs({self.split_by}).p"
        refs = safe_load(path)
        if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs[:100]):
            raise ValueError(f"{path} is not a REFER refs file (expected a list of dicts)")
        return refs

    def target_ann_ids(self, ref: dict, rep: int) -> tuple[list, bool]:
        if "ann_id" not in ref:
            raise BadInput(f"ref {ref.get('ref_id')} in {self.refs_path} has no ann_id", "malformed_record")
        return [ref["ann_id"]], True


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


class RefZOM(Refer):
    """Ref-ZOM (Hu et al., ICCV 2023): REFER layout, ``source`` says one-to-zero / one / many.

    ``refs(final).p`` as the authors' loader reads it: ``ann_id`` an int or a list of ints (one-to-many:
    the union), ``source == "zero"`` for an expression with no target in the image (its ``ann_id`` still
    names an annotation, which is not the target). Crowd annotations stay in a target (the authors'
    loader unions every listed annotation). Splits ``train`` and ``test``.
    """

    name = dataset = "ref-zom"
    help = "Ref-ZOM (zero/one/many targets): <root>/ref-zom/refs(final).p + instances.json, COCO trainval2014"
    split_bys = ("final",)
    task = "gres"
    image_subdir = "images/trainval2014"
    layout = "<root>/ref-zom/refs(final).p, <root>/ref-zom/instances.json, <root>/images/trainval2014/"

    def target_ann_ids(self, ref: dict, rep: int) -> tuple[list, bool]:
        if ref.get("source") == "zero":
            return [], False
        ids = ref.get("ann_id")
        ids = ids if isinstance(ids, list) else [ids]
        if not ids or any(not isinstance(a, int) for a in ids):
            raise BadInput(f"ref {ref.get('ref_id')} in {self.refs_path}: bad ann_id {ref.get('ann_id')!r}")
        return ids, True


class GRefCOCO(ReferBase):
    name = dataset = "grefcoco"
    help = "gRefCOCO (multi/no-target): <root>/grefcoco/grefs(unc).json + instances.json, COCO train2014"
    split_bys = ("unc",)
    task = "gres"
    layout = "<root>/grefcoco/grefs(unc).json, <root>/grefcoco/instances.json, <root>/" + COCO_IMAGES + "/"

    def load_refs(self) -> list[dict]:
        path = self.refs_path = self.ddir / f"grefs({self.split_by}).json"
        refs = load_json(path)
        if not isinstance(refs, list):
            raise ValueError(f"{path} is not a gRefCOCO grefs file (expected a list)")
        return refs

    options = (
        *ReferBase.options,
        Option("keep_crowd", bool, False, "keep crowd annotations in targets (ReLA leaves them out)"),
    )

    def __init__(self, cfg: BuildConfig):
        ReferBase.__init__(self, cfg)
        self.keep_crowd = self.opt("keep_crowd")

    def conventions(self) -> dict:
        return {
            "crowd": "kept in targets" if self.keep_crowd else "left out of targets (ReLA)",
            "crowd_removed_refs": 0,
        }

    def target_ann_ids(self, ref: dict, rep: int) -> tuple[list, bool]:
        if ref.get("no_target"):
            return [], False
        ids = ref.get("ann_id", [])
        ids = ids if isinstance(ids, list) else [ids]
        ids = [a for a in ids if a != -1 and a is not None]
        if not ids or self.keep_crowd:
            return ids, bool(ids)
        kept = [a for a in ids if not self.coco.is_crowd(a)]
        if len(kept) < len(ids) and rep == 0:
            self.count("crowd_removed_refs")
        return kept, True
