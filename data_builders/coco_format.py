"""``coco-format``: any COCO-style instance JSON (CVAT, Label Studio, Roboflow... exports).

Layout::

    <root>/<file_name of each image entry>         (--root IMAGE_DIR)
    ANN.json  (--ann PATH; default: the first of <root>/_annotations.coco.json,
               <root>/annotations/instances_default.json, <root>/instances.json, <root>/annotations.json)

    {"images": [{"id": 1, "file_name": "a.jpg", "height": 480, "width": 640}, ...],
     "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "iscrowd": 0,
                      "segmentation": [[x0, y0, x1, y1, ...], ...]             # polygons, or
                                      {"size": [h, w], "counts": "..." | [..]}}, ...],  # RLE
     "categories": [{"id": 3, "name": "cup"}, ...]}

Tasks (``--task ...``):

* ``referring`` (default): one sample per (image, category present); the question names the category,
  the target is the union of its instances (crowd regions included). Plus no-target samples for absent
  categories: per image ``floor(absent_rate * max(present, 1) + u)`` of them (``u`` uniform, seeded per
  image), categories drawn without replacement, seeded.
* ``semantic``: one label map per image with the category names (overlaps: the smaller annotation lies
  on top); the question lists the present classes (``--mode all_classes``: every category).
* ``instance``: instance-numbered labels ``"<name> <k>"`` (:mod:`text4seg.descriptors.instances`);
  crowd annotations are left out (a crowd is not one instance). Rows carry ``task: "semantic"`` and an
  instance-id label map, so ``text4seg evaluate`` and :mod:`text4seg.evaluation.instances` both read them.

Ground truth: referring rows store the full-resolution RLE; semantic and instance rows (``--with-gt``)
write a label-map PNG per image to ``--label-dir`` (default ``<out stem>_labels/``); pixel value ``v``
is ``gt.classes[v]`` (for ``instance``: ``"<name> <k>"``, numbered like the answer, then the instances
too small for the grid). Options: :attr:`CocoFormat.options` (``text4seg build coco-format --help``);
``--split-ratio`` splits train/val by image id hash (see :mod:`data_builders.owndata`), ``--no-check-images``
bounds each entry's claimed size by the pixel limit only instead of checking it against the image header.
"""

from __future__ import annotations

import math
import re
from functools import partial
from pathlib import Path

import numpy as np

from text4seg.data.records import Sample
from text4seg.data.rle import rle_to_json
from text4seg.descriptors import encode, grid_labels, normalize_label

from .base import CHECK_IMAGES, BadInput, BuildConfig, Builder
from .coco import mask_api, rle_area, rle_of_segmentations, sample_rle
from .common import (
    PLACEHOLDER,
    check_sample_pixels,
    checked_size,
    claimed_size,
    descriptor_template,
    empty_grid,
    hashable_id,
    inside,
    label_of,
    load_json,
)
from .options import Option
from .owndata import (
    LABEL_DIR,
    SPLIT_RATIO,
    instance_turn,
    label_dir_of,
    split_of,
    split_ratio_of,
    write_label_png,
)
from .prompts import refer_turn, semantic_turn

TASKS = ("referring", "semantic", "instance")
ANN_CANDIDATES = (
    "_annotations.coco.json",
    "annotations/instances_default.json",
    "instances.json",
    "annotations.json",
)


def _load(path: Path) -> dict:
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path} is not a COCO instance file (no 'images' list)")
    return data


def _merge(rles: list[dict]) -> dict:
    return mask_api().merge(rles, intersect=False)


