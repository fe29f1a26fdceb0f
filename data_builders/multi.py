"""gRefCOCO with several expressions per question (GSVA's multi-expression mode): builder ``grefcoco-multi``.

Layout: gRefCOCO's own (see :mod:`data_builders.refer`): ``<root>/grefcoco/grefs(unc).json`` +
``instances.json`` + the COCO train2014 images.

One unit per image. Every sentence of every ref of the image is one expression; the image's expressions
are shuffled with a seeded generator (seed, image id, ``--repeat`` pass), so present and absent targets
(gRefCOCO's ``no_target`` refs) mix, and cut into samples of up to ``k`` expressions (``--set k=5``,
GSVA's default). The question lists them as ``[1] a; [2] b``; the answer is the template sentence and one
numbered line per expression, a descriptor block or ``none`` (:mod:`text4seg.descriptors.multi`).

Row fields (task ``multi``): ``labels`` are the expressions' labels in answer order, ``gt.masks[j]`` is
the full-resolution target of expression ``j`` (an all-zero RLE for an absent one), ``source.sent_ids``
the sentence of each expression. Crowd and empty-target handling are gRefCOCO's (ReLA's crowd rule; an
expression whose target is lost on the grid is dropped, kept or fails per ``empty_targets``).
"""

from __future__ import annotations

from text4seg.data.records import Sample
from text4seg.data.rle import rle_to_json
from text4seg.descriptors.multi import encode_multi, multi_label

from .base import BuildConfig
from .options import Option
from .prompts import multi_turn
from .refer import GRefCOCO, _sent_text


class GRefCOCOMulti(GRefCOCO):
    name = "grefcoco-multi"
    dataset = "grefcoco"
    task = "multi"
    help = "gRefCOCO, up to k expressions of one image per question (GSVA; --k 5), mask or none each"
    options = (*GRefCOCO.options, Option("k", int, 5, "expressions per question at most"))

    def __init__(self, cfg: BuildConfig):
        GRefCOCO.__init__(self, cfg)
        if self.official:
            raise ValueError(
                f"{self.name}: --templates official: the released Text4Seg models have no template that "
                "asks for several expressions in one question (their six referring questions name one); "
                "build grefcoco --templates official instead"
            )
        self.k = self.opt("k")
        if self.k < 1:
            raise ValueError(f"option k must be >= 1, got {self.k}")
        by_image: dict = {}
        for i, r in enumerate(self.refs):
            by_image.setdefault(r.get("image_id"), []).append(i)
        self._units = [tuple(v) for v in by_image.values()]

    def conventions(self) -> dict:
        return GRefCOCO.conventions(self) | {"expressions_per_sample": self.k, "rejection": "none"}

    def make(self, unit: tuple[int, ...], rep: int) -> list[Sample]:
        cfg = self.cfg
        items = []  # (ref, rle, ann_ids, sentence, fg grid or None)
        for ref, rle, ann_ids, sents, fg in self._unit_targets(unit, rep):
            items.extend((ref, rle, ann_ids, s, fg) for s in sents)
        if not items:
            return []
        image_id = items[0][0]["image_id"]
        self.rng(f"{self.name}/{image_id}/r{rep}").shuffle(items)
        file_name, h, w = self.coco.image(image_id)
        path = self._image_path(file_name, h, w)
        out = []
        for start in range(0, len(items), self.k):
            chunk = items[start : start + self.k]
            split = str(chunk[0][0].get("split"))
            sid = self.sample_id(image_id, start // self.k, rep=rep, split=split)
            exprs = [_sent_text(it[3]) for it in chunk]
            lines = encode_multi([(e, it[4]) for e, it in zip(exprs, chunk)], cfg.scheme)
            turn = multi_turn(self.rng(sid), exprs, lines)
            ref_ids = list(dict.fromkeys(str(it[0].get("ref_id")) for it in chunk))
            out.append(
                self.sample(
                    sid,
                    image=path,
                    width=w,
                    height=h,
                    turns=[turn],
                    task=self.task,
                    labels=[multi_label(e) for e in exprs],
                    source={
                        "dataset": self.name,
                        "split": split,
                        "image_id": image_id,
                        "ref_id": ",".join(ref_ids),
                        "ann_ids": [a for it in chunk for a in it[2]],
                        "sent_ids": [it[3].get("sent_id", "") for it in chunk],
                    },
                    masks=[rle_to_json(it[1]) for it in chunk] if cfg.with_gt else [],
                )
            )
        return out
