"""ReasonSeg (LISA's layout): one labelme-style JSON per image with the query text(s) and polygons.

Layout::

    <root>/<split>/<name>.jpg
    <root>/<split>/<name>.json   {"text": ["query", ...], "is_sentence": true,
                                  "shapes": [{"label": "target" | "ignore", "points": [[x, y], ...]}, ...]}

(``--root`` may also be the folder that holds ``ReasonSeg/``.) Every query text is one sample. The target
mask is the union of the ``target`` polygons, rasterised with pycocotools (COCO polygon rules); ``ignore``
polygons are not targets (LISA scores them as background too). Image sizes come from the JSON's
``imageHeight``/``imageWidth`` when present, else from the image header. Sentence queries use the
``reason`` templates and the descriptor label ``label`` (option, default ``target``: a long sentence
would make very long descriptors); phrase queries (``is_sentence`` false) use the ``refer`` templates
with the phrase itself as the label.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from text4seg.data.records import Sample
from text4seg.data.rle import rle_to_json
from text4seg.descriptors import encode

from .base import BadInput, BuildConfig, Builder
from .coco import rle_area, rle_of_segmentations, sample_rle
from .common import PLACEHOLDER, descriptor_template, empty_grid, image_size, label_of, load_json
from .options import Option
from .prompts import reason_turn, refer_turn

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


class ReasonSeg(Builder):
    name = "reasonseg"
    help = "ReasonSeg (LISA layout): <root>/<split>/*.jpg + one *.json per image with texts and polygons"
    layout = "<root>/{train,val,test}/<name>.jpg + <name>.json (or <root>/ReasonSeg/<split>/...)"
    options = (Option("label", str, "target", "descriptor label of a sentence query's target"),)

    def __init__(self, cfg: BuildConfig):
        Builder.__init__(self, cfg)
        root = Path(cfg.root)
        if (root / "ReasonSeg").is_dir():
            root = root / "ReasonSeg"
        self.dir = root / cfg.split
        if not self.dir.is_dir():
            have = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise ValueError(f"unknown split {cfg.split!r}: {self.dir} not found; splits here: {have}")
        self.label = self.opt("label")
        self.jsons = sorted(self.dir.glob("*.json"))

    def units(self) -> list[int]:
        return list(range(len(self.jsons)))

    def _image(self, js: Path) -> Path:
        for ext in IMAGE_EXTS:
            p = js.with_suffix(ext)
            if p.is_file():
                return p
        raise BadInput(f"image not found for {js} (looked for {', '.join(js.stem + e for e in IMAGE_EXTS)})")

    def make(self, unit: int, rep: int) -> list[Sample]:
        cfg = self.cfg
        js = self.jsons[unit]
        try:
            anno = load_json(js, "ReasonSeg annotation")
            texts = anno["text"]
            texts = [texts] if isinstance(texts, str) else list(texts)
            polys = []
            for s in anno.get("shapes", []):
                if s.get("label") == "target":
                    pts = [float(c) for p in s.get("points", []) for c in p]
                    if len(pts) >= 6:
                        polys.append(pts)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise BadInput(f"bad ReasonSeg annotation {js}: {type(exc).__name__}: {exc}") from None
        image = self._image(js)
        w, h = image_size(image, str(js))  # the real size: imageHeight/imageWidth must agree when given
        ch, cw = anno.get("imageHeight"), anno.get("imageWidth")
        if isinstance(ch, int) and isinstance(cw, int) and (ch, cw) != (h, w):
            raise BadInput(
                f"{js}: imageHeight x imageWidth {ch}x{cw} differ from the image {image} ({h}x{w})"
            )
        rle = rle_of_segmentations([polys] if polys else [], h, w, where=f"in {js}")
        tpl = None
        if polys:  # a target polygon: it must survive rasterising and grid sampling (no silent empties)
            fg = sample_rle(rle, *cfg.grid)
            if self.screen_target(partial(rle_area, rle), bool(fg.any()), len(texts), str(js)):
                return []
            tpl = descriptor_template(fg, cfg.scheme)
        empty = encode(empty_grid(cfg.grid), cfg.scheme)
        is_sentence = bool(anno.get("is_sentence", True))
        out = []
        for k, text in enumerate(texts):
            text = " ".join(str(text).split())
            sid = self.sample_id(js.stem, k, rep=rep)
            rng = self.rng(sid)
            label = label_of(self.label if is_sentence else text)
            desc = empty if tpl is None else tpl.replace(PLACEHOLDER, label)
            if is_sentence:
                turn = reason_turn(rng, text, desc, empty=tpl is None)
            else:
                turn = refer_turn(rng, text, desc, empty=tpl is None)
            out.append(
                self.sample(
                    sid,
                    image=str(image),
                    width=w,
                    height=h,
                    turns=[turn],
                    task="reason",
                    labels=[label],
                    source={"dataset": self.name, "split": cfg.split, "image_id": js.stem, "sent_ids": [k]},
                    masks=[rle_to_json(rle)] if cfg.with_gt else [],
                )
            )
        return out
