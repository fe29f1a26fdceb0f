"""Video builders: Ref-YouTube-VOS, MeViS, ReVOS and (Ref-)DAVIS-2017 -> multi-frame samples.

One sample per (video, expression): ``T`` sampled frames (option ``frames``, default 8; ``sampling``
``uniform`` or ``keyframe``, :func:`text4seg.data.video.sample_frames`) as multi-image input, and an
answer with one ``Frame k:`` line per frame (:mod:`text4seg.descriptors.video`; option ``form``
``frames`` or ``delta``). The row format is :mod:`text4seg.data.video`'s. Layouts under ``--root``::

    refytvos  meta_expressions/<split>/meta_expressions.json
                  {"videos": {vid: {"expressions": {eid: {"exp", "obj_id"}}, "frames": [names]}}}
              <split>/JPEGImages/<vid>/<frame>.jpg
              <split>/Annotations/<vid>/<frame>.png      palette PNG, pixel value = obj_id
    mevis     <split>/meta_expressions.json              expressions {"exp", "obj_id": [..], "anno_id": [..]}
              <split>/mask_dict.json                     {anno_id: [COCO RLE or null per frame]}
              <split>/JPEGImages/<vid>/<frame>.jpg
    revos     meta_expressions_<split>_.json             as MeViS, plus "type_id" (0 referring, 1 reasoning)
              mask_dict.json, JPEGImages/<vid>/<frame>.jpg   (shared by all splits)
    davis17   JPEGImages/480p/<vid>/<frame>.jpg, Annotations/480p/<vid>/<frame>.png,
              ImageSets/2017/<split>.txt
              semi-supervised: one sample per object of the first annotated frame, whose query gives that
              frame's mask as a descriptor block; ``--expressions <file>`` (a Ref-DAVIS17
              meta_expressions.json, relative to root, as ReferFormer's conversion writes it) makes one
              referring sample per expression instead, its masks read from
              ``Annotations_unsupervised/480p`` (the set whose obj_ids the expressions number, as
              ReferFormer reads it; ``--annotations`` for another folder); ``--first-frame`` adds the
              first-frame block to those too.

Splits without masks (Ref-YouTube-VOS and MeViS ``valid``) give query rows with an empty answer and no
ground truth, for ``text4seg predict``. An expression whose target is absent in every sampled frame is
flagged ``empty_target`` (or ``lost_on_grid`` when it vanishes on the grid) under the builders' policy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from text4seg.data.images import open_image
from text4seg.data.records import Sample
from text4seg.data.rle import mask_to_rle, rle_to_mask
from text4seg.data.video import SAMPLINGS, image_change, list_frames, sample_frames
from text4seg.descriptors import BACKGROUND, encode, mask_to_grid, wrap
from text4seg.descriptors.video import FORMS, check_form, encode_frames

from .base import BadInput, BuildConfig, Builder
from .common import check_sample_pixels, image_size, inside, label_of, load_json
from .options import Option
from .prompts import sample_rng, video_turn


def _load_json(path: Path) -> dict:
    try:
        data = load_json(path)
    except FileNotFoundError:
        raise BadInput(f"annotation file not found: {path}", "annotation_not_found") from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read {path}: {exc}", "bad_annotation") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a JSON object, got {type(data).__name__}", "bad_annotation")
    return data


def _palette_mask(path: Path, obj_ids) -> np.ndarray:
    try:
        with open_image(path) as im:
            arr = np.asarray(im)
    except FileNotFoundError:
        raise BadInput(f"mask not found: {path}", "mask_not_found") from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read mask {path}: {exc}", "bad_mask") from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    return np.isin(arr, [int(o) for o in obj_ids])


def mask_change(masks: list[np.ndarray]) -> list[float]:
    """``1 - IoU`` of consecutive ``(H, W)`` bool masks (two empty masks: 0)."""
    out = []
    for a, b in zip(masks, masks[1:]):
        union = np.logical_or(a, b).sum()
        out.append(0.0 if union == 0 else 1.0 - np.logical_and(a, b).sum() / union)
    return out


class VideoBuilder(Builder):
    """Shared machinery: subclasses fill ``self.videos`` ``{vid: {"frames", "expressions"}}`` and
    ``self.img_dir`` and implement :meth:`masks` (and :meth:`kind`/:meth:`text` when they differ)."""

    dataset = ""
    options = (
        Option("frames", int, 8, "frames shown per sample (T)"),
        Option("sampling", str, "uniform", "how the T frames are picked", choices=SAMPLINGS),
        Option("form", str, "frames", "answer form: every frame's grid, or changes", choices=FORMS),
    )

    def __init__(self, cfg: BuildConfig):
        Builder.__init__(self, cfg)
        self.t = self.opt("frames")
        self.sampling = self.opt("sampling")
        self.form = self.opt("form")
        check_form(self.form, cfg.scheme)
        sample_frames(1, self.t, self.sampling)  # validates frames and sampling
        self.videos: dict = {}
        self.img_dir = Path(cfg.root)

    def units(self) -> list[tuple[str, str]]:
        return [(vid, eid) for vid, v in self.videos.items() for eid in v.get("expressions", {})]

    def frame_paths(self, vid: str) -> list[Path]:
        return [inside(self.img_dir, f"{vid}/{name}.jpg") for name in self.videos[vid]["frames"]]

    def masks(self, vid: str, eid: str, paths: list[Path]) -> list[np.ndarray] | None:
        """``(H, W)`` bool target mask per frame of the video, or None when the split has no masks."""
        raise NotImplementedError

    def kind(self, exp: dict) -> str:
        return "referring_video"

    def wants_target(self, exp: dict) -> bool:
        return True

    def first_frame(self, exp: dict) -> bool:
        return False

    def make(self, unit: tuple[str, str], rep: int) -> list[Sample]:
        cfg = self.cfg
        vid, eid = unit
        exp = self.videos[vid]["expressions"][eid]
        text = " ".join(str(exp.get("exp", "")).split())
        paths = self.frame_paths(vid)
        if not paths:
            raise BadInput(f"{self.name}: video {vid} lists no frames", "malformed_record")
        masks = self.masks(vid, eid, paths)
        if self.sampling == "keyframe":
            change = mask_change(masks) if masks is not None else image_change(paths)
        else:
            change = None
        idx = sample_frames(len(paths), self.t, self.sampling, change)
        for i in idx:
            if not paths[i].is_file():
                raise BadInput(f"frame not found: {paths[i]}", "image_not_found")
        semi = self.first_frame(exp)
        kind = "semi_video" if semi and not text else self.kind(exp)
        label = "target" if kind == "reasoning_video" else label_of(text) if text and not semi else "object"
        if masks is not None:
            h, w = masks[0].shape
            grids = [mask_to_grid(masks[i], cfg.grid, labels=label) for i in idx]
            lines = encode_frames(grids, cfg.scheme, self.form)
            where = f"{vid}/{eid}"
            if self.wants_target(exp):
                on_grid = any((g != BACKGROUND).any() for g in grids)
                area = lambda: sum(int(masks[i].sum()) for i in idx)  # noqa: E731 (only when off the grid)
                if self.screen_target(area, on_grid, 1, where):
                    return []
        else:
            w, h = image_size(paths[idx[0]])
            lines = ""
        block = ""
        if semi and masks is not None:
            block = wrap(encode(mask_to_grid(masks[idx[0]], cfg.grid, labels=label), cfg.scheme))
        rng = sample_rng(cfg.seed + rep, f"{self.name}/{vid}/{eid}")
        q, a = video_turn(rng, kind, len(idx), lines, target=text, query=text, grid=block)
        if semi and text:
            q += f" In frame 1 it is {block}"
        if masks is None:
            a = ""
        return [
            self.sample(
                f"{self.name}/{cfg.split}/{vid}/{eid}",
                image=str(paths[idx[0]]),
                frames=[str(paths[i]) for i in idx],
                width=int(w),
                height=int(h),
                turns=[(q, a)],
                task="vreason" if kind == "reasoning_video" else "vres",
                labels=[label],
                source={
                    "dataset": self.name,
                    "split": cfg.split,
                    "image_id": vid,
                    "ref_id": eid,
                    "ann_ids": [str(x) for x in _as_list(exp.get("anno_id", exp.get("obj_id", [])))],
                },
                masks=[mask_to_rle(masks[i]) for i in idx] if masks is not None and cfg.with_gt else [],
            )
        ]


def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


class RefYouTubeVOS(VideoBuilder):
    name = "refytvos"
    help = "Ref-YouTube-VOS referring video segmentation (meta_expressions.json, JPEG frames, PNG masks)"
    layout = "meta_expressions/<split>/meta_expressions.json, <split>/{JPEGImages,Annotations}/<vid>/"

    def __init__(self, cfg: BuildConfig):
        VideoBuilder.__init__(self, cfg)
        root = Path(cfg.root)
        meta = root / "meta_expressions" / cfg.split / "meta_expressions.json"
        self.videos = _load_json(meta).get("videos", {})
        self.img_dir = inside(root, f"{cfg.split}/JPEGImages")
        self.ann_dir = inside(root, f"{cfg.split}/Annotations")

    def masks(self, vid, eid, paths):
        if not self.ann_dir.is_dir():
            return None
        exp = self.videos[vid]["expressions"][eid]
        names = self.videos[vid]["frames"]
        return [_palette_mask(inside(self.ann_dir, f"{vid}/{n}.png"), _as_list(exp["obj_id"])) for n in names]


class MeViS(VideoBuilder):
    name = "mevis"
    help = "MeViS motion-expression video segmentation (meta_expressions.json + mask_dict.json COCO RLE)"
    layout = "<split>/meta_expressions.json, <split>/mask_dict.json, <split>/JPEGImages/<vid>/"
    meta_name = "{split}/meta_expressions.json"
    mask_name = "{split}/mask_dict.json"
    image_dir = "{split}/JPEGImages"

    def __init__(self, cfg: BuildConfig):
        VideoBuilder.__init__(self, cfg)
        root = Path(cfg.root)
        self.videos = _load_json(inside(root, self.meta_name.format(split=cfg.split))).get("videos", {})
        mask_path = inside(root, self.mask_name.format(split=cfg.split))
        self.mask_dict = _load_json(mask_path) if mask_path.exists() else None
        self.mask_path = mask_path
        self.img_dir = inside(root, self.image_dir.format(split=cfg.split))

    def wants_target(self, exp: dict) -> bool:
        return bool(_as_list(exp.get("anno_id", [])))

    def masks(self, vid, eid, paths):
        if self.mask_dict is None:
            return None
        exp = self.videos[vid]["expressions"][eid]
        per_anno = []
        for a in _as_list(exp.get("anno_id", [])):
            rles = self.mask_dict.get(str(a))
            if rles is None:
                raise BadInput(
                    f"{self.name}: anno_id {a} of {vid}/{eid} not in mask_dict {self.mask_path}",
                    "malformed_record",
                )
            if not isinstance(rles, list):
                raise BadInput(
                    f"{self.mask_path}: key {str(a)!r}: expected a list of RLEs (or null) per frame, got "
                    f"{type(rles).__name__}",
                    "malformed_record",
                )
            per_anno.append((str(a), rles))
        w, h = image_size(paths[0], f"{vid}/{eid}")  # the frames' real size, not the RLEs' claim
        check_sample_pixels(len(paths), h, w, f"{self.mask_path}: {vid}/{eid}")
        out = []
        for i in range(len(paths)):
            m = np.zeros((h, w), bool)
            for key, rles in per_anno:
                if i < len(rles) and rles[i]:
                    m |= self._rle_mask(rles[i], key, i, (h, w))
            out.append(m)
        return out

    def _rle_mask(self, rle, key: str, i: int, shape: tuple[int, int]) -> np.ndarray:
        """Frame ``i`` of ``mask_dict[key]`` decoded, its size checked against the frames' ``shape``."""
        where = f"{self.mask_path}: key {key!r} frame {i}"
        if not isinstance(rle, dict):
            raise BadInput(
                f"{where}: expected an RLE dict or null, got {str(rle)[:60]!r}", "bad_segmentation"
            )
        try:
            size = rle.get("size")
            if not isinstance(size, list) or len(size) != 2 or tuple(size) != shape:
                raise ValueError(
                    f"RLE size {str(size)[:60]} differs from the frames' height x width {list(shape)}"
                )
            return rle_to_mask(rle, where)
        except (ValueError, TypeError, OverflowError, MemoryError) as exc:
            msg = str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
            raise BadInput(msg, "bad_segmentation") from None


