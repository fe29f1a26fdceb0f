"""Generated datasets in their native on-disk layouts, for tests and ``benchmarks/builders.py``.

Nothing here is downloaded: images are small solid PNGs (or not written at all, for benchmarks that
disable the image check), annotations are random polygons and RLEs with COCO-like image sizes.
"""

from __future__ import annotations

import io
import json
import pickle
import random
from pathlib import Path

import numpy as np

COCO_SIZES = ((480, 640), (640, 480), (427, 640), (640, 427), (375, 500), (500, 375), (512, 512))


def random_polygon(rng: random.Random, h: int, w: int, n_min: int = 6, n_max: int = 30) -> list[float]:
    """A star-shaped (simple) polygon ``[x0, y0, x1, y1, ...]`` inside an ``h x w`` image."""
    cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
    rmax = min(cx, cy, w - cx, h - cy)
    n = rng.randint(n_min, n_max)
    angles = sorted(rng.uniform(0, 2 * np.pi) for _ in range(n))
    pts = []
    for a in angles:
        r = rng.uniform(0.3, 1.0) * rmax
        pts += [round(cx + r * np.cos(a), 2), round(cy + r * np.sin(a), 2)]
    return pts


def _rect_counts(h: int, w: int, y: int, x: int, rh: int, rw: int) -> list[int]:
    """Uncompressed COCO RLE counts (column-major, zeros first) of the box ``[y:y+rh, x:x+rw]``."""
    counts = [x * h + y]
    for _ in range(rw - 1):
        counts += [rh, h - rh]
    counts += [rh, h * w - counts[0] - (rw - 1) * h - rh]
    return counts


def _write_png(path: Path, h: int, w: int, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (value, 100, 150)).save(path)


