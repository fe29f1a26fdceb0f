"""Semantic segmentation builders: COCO-Stuff, ADE20K, PASCAL Context-59 and PASCAL VOC-20.

Every image (label PNG) is one sample. Question families (``text4seg/templates/semantic.json``):
open-vocabulary (name every region), partial (a subset of the present classes) and conditioned (a class
list with distractors absent from the image); training mixes them ``semantic_mix`` = 1:3:6 (the paper)
and crops image and mask at random (``crop_prob`` 0.5 on train splits, scale ``crop_min``..1 per side;
crops are written as JPEG to ``crop_dir``, default ``<out stem>_crops/``). Evaluation splits ask for the
dataset's full class list (``mode=all_classes``) and store the label-map path, the class list and the
ignored values in ``gt``. Pixels of ignored values become ``others`` in the grid.

Layouts (``--root``)::

    coco-stuff:  images/{train2017,val2017}/*.jpg   stuffthingmaps/{train2017,val2017}/*.png  (255 ignore)
    ade20k:      ADEChallengeData2016 root: images/{training,validation}/*.jpg
                 annotations/{training,validation}/*.png  (0 = other, ignored)
    pc59:        JPEGImages/*.jpg  SegmentationClassContext/*.png (0 = background, ignored; 1..59)
                 ImageSets/SegmentationContext/{train,val}.txt
    voc20:       JPEGImages/*.jpg  SegmentationClass/*.png (palette; 0 background and 255 ignored)
                 ImageSets/Segmentation/{train,val}.txt

Options: ``mode`` (mix|open_vocab|partial|conditioned|all_classes), ``semantic_mix``, ``crop_prob``,
``crop_min``, ``crop_dir``, ``max_distractors``, ``check_images``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from text4seg.data.images import open_image
from text4seg.data.jsonl import atomic_path
from text4seg.data.records import Sample
from text4seg.data.rle import mask_to_rle
from text4seg.descriptors import mask_to_grid

from . import classes as C
from .base import CHECK_IMAGES, TEMPLATES, TRAIN_SPLITS, BadInput, BuildConfig, Builder
from .common import inside, read_text, side_dir
from .options import Option
from .prompts import SEMANTIC_MODES, semantic_turn

MODES = ("mix", *SEMANTIC_MODES, "all_classes")


def read_label_png(path: Path) -> np.ndarray:
    """``(H, W)`` integer label map of a PNG (palette PNGs give their indices).

    ``BadInput`` names a missing or unreadable file."""
    try:
        with open_image(path) as im:
            if im.mode not in ("P", "L", "I", "I;16"):
                raise BadInput(f"label map {path} has mode {im.mode}; expected a single-channel PNG")
            return np.asarray(im)
    except FileNotFoundError:
        raise BadInput(f"label map not found: {path}") from None
    except BadInput:
        raise
    except (ValueError, OSError) as exc:
        raise BadInput(f"cannot read label map {path}: {exc}") from None


def present_values(lm: np.ndarray) -> list[int]:
    """The distinct values of a label map, ascending: ``np.unique``, or one counting pass for an 8-bit map
    (no sort, no hash table)."""
    if lm.dtype == np.uint8:
        return np.flatnonzero(np.bincount(lm.ravel(), minlength=256)).tolist()
    return np.unique(lm).tolist()


def _check_image(image: Path, shape: tuple[int, int], keep: bool = False):
    """``BadInput`` unless ``image`` exists, decodes to the end (a truncated JPEG fails here) and is as
    large as its label map (``shape`` = ``(h, w)``). ``keep``: return the decoded image as RGB (a crop
    then uses it instead of decoding the file again), else None."""
    h, w = shape
    try:
        with open_image(image) as im:
            if im.size != (w, h):
                raise BadInput(f"image {image} is {im.size[0]}x{im.size[1]} but its label map is {w}x{h}")
            im.load()
            return im.convert("RGB") if keep else None
    except FileNotFoundError:
        raise BadInput(f"image not found: {image}") from None
    except BadInput:
        raise
    except (ValueError, OSError) as exc:
        raise BadInput(f"cannot read image {image}: {exc}") from None


# the official questions list the benchmark's class names joined by "|"; the names the released models saw
OFFICIAL_REFUSED = (
    "{name}: --templates official is refused: the released models' class-name lists (cls_pas20.txt, "
    "cls_pc59.txt, cls_ade20k_ori.txt, COCO-Stuff's) are not public (only VOC's 'ship', 'TV', "
    "'potted plant' are known), so the official questions would list names the models never saw "
    "(docs/released.md)"
)


class SemanticBase(Builder):
    """Label-map datasets. Subclasses set ``names`` (PNG value -> class name or None), ``ignore``,
    ``split_alias`` (split -> folder/list name) and implement :meth:`list_items`."""

    names: tuple[str | None, ...] = ()
    value_offset = 0  # PNG value v is names[v - value_offset]
    ignore: tuple[int, ...] = (255,)
    split_alias: dict[str, str] = {}

    options = (
        Option(
            "mode",
            str,
            None,
            "question family (unset: mix on a training split, else all_classes)",
            choices=MODES,
        ),
        Option(
            "semantic_mix",
            list,
            (1.0, 3.0, 6.0),
            "weights of open_vocab, partial, conditioned in mix",
            item=float,
        ),
        Option(
            "crop_prob", float, None, "probability of a random crop (unset: 0.5 on a training split, else 0)"
        ),
        Option("crop_min", float, 0.5, "smallest crop side, as a fraction of the image's"),
        Option("max_distractors", int, 10, "absent classes a question may ask for at most"),
        Option("crop_dir", str, "", "folder for cropped images (default: <out stem>_crops/)"),
        CHECK_IMAGES,
        TEMPLATES,
    )

    def __init__(self, cfg: BuildConfig):
        Builder.__init__(self, cfg)
        if self.opt("templates") == "official":
            raise ValueError(OFFICIAL_REFUSED.format(name=self.name))
        self.root = Path(cfg.root)
        self.split_name = self.split_alias.get(cfg.split, cfg.split)
        train = cfg.split in TRAIN_SPLITS or self.split_name in TRAIN_SPLITS
        self.mode = self.opt("mode", "mix" if train else "all_classes")
        self.mix = self.opt("semantic_mix")
        if len(self.mix) != 3 or min(self.mix) < 0 or sum(self.mix) <= 0:
            raise ValueError(f"semantic_mix needs 3 non-negative weights, got {self.mix}")
        self.crop_prob = self.opt("crop_prob", 0.5 if train else 0.0)
        self.crop_min = self.opt("crop_min")
        if not (0 <= self.crop_prob <= 1 and 0 < self.crop_min <= 1):
            raise ValueError(
                f"need 0 <= crop_prob <= 1 and 0 < crop_min <= 1, got {self.crop_prob}, {self.crop_min}"
            )
        self.max_distractors = self.opt("max_distractors")
        self.check_images = self.opt("check_images")
        crop_dir = self.opt("crop_dir")
        if crop_dir:
            self.crop_dir = Path(crop_dir).resolve()
        elif cfg.out is not None:
            self.crop_dir = side_dir(cfg.out.parent / f"{cfg.out.stem}_crops", cfg.out.parent)
        else:
            self.crop_dir = self.root / "text4seg_crops"
        # value -> name table over the whole PNG value range, with ignored values and unnamed ids as None
        table: dict[int, str] = {}
        for i, n in enumerate(self.names):
            if n is not None and i + self.value_offset not in self.ignore:
                table[i + self.value_offset] = n
        self.table = table
        self.gt_classes = ["others"] * (max(table) + 1)
        for v, n in table.items():
            self.gt_classes[v] = n
        self.all_names = [n for n in self.names if n is not None]
        self.items = self.list_items()

    def list_items(self) -> list[tuple[Path, Path]]:
        """``[(image path, label PNG path), ...]`` of the split, sorted."""
        raise NotImplementedError

    def units(self) -> list[int]:
        return list(range(len(self.items)))

    def _pairs_from_dirs(
        self, img_dir: Path, ann_dir: Path, img_ext: str = ".jpg"
    ) -> list[tuple[Path, Path]]:
        if not ann_dir.is_dir():
            raise FileNotFoundError(
                f"annotation folder not found: {ann_dir} (expected layout: {self.layout})"
            )
        return [(img_dir / (p.stem + img_ext), p) for p in sorted(ann_dir.glob("*.png"))]

    def _pairs_from_list(self, list_file: Path, img_dir: Path, ann_dir: Path) -> list[tuple[Path, Path]]:
        if not list_file.is_file():
            have = sorted(p.stem for p in list_file.parent.glob("*.txt")) if list_file.parent.is_dir() else []
            raise ValueError(f"unknown split {self.cfg.split!r}: {list_file} not found; splits here: {have}")
        stems = [s.strip() for s in read_text(list_file, "split list").split() if s.strip()]
        return [(inside(img_dir, s + ".jpg"), inside(ann_dir, s + ".png")) for s in stems]

    # ------------------------------------------------------------------------------------------- make
    def _crop(
        self, rng, crop: bool, image: Path, lm: np.ndarray, decoded=None
    ) -> tuple[Path, np.ndarray, bool]:
        """A random crop of ``image`` (written once under ``crop_dir``) and of its label map, drawn by
        ``rng`` when ``crop`` (drawn by the caller with probability ``crop_prob``); ``decoded``: the image
        already checked and decoded as RGB, else None (the file is checked and decoded here, once)."""
        if not crop:
            return image, lm, False
        h, w = lm.shape
        ch = max(1, round(h * rng.uniform(self.crop_min, 1.0)))
        cw = max(1, round(w * rng.uniform(self.crop_min, 1.0)))
        y0, x0 = rng.randint(0, h - ch), rng.randint(0, w - cw)
        out = self.crop_dir / self.split_name / f"{image.stem}_{x0}_{y0}_{cw}_{ch}.jpg"
        if not out.exists():
            src = decoded if decoded is not None else _check_image(image, (h, w), keep=True)
            region = src.crop((x0, y0, x0 + cw, y0 + ch))
            side_dir(out.parent, self.crop_dir)  # the split folder
            with atomic_path(out) as tmp:
                region.save(tmp, format="JPEG", quality=95)
        return out, lm[y0 : y0 + ch, x0 : x0 + cw], True

    def make(self, unit: int, rep: int) -> list[Sample]:
        cfg = self.cfg
        image, ann = self.items[unit]
        lm = read_label_png(ann)
        sid = self.sample_id(ann.stem, rep=rep)
        rng = self.rng(sid)
        crop = self.crop_prob > 0 and rng.random() < self.crop_prob  # the check draws nothing
        decoded = None
        if self.check_images:  # the same check on every split: readable to the end, the label map's size
            decoded = _check_image(image, lm.shape, keep=crop)
        image, lm, cropped = self._crop(rng, crop, image, lm, decoded)
        present_vals = [v for v in present_values(lm) if v in self.table]
        present = list(dict.fromkeys(self.table[v] for v in present_vals))
        mode = self.mode
        if mode == "mix":
            mode = rng.choices(SEMANTIC_MODES, weights=self.mix)[0] if present else "open_vocab"
        keep_names = set(present)
        if mode == "partial" and present:
            keep_names = set(rng.sample(present, rng.randint(1, len(present))))
            asked = [n for n in present if n in keep_names]
            rng.shuffle(asked)
        elif mode == "conditioned":
            absent = [n for n in self.all_names if n not in keep_names]
            k = rng.randint(1, min(self.max_distractors, len(absent))) if absent else 0
            asked = present + rng.sample(absent, k)
            rng.shuffle(asked)
        elif mode == "all_classes":
            asked = list(self.all_names)
        else:
            asked = present
        labels = {v: n for v, n in self.table.items() if n in keep_names}
        grid = mask_to_grid(lm, cfg.grid, labels=labels, ignore_index=None)
        from text4seg.descriptors import encode, normalize_label

        template_mode = "conditioned" if mode == "all_classes" else mode
        turn = semantic_turn(rng, template_mode, asked, encode(grid, cfg.scheme))
        h, w = lm.shape
        gt: dict = {}
        if cfg.with_gt:
            label_map = ann
            if cropped:
                label_map = image.with_suffix(".png")
                self._write_label_png(label_map, lm)
            fg = np.isin(lm, [v for v, n in labels.items()])
            gt = {
                "masks": [mask_to_rle(fg)],
                "label_map": str(label_map),
                "classes": list(self.gt_classes),
                "ignore": [v for v in self.ignore],
            }
        return [
            self.sample(
                sid,
                image=str(image),
                width=w,
                height=h,
                turns=[turn],
                task="semantic",
                labels=sorted(set(grid.ravel().tolist()) - {"others"}),  # a str array: str items
                asked=[normalize_label(n) for n in asked],
                source={"dataset": self.name, "split": cfg.split, "image_id": ann.stem},
                **gt,
            )
        ]

    @staticmethod
    def _write_label_png(path: Path, lm: np.ndarray) -> None:
        from PIL import Image

        with atomic_path(path) as tmp:
            Image.fromarray(lm.astype(np.uint8) if lm.max() < 256 else lm.astype(np.int32)).save(
                tmp, format="PNG"
            )


class CocoStuff(SemanticBase):
    name = "coco-stuff"
    help = "COCO-Stuff 171 classes: <root>/images/<split>/*.jpg + <root>/stuffthingmaps/<split>/*.png"
    layout = "<root>/images/{train2017,val2017}/*.jpg, <root>/stuffthingmaps/{train2017,val2017}/*.png"
    splits = ("train", "val", "train2017", "val2017")
    split_alias = {"train": "train2017", "val": "val2017"}
    names = C.COCO_STUFF_171
    ignore = (255,)

    def list_items(self):
        return self._pairs_from_dirs(
            self.root / "images" / self.split_name, self.root / "stuffthingmaps" / self.split_name
        )


class ADE20K(SemanticBase):
    name = "ade20k"
    help = "ADE20K 150 classes (ADEChallengeData2016): images/<split>/*.jpg + annotations/<split>/*.png"
    layout = "<root>/images/{training,validation}/*.jpg, <root>/annotations/{training,validation}/*.png"
    splits = ("train", "val", "training", "validation")
    split_alias = {"train": "training", "val": "validation"}
    names = C.ADE20K_150
    value_offset = 1
    ignore = (0, 255)

    def list_items(self):
        return self._pairs_from_dirs(
            self.root / "images" / self.split_name, self.root / "annotations" / self.split_name
        )


class PascalContext59(SemanticBase):
    name = "pc59"
    help = "PASCAL Context-59: JPEGImages/ + SegmentationClassContext/*.png + ImageSets/SegmentationContext/"
    layout = (
        "<root>/JPEGImages/*.jpg, <root>/SegmentationClassContext/*.png (0 = background, 1..59), "
        "<root>/ImageSets/SegmentationContext/{train,val}.txt"
    )
    names = C.PASCAL_CONTEXT_59
    value_offset = 1
    ignore = (0, 255)

    def list_items(self):
        return self._pairs_from_list(
            self.root / "ImageSets" / "SegmentationContext" / f"{self.split_name}.txt",
            self.root / "JPEGImages",
            self.root / "SegmentationClassContext",
        )


class PascalVOC20(SemanticBase):
    name = "voc20"
    help = (
        "PASCAL VOC-20 (background ignored): JPEGImages/ + SegmentationClass/*.png + ImageSets/Segmentation/"
    )
    layout = (
        "<root>/JPEGImages/*.jpg, <root>/SegmentationClass/*.png (palette, 0 = background, 255 = ignore), "
        "<root>/ImageSets/Segmentation/{train,val}.txt"
    )
    names = C.PASCAL_VOC_20
    value_offset = 1
    ignore = (0, 255)

    def list_items(self):
        return self._pairs_from_list(
            self.root / "ImageSets" / "Segmentation" / f"{self.split_name}.txt",
            self.root / "JPEGImages",
            self.root / "SegmentationClass",
        )