class ReVOS(MeViS):
    name = "revos"
    help = "ReVOS reasoning + referring video segmentation (VISA's JSON layout)"
    layout = "meta_expressions_<split>_.json, mask_dict.json, JPEGImages/<vid>/"
    splits = ("train", "valid", "train_sub")
    meta_name = "meta_expressions_{split}_.json"
    mask_name = "mask_dict.json"
    image_dir = "JPEGImages"

    def kind(self, exp: dict) -> str:
        return "reasoning_video" if int(exp.get("type_id", 0)) == 1 else "referring_video"


# Ref-DAVIS17's expressions (Khoreva et al.) number the objects of the unsupervised annotation set, whose
# ids differ from the semi-supervised Annotations/480p (ReferFormer tools/data/convert_davis_to_ytvos.py).
REF_DAVIS_ANNOTATIONS = "Annotations_unsupervised/480p"


class DAVIS17(VideoBuilder):
    name = "davis17"
    help = "DAVIS-2017 semi-supervised (first-frame mask as descriptors) or Ref-DAVIS17 (--expressions)"
    layout = "JPEGImages/480p/<vid>/, Annotations/480p/<vid>/, ImageSets/2017/<split>.txt"
    options = (
        *VideoBuilder.options,
        Option("expressions", str, "", "Ref-DAVIS17 expressions JSON under --root (unset: semi-supervised)"),
        Option("first_frame", bool, False, "show the first frame's mask as descriptors in the question"),
        Option(
            "annotations",
            str,
            None,
            "folder of the palette masks under --root (unset: Annotations_unsupervised/480p with "
            "--expressions, the set Ref-DAVIS17's obj_ids number, as ReferFormer's conversion reads it; "
            "else Annotations/480p)",
        ),
    )

    def __init__(self, cfg: BuildConfig):
        VideoBuilder.__init__(self, cfg)
        root = Path(cfg.root)
        self.img_dir = inside(root, "JPEGImages/480p")
        self.semi = self.opt("first_frame")
        expr = self.opt("expressions")
        ann = self.opt("annotations", REF_DAVIS_ANNOTATIONS if expr else "Annotations/480p")
        self.ann_dir = inside(root, ann)
        if expr and not self.ann_dir.is_dir():
            raise OSError(
                f"{self.ann_dir} not found: Ref-DAVIS17's obj_ids number the objects of DAVIS-2017's "
                "unsupervised annotations (Annotations_unsupervised/480p, as ReferFormer's conversion "
                "reads them); pass --annotations for another folder"
            )
        if expr:
            self.videos = _load_json(inside(root, expr)).get("videos", {})
            for v in self.videos.values():
                v.setdefault("frames", [])
        else:
            self.semi = True
            listing = inside(root, f"ImageSets/2017/{cfg.split}.txt")
            try:
                vids = [s.strip() for s in listing.read_text().splitlines() if s.strip()]
            except OSError as exc:
                raise OSError(f"cannot read the DAVIS split list {listing}: {exc}") from None
            for vid in vids:
                first = sorted(inside(self.ann_dir, vid).glob("*.png"))
                if not first:
                    raise BadInput(f"no annotations in {self.ann_dir / vid}", "mask_not_found")
                ids = sorted(int(v) for v in np.unique(_palette_ids(first[0])) if 0 < v < 255)
                self.videos[vid] = {"frames": [], "expressions": {str(o): {"obj_id": str(o)} for o in ids}}

    def frame_paths(self, vid):
        names = self.videos[vid].get("frames") or [p.stem for p in list_frames(inside(self.img_dir, vid))]
        self.videos[vid]["frames"] = names
        return [inside(self.img_dir, f"{vid}/{n}.jpg") for n in names]

    def first_frame(self, exp: dict) -> bool:
        return self.semi

    def masks(self, vid, eid, paths):
        exp = self.videos[vid]["expressions"][eid]
        return [
            _palette_mask(inside(self.ann_dir, f"{vid}/{p.stem}.png"), _as_list(exp["obj_id"])) for p in paths
        ]


def _palette_ids(path: Path) -> np.ndarray:
    try:
        with open_image(path) as im:
            return np.asarray(im)
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read mask {path}: {exc}", "bad_mask") from None