def _rle_list(rng: random.Random, h: int, w: int, compressed: bool) -> list[dict]:
    """refCLEF's form: a list of RLE dicts (one per part), compressed string counts or uncompressed lists."""
    from pycocotools import mask as mu

    if not compressed:
        y, x = rng.randrange(h // 2), rng.randrange(w // 2)
        return [{"size": [h, w], "counts": _rect_counts(h, w, y, x, h // 4 + 1, w // 5 + 1)}]
    parts = mu.frPyObjects([random_polygon(rng, h, w) for _ in range(rng.choice((1, 2)))], h, w)
    return [{"size": [h, w], "counts": p["counts"].decode("ascii")} for p in parts]


def _degenerate_segmentation(kind: str, clef: bool, h: int, w: int):
    """An annotation whose mask is empty (``empty``) or a 3 x 3 px corner no 16 x 16 grid sample hits."""
    if kind == "empty":
        if clef:
            return [{"size": [h, w], "counts": [h * w]}]
        return [[1.0, 1.0, 2.0, 2.0]]  # a polygon of 2 points: no area, left out
    if clef:
        return [{"size": [h, w], "counts": _rect_counts(h, w, 0, 0, 3, 3)}]
    return [[0.0, 0.0, 3.0, 0.0, 3.0, 3.0, 0.0, 3.0]]


def make_refer(
    root: str | Path,
    dataset: str = "refcoco",
    split_by: str = "unc",
    n_images: int = 3,
    refs_per_image: int = 2,
    sents_per_ref: int = 2,
    splits: tuple[str, ...] = ("train", "val", "testA"),
    seed: int = 0,
    write_images: bool | str = True,
    image_size: tuple[int, int] | None = None,
    crowd_every: int = 5,
    protocol: int = 2,
    degenerate: bool = False,
) -> dict:
    """Write ``<root>/<dataset>/refs(<split_by>).p`` + ``instances.json`` (+ images) in REFER layout.

    The real files' keys and value types: refs are dicts with ``ref_id``, ``ann_id`` (int), ``image_id``,
    ``split``, ``sentences`` (``[{tokens, raw, sent_id, sent}]``), ``sent_ids``, ``file_name``,
    ``category_id``; ``instances.json`` has ``images``, ``annotations`` (``id``, ``image_id``,
    ``segmentation``, ``area``, ``iscrowd``, ``bbox``, ``category_id``) and ``categories``.

    Segmentation forms per dataset, as in the real releases: refCOCO/+/g annotations are polygon lists
    (sometimes two parts), and every ``crowd_every``-th one is a crowd annotation, a bare RLE dict with
    uncompressed list counts; refCLEF mixes polygon lists with lists of RLE dicts (compressed string
    counts, or uncompressed list counts), cycling through the three by annotation id. Refs are spread
    over ``splits`` image by image. ``degenerate``: on the first image of each split, ref 0's annotation
    has an empty mask and ref 1's is a 3 x 3 px corner object (lost on a 16 x 16 grid). ``image_size`` is
    ``(h, w)``; default: COCO-like sizes. Returns ``{"refs": n, "sentences": n, "images": n}``.
    """
    rng = random.Random(seed)
    root = Path(root)
    ddir = root / dataset
    ddir.mkdir(parents=True, exist_ok=True)
    clef = dataset == "refclef"
    img_dir = root / ("images/saiapr_tc-12" if clef else "images/mscoco/images/train2014")
    images, anns, refs = [], [], []
    ann_id, ref_id, sent_id = 1000, 0, 0
    for i in range(n_images):
        image_id = 100 + i
        h, w = image_size or rng.choice(COCO_SIZES)
        fname = f"{image_id}.jpg" if clef else f"COCO_train2014_{image_id:012d}.jpg"
        images.append({"id": image_id, "file_name": fname, "height": h, "width": w})
        if write_images == "touch":  # empty files: enough for the existence check, cheap for benchmarks
            (img_dir / fname).parent.mkdir(parents=True, exist_ok=True)
            (img_dir / fname).touch()
        elif write_images:
            _write_png(img_dir / fname, h, w, i % 256)
        split = splits[i % len(splits)]
        for j in range(refs_per_image):
            crowd = 0
            if degenerate and i < len(splits) and j < 2:
                seg = _degenerate_segmentation(("empty", "tiny")[j], clef, h, w)
            elif clef and ann_id % 3:
                seg = _rle_list(rng, h, w, compressed=ann_id % 3 == 1)
            elif not clef and crowd_every and ann_id % crowd_every == 0:
                y, x = rng.randrange(h // 2), rng.randrange(w // 2)
                counts = _rect_counts(h, w, y, x, h // 3, w // 4)
                seg, crowd = {"size": [h, w], "counts": counts}, 1
            else:
                seg = [random_polygon(rng, h, w) for _ in range(rng.choice((1, 1, 2)))]
            anns.append({"id": ann_id, "image_id": image_id, "segmentation": seg, "iscrowd": crowd,
                         "category_id": 1, "bbox": [0.0, 0.0, 1.0, 1.0], "area": 1.0})  # fmt: skip
            sents = []
            for _ in range(sents_per_ref):
                words = rng.sample(["man", "left", "red", "shirt", "dog", "the", "small", "car", "near"], 3)
                sents.append({"tokens": words, "raw": " ".join(words).title(), "sent_id": sent_id,
                              "sent": " ".join(words)})  # fmt: skip
                sent_id += 1
            refs.append({"sent_ids": [s["sent_id"] for s in sents], "file_name": f"{fname[:-4]}_{ann_id}.jpg",
                         "ann_id": ann_id, "ref_id": ref_id, "image_id": image_id, "split": split,
                         "sentences": sents, "category_id": 1})  # fmt: skip
            ann_id += 1
            ref_id += 1
    inst = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "thing", "supercategory": "x"}],
    }
    (ddir / "instances.json").write_text(json.dumps(inst))
    with open(ddir / f"refs({split_by}).p", "wb") as fh:
        pickle.dump(refs, fh, protocol=protocol)
    return {"refs": len(refs), "sentences": sent_id, "images": n_images}


def make_grefcoco(
    root: str | Path, n_images: int = 3, seed: int = 0, splits: tuple[str, ...] = ("train", "val", "testA")
) -> dict:
    """REFER-layout gRefCOCO: ``<root>/grefcoco/grefs(unc).json`` + ``instances.json`` (refCOCO's forms).

    Per image three refs: the first annotation alone, all annotations, and no target (``ann_id`` ``[-1]``,
    ``no_target`` true), with the real keys (``ann_id`` and ``category_id`` lists). With the default seed
    and sizes, image 0's first annotation and image 2's second are crowd annotations (bare RLE, list
    counts): ref 0 has only a crowd target, refs 1 and 21 have crowd members. Images go to ``splits`` in
    turn.
    """
    make_refer(root, "grefcoco", "unc", n_images=n_images, refs_per_image=2, seed=seed, splits=splits)
    ddir = Path(root) / "grefcoco"
    (ddir / "refs(unc).p").unlink()
    inst = json.loads((ddir / "instances.json").read_text())
    by_image: dict = {}
    for a in inst["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a["id"])
    grefs, sent_id = [], 0
    for k, im in enumerate(inst["images"]):
        ids = by_image[im["id"]]
        for j, (targets, no_target) in enumerate(((ids[:1], False), (ids, False), ([-1], True))):
            words = ["expression", str(sent_id)]
            sents = [{"tokens": words, "raw": " ".join(words), "sent_id": sent_id, "sent": " ".join(words)}]
            ref = {"ref_id": k * 10 + j, "image_id": im["id"], "ann_id": targets, "no_target": no_target}
            cats = [1] if targets != [-1] else []
            split = splits[k % len(splits)]
            ref |= {"split": split, "category_id": cats, "sentences": sents, "sent_ids": [sent_id]}
            grefs.append(ref | {"file_name": im["file_name"]})
            sent_id += 1
    (ddir / "grefs(unc).json").write_text(json.dumps(grefs))
    return {"refs": len(grefs), "sentences": sent_id, "images": n_images}


SEMANTIC_LAYOUTS = {
    # name: (image dir, label dir, list file or None, label values to draw)
    "coco-stuff": ("images/{split}", "stuffthingmaps/{split}", None, (0, 17, 105, 156, 255)),
    "ade20k": ("images/{split}", "annotations/{split}", None, (0, 1, 3, 13, 150)),
    "pc59": (
        "JPEGImages",
        "SegmentationClassContext",
        "ImageSets/SegmentationContext/{split}.txt",
        (0, 1, 15, 59),
    ),
    "voc20": ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation/{split}.txt", (0, 8, 15, 255)),
}
SEMANTIC_SPLITS = {"coco-stuff": ("train2017", "val2017"), "ade20k": ("training", "validation")}


def make_semantic(root: str | Path, name: str, n_images: int = 3, seed: int = 0, size=(48, 64)) -> dict:
    """Write a tiny semantic dataset ``name`` (see :data:`SEMANTIC_LAYOUTS`) with train and val splits.

    Label maps are blocks of the listed values (VOC's as a palette PNG); images are RGB JPEGs of the same
    size. Returns ``{split: [stem, ...]}``.
    """
    from PIL import Image

    img_t, ann_t, list_t, values = SEMANTIC_LAYOUTS[name]
    rng = np.random.default_rng(seed)
    root = Path(root)
    out = {}
    for split in SEMANTIC_SPLITS.get(name, ("train", "val")):
        stems = []
        for i in range(n_images):
            stem = f"{split}_{i:04d}"
            h, w = size
            lm = np.zeros((h, w), np.uint8)
            lm[:] = values[0]
            for v in values[1:]:
                y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
                lm[y : y + rng.integers(6, h // 2 + 7), x : x + rng.integers(6, w // 2 + 7)] = v
            ann = root / ann_t.format(split=split) / f"{stem}.png"
            img = root / img_t.format(split=split) / f"{stem}.jpg"
            ann.parent.mkdir(parents=True, exist_ok=True)
            img.parent.mkdir(parents=True, exist_ok=True)
            im = Image.fromarray(lm, mode="L")
            if name == "voc20":
                im = im.convert("P")
                im.putpalette([c for v in range(256) for c in (v, (v * 7) % 256, (v * 13) % 256)])
            im.save(ann)
            Image.fromarray(np.stack([lm, lm // 2, 255 - lm], -1)).save(img, quality=90)
            stems.append(stem)
        if list_t:
            lst = root / list_t.format(split=split)
            lst.parent.mkdir(parents=True, exist_ok=True)
            lst.write_text("\n".join(stems) + "\n")
        out[split] = stems
    return out


def make_reasonseg(root: str | Path, n_images: int = 3, split: str = "val", seed: int = 0) -> list[str]:
    """LISA-layout ReasonSeg: ``<root>/ReasonSeg/<split>/<name>.jpg`` + ``<name>.json`` (labelme shapes).

    Image 0 has a target and an ignore polygon, image 1 two targets, image 2 none; image 0 gives the size
    in its JSON, the others only through the image. Returns the names.
    """
    from PIL import Image

    rng = random.Random(seed)
    d = Path(root) / "ReasonSeg" / split
    d.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n_images):
        h, w = rng.choice(((60, 80), (90, 70)))
        name = f"img_{i:03d}"
        Image.new("RGB", (w, h), (i * 40 % 256, 90, 30)).save(d / f"{name}.jpg")
        kinds = (["target", "ignore"], ["target", "target"], [])[i % 3]
        polys = [random_polygon(rng, h, w) for _ in kinds]
        anno = {
            "text": [f"what would you use to sit on {i}?", f"the object for resting {i}"],
            "is_sentence": i % 2 == 0,
            "shapes": [
                {"label": k, "points": [list(p) for p in zip(pts[::2], pts[1::2])], "shape_type": "polygon"}
                for k, pts in zip(kinds, polys)
            ],
        }
        if i == 0:
            anno |= {"imageHeight": h, "imageWidth": w}
        (d / f"{name}.json").write_text(json.dumps(anno))
        names.append(name)
    return names


def make_hf(
    root: str | Path, schema: str = "refer", fmt: str = "disk", n_rows: int = 3, seed: int = 0
) -> list[dict]:
    """A local Hugging Face dataset with ``train`` and ``val`` splits in ``fmt`` ``disk`` (save_to_disk of
    a DatasetDict) or ``parquet`` (``<split>-00000-of-00001.parquet``), schema ``refer`` or ``mask``.

    Images are embedded as PNG bytes (``Image`` feature). Returns the rows written (plain values) per split
    concatenated, with the full-resolution target mask under ``"_mask"``.
    """
    import datasets
    from PIL import Image

    rng = random.Random(seed)
    root = Path(root)
    splits, plain = {}, []
    for split in ("train", "val"):
        rows = []
        for i in range(n_rows):
            h, w = rng.choice(((40, 56), (64, 48)))
            buf = io.BytesIO()
            Image.new("RGB", (w, h), (i * 50 % 256, 10, 200)).save(buf, format="PNG")
            if schema == "refer":
                seg = [random_polygon(rng, h, w)] if i % 3 != 2 else []
                from pycocotools import mask as mu

                full = (
                    mu.decode(mu.merge(mu.frPyObjects(seg, h, w))).astype(bool)
                    if seg
                    else np.zeros((h, w), bool)
                )
                sents = [f"thing {split} {i}", f"object {i}"]
                image = {"bytes": buf.getvalue(), "path": None}
                rows.append(
                    {"image": image, "segmentation": seg, "sentences": sents, "ref_id": i, "_mask": full}
                )
            else:
                full = np.zeros((h, w), bool)
                if i % 3 != 2:
                    full[rng.randrange(h // 2) :, rng.randrange(w // 2) :] = True
                mbuf = io.BytesIO()
                Image.fromarray(full.astype(np.uint8) * 255).save(mbuf, format="PNG")
                rows.append({"image": {"bytes": buf.getvalue(), "path": None}, "text": f"region {split} {i}",
                             "mask": {"bytes": mbuf.getvalue(), "path": None}, "_mask": full})  # fmt: skip
        plain += rows
        cols = {k: [r[k] for r in rows] for k in rows[0] if k != "_mask"}
        feats = {"image": datasets.Image()}
        if schema == "refer":
            feats |= {
                "segmentation": datasets.Sequence(datasets.Sequence(datasets.Value("float64"))),
                "sentences": datasets.Sequence(datasets.Value("string")),
                "ref_id": datasets.Value("int64"),
            }
        else:
            feats |= {"text": datasets.Value("string"), "mask": datasets.Image()}
        splits[split] = datasets.Dataset.from_dict(cols, features=datasets.Features(feats))
    if fmt == "disk":
        datasets.DatasetDict(splits).save_to_disk(str(root))
    else:
        (root / "data").mkdir(parents=True, exist_ok=True)
        for split, ds in splits.items():
            ds.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return plain


def result_of(row: dict, answer: str, **extra) -> dict:
    """A minimal result record (:mod:`text4seg.data.results`) answering turn 0 of a built swift
    ``row`` with ``answer``; ``extra`` fields (``num_tokens``, ``refined``...) are added."""
    meta = row["text4seg"]
    same = {k: meta[k] for k in ("grid", "scheme", "width", "height")}
    return {"id": meta["id"], "turn": 0, "answer": answer, **same, **extra}