class CocoFormat(Builder):
    name = "coco-format"
    help = "any COCO-style instance JSON (CVAT/Label Studio/Roboflow): --root IMAGES --ann FILE.json"
    layout = "<root>/<images' file_name>; --ann instances.json (default: looked up under <root>)"
    options = (
        Option(
            "ann",
            str,
            "",
            "the COCO instance JSON (unset: the first of " + ", ".join(ANN_CANDIDATES) + " under --root)",
        ),
        Option("task", str, "referring", "what a sample asks for", choices=TASKS),
        Option("absent_rate", float, 0.25, "no-target samples per present category (referring)"),
        Option(
            "mode",
            str,
            "open_vocab",
            "semantic/instance questions name the present classes (open_vocab) or all (all_classes)",
            choices=("open_vocab", "all_classes"),
        ),
        SPLIT_RATIO,
        LABEL_DIR,
        CHECK_IMAGES,
    )

    def __init__(self, cfg: BuildConfig):
        Builder.__init__(self, cfg)
        cfg = self.cfg
        self.root = Path(cfg.root)
        self.task = self.opt("task")
        self.absent_rate = self.opt("absent_rate")
        if not 0 <= self.absent_rate <= 100:
            raise ValueError(f"absent_rate must be >= 0, got {self.absent_rate}")
        self.mode = self.opt("mode")
        self.check_images = self.opt("check_images")
        self.ann_path = self._ann_path(self.opt("ann"))
        data = _load(self.ann_path)
        self._index(data)
        ratio = split_ratio_of(cfg)
        ids = list(self.images)
        if ratio is not None:
            ids = [i for i in ids if split_of(str(i), cfg.seed, ratio) == cfg.split]
        self._units = ids
        self.label_dir = label_dir_of(cfg, "text4seg_labels")
        self._empty = encode(empty_grid(cfg.grid), cfg.scheme)
        self.classes = ["others", *(normalize_label(n) for n in dict.fromkeys(self.categories.values()))]
        if self.task == "instance":
            self.classes = self._instance_classes()
        self.class_index = {c: v for v, c in enumerate(self.classes)}

    def _ann_path(self, given: str) -> Path:
        if given:
            return Path(given).expanduser().resolve()
        for c in ANN_CANDIDATES:
            if (self.root / c).is_file():
                return self.root / c
        raise FileNotFoundError(
            f"no annotation file: pass --ann PATH (looked for {list(ANN_CANDIDATES)} under {self.root})"
        )

    def _index(self, data: dict) -> None:
        p = self.ann_path
        self.images: dict = {}
        for n, im in enumerate(data["images"]):
            try:  # the size is checked per image in make(), against the image's header
                iid = hashable_id(im["id"], f"{p}: images[{n}]")
                self.images[iid] = (str(im["file_name"]), im["height"], im["width"])
            except (KeyError, TypeError) as exc:
                raise ValueError(f"{p}: images[{n}] needs id, file_name, height, width ({exc!r})") from None
        self.categories: dict = {}
        for n, c in enumerate(data.get("categories") or []):
            try:
                self.categories[hashable_id(c["id"], f"{p}: categories[{n}]")] = str(c["name"])
            except (KeyError, TypeError) as exc:
                raise ValueError(f"{p}: categories[{n}] needs id and name ({exc!r})") from None
        self.anns: dict = {i: [] for i in self.images}
        for n, a in enumerate(data.get("annotations") or []):
            if not isinstance(a, dict) or "image_id" not in a:
                raise ValueError(f"{p}: annotations[{n}] has no image_id")
            hashable_id(a["image_id"], f"{p}: annotations[{n}]", "image_id")
            if a.get("id") is not None:  # written to every row's source.ann_ids
                hashable_id(a["id"], f"{p}: annotations[{n}]", "id")
            if "category_id" in a:
                hashable_id(a["category_id"], f"{p}: annotation {str(a.get('id', n))[:40]}", "category_id")
            if a["image_id"] not in self.anns:
                raise ValueError(
                    f"{p}: annotation {a.get('id', n)!r} names image_id {a['image_id']!r}, not in images"
                )
            self.anns[a["image_id"]].append(a)

    def _instance_classes(self) -> list[str]:
        """``others`` then ``"<name> <k>"`` for k up to the most instances of the name in one image."""
        from text4seg.descriptors.instances import instance_label

        most: dict[str, int] = {normalize_label(n): 0 for n in self.categories.values()}
        for image_id in self._units:
            per: dict[str, int] = {}
            for a in self.anns[image_id]:
                name = normalize_label(self.categories.get(a.get("category_id"), ""))
                if name in most and not a.get("iscrowd"):
                    per[name] = per.get(name, 0) + 1
            for name, k in per.items():
                most[name] = max(most[name], k)
        return ["others", *(instance_label(n, k) for n, top in most.items() for k in range(1, top + 1))]

    def units(self) -> list:
        return self._units

    # ------------------------------------------------------------------------------------------- make
    def _ann_rle(self, a: dict, h: int, w: int) -> dict:
        try:
            return self._ann_rle_of(a, h, w)
        except (TypeError, ValueError, OverflowError) as exc:  # a size of Infinity, a list, a string...
            if isinstance(exc, BadInput):
                raise
            raise BadInput(
                f"annotation {str(a.get('id'))[:40]!r} in {self.ann_path}: bad segmentation ({exc})",
                cause="bad_segmentation",
            ) from None

    def _ann_rle_of(self, a: dict, h: int, w: int) -> dict:
        where = f"of annotation {a.get('id')!r} in {self.ann_path}"
        if "segmentation" not in a:
            raise BadInput(f"annotation {a.get('id')!r} in {self.ann_path} has no segmentation")
        seg = a["segmentation"]
        ok = (isinstance(seg, list) and all(isinstance(p, list) for p in seg)) or (
            isinstance(seg, dict)
            and isinstance(seg.get("counts"), (str, list))
            and len(seg.get("size", ())) == 2
        )
        if not ok:
            raise BadInput(
                f"annotation {a.get('id')!r} in {self.ann_path}: segmentation must be a list of polygons or "
                f"an RLE {{size: [h, w], counts: str | list}}, got {str(seg)[:80]!r}"
            )
        if isinstance(seg, dict) and [int(v) for v in seg["size"]] != [h, w]:
            raise BadInput(
                f"annotation {a.get('id')!r} in {self.ann_path}: RLE size {seg['size']} differs from"
                f" the image's height x width [{h}, {w}]"
            )
        return rle_of_segmentations([seg], h, w, where=where)

    def _category(self, a: dict) -> str:
        try:
            return self.categories[a["category_id"]]
        except KeyError:
            raise BadInput(
                f"annotation {a.get('id')!r} in {self.ann_path}: category_id {a.get('category_id')!r} "
                f"is not in categories {sorted(self.categories)[:20]}"
            ) from None

    def where(self, unit) -> str:
        return f"image id {unit!r} in {self.ann_path}"

    def make(self, unit, rep: int) -> list[Sample]:
        file_name, h, w = self.images[unit]
        path = inside(self.root, file_name)
        where = self.where(unit)
        if self.check_images:
            if not path.exists():
                raise BadInput(f"image not found: {path} ({where})", cause="image_not_found")
            h, w = checked_size(path, h, w, where)
        else:
            h, w = claimed_size(h, w, where)
        anns = self.anns[unit]
        base = dict(image=str(path), width=w, height=h)
        if self.task == "referring":
            return self._referring(unit, rep, anns, base)
        return self._label_map(unit, rep, anns, base)

    def _referring(self, unit, rep: int, anns: list[dict], base: dict) -> list[Sample]:
        cfg, h, w = self.cfg, base["height"], base["width"]
        by_cat: dict = {}
        for a in anns:
            by_cat.setdefault(a.get("category_id"), []).append(a)
        out = []
        for cat_id, group in by_cat.items():
            name = self._category(group[0])
            rles = [self._ann_rle(a, h, w) for a in group]  # one by one: errors name the annotation
            rle = rles[0] if len(rles) == 1 else _merge(rles)
            fg = sample_rle(rle, *cfg.grid)
            sid = self.sample_id(unit, cat_id, rep=rep)
            # a present category is a target: empty or lost on the grid, it is screened, never written absent
            # (a target with a cell on the grid needs no screening: Builder.screen_target)
            if not fg.any() and self.screen_target(
                partial(rle_area, rle), False, 1, f"{sid} ({self.where(unit)})"
            ):
                continue
            label = label_of(name)
            desc = descriptor_template(fg, cfg.scheme).replace(PLACEHOLDER, label)
            turn = refer_turn(self.rng(sid), name, desc)
            src = {"ann_ids": [a.get("id") for a in group], "ref_id": str(cat_id)}
            out.append(self._ref_sample(sid, turn, [label], rle, unit, src, base))
        absent = [c for c in self.categories if c not in by_cat]
        rng = self.rng(self.sample_id(unit, "absent", rep=rep))
        k = min(len(absent), math.floor(self.absent_rate * max(len(by_cat), 1) + rng.random()))
        for cat_id in rng.sample(absent, k):
            sid = self.sample_id(unit, cat_id, "absent", rep=rep)
            turn = refer_turn(self.rng(sid), self.categories[cat_id], self._empty, empty=True)
            rle = rle_of_segmentations([], h, w)
            out.append(self._ref_sample(sid, turn, [], rle, unit, {"ref_id": str(cat_id)}, base))
        return out

    def _ref_sample(self, sid, turn, labels, rle, unit, src, base) -> Sample:
        return self.sample(
            sid,
            turns=[turn],
            task="res",
            labels=labels,
            source={"dataset": self.name, "split": self.cfg.split, "image_id": unit, **src},
            masks=[rle_to_json(rle)] if self.cfg.with_gt else [],
            **base,
        )

    def _label_map(self, unit, rep: int, anns: list[dict], base: dict) -> list[Sample]:
        mu = mask_api()
        cfg, h, w = self.cfg, base["height"], base["width"]
        if self.task == "instance":
            anns = [a for a in anns if not a.get("iscrowd")]
        names = [normalize_label(self._category(a)) for a in anns]
        if cfg.with_gt or self.task == "instance":  # full-resolution masks: bound what one sample takes
            check_sample_pixels(len(anns) + 1, h, w, self.where(unit))
        rles = [self._ann_rle(a, h, w) for a in anns]
        sid = self.sample_id(unit, rep=rep)
        rng = self.rng(sid)
        gt: dict = {}
        if self.task == "instance":
            from text4seg.descriptors.instances import instance_label, number_instances

            masks = [mu.decode(r).astype(bool) for r in rles]
            grid, insts, order = number_instances(masks, names, cfg.grid)
            present = list(dict.fromkeys(i.name for i in insts))
            labels = [i.label for i in insts]
            turn = instance_turn(
                rng, present if self.mode == "open_vocab" else self.classes_names(), encode(grid, cfg.scheme)
            )
            if cfg.with_gt:
                k_of = {i.index: i.k for i in insts}
                count: dict[str, int] = {}
                for i in order:  # visible first in each class: number the invisible ones after them
                    if i not in k_of:
                        vis = sum(1 for j in k_of if names[j] == names[i])
                        count[names[i]] = count.get(names[i], vis) + 1
                        k_of[i] = count[names[i]]
                values = [self.class_index[instance_label(names[i], k_of[i])] for i in range(len(anns))]
                gt = self._gt(unit, masks, values, h, w)
        else:
            areas = [float(mu.area(r)) for r in rles]
            cells = empty_grid(cfg.grid).astype(object)
            for i in sorted(range(len(rles)), key=lambda j: (-areas[j], -j)):
                cells[sample_rle(rles[i], *cfg.grid)] = names[i]
            grid = cells.astype(str)
            labels = grid_labels(grid)
            asked = labels if self.mode == "open_vocab" else self.classes_names()
            mode = "open_vocab" if self.mode == "open_vocab" else "conditioned"
            turn = semantic_turn(rng, mode, asked, encode(grid, cfg.scheme))
            if cfg.with_gt:
                masks = [mu.decode(r).astype(bool) for r in rles]
                gt = self._gt(unit, masks, [self.class_index[n] for n in names], h, w, areas)
        return [
            self.sample(
                sid,
                turns=[turn],
                task="semantic",
                labels=labels,
                asked=self.classes_names() if self.task == "semantic" and self.mode == "all_classes" else [],
                source={
                    "dataset": self.name,
                    "split": cfg.split,
                    "image_id": unit,
                    "ann_ids": [a.get("id") for a in anns],
                },
                **base,
                **gt,
            )
        ]

    def classes_names(self) -> list[str]:
        """Every category name (normalised, first-appearance order)."""
        return list(dict.fromkeys(normalize_label(n) for n in self.categories.values()))

    def _gt(self, unit, masks, values, h, w, areas=None) -> dict:
        """Paint the full-resolution label map (largest first) and write it; the ``gt`` fields."""
        lm = np.zeros((h, w), dtype=np.int32)
        areas = areas or [int(m.sum()) for m in masks]
        for i in sorted(range(len(masks)), key=lambda j: (-areas[j], -j)):
            lm[masks[i]] = values[i]
        out = self.label_dir / self.cfg.split / (re.sub(r"[^\w.-]", "_", str(unit)) + ".png")
        write_label_png(out, lm)
        from text4seg.data.rle import mask_to_rle

        return {
            "label_map": str(out),
            "classes": list(self.classes),
            "ignore": [],
            "masks": [mask_to_rle(lm > 0)],
        }
