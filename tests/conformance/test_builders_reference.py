"""Builders against their reference implementations (issue 27): golden numbers computed once with the
reference at a pinned commit, on inputs generated here deterministically. The reference's code is not
copied; its outputs are facts written below. A change that moves any number fails here.

* LabelMe (``wkentaro/labelme``, release 6.3.1 from PyPI = commit
  6b718b400f7b3b6d5efca621ecb687f0063e813f, MIT; Pillow 13.0.0): ``labelme.utils.shape.shape_to_mask`` of
  every shape type it rasterises (polygon, oriented_rectangle, rectangle, circle, line, linestrip, point;
  its defaults line_width=10, point_size=5) and ``shapes_to_label`` of a ``mask`` shape, on a 37x53 image.
  Golden: ``(pixel count, sha1(np.packbits(mask))[:16])``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random

import numpy as np
import pytest

from data_builders.labelme import shape_mask

# ------------------------------------------------------------------------------------------------ LabelMe
LM_H, LM_W = 37, 53

LABELME_GOLDEN = {  # labelme 6.3.1 shape_to_mask((37, 53), points, shape_type)
    "polygon0": (374, "f9707a4750641284"),
    "polygon1": (745, "a2856347a7b781ab"),
    "polygon2": (186, "d427bc2690ad2bc1"),
    "polygon3": (328, "861ac11b7f8bd559"),
    "polygon4": (227, "ffcdf49f05b2c6f7"),
    "polygon5": (490, "b2b4c7f3b02a6d46"),
    "oriented_rectangle0": (175, "3c6fa209d684f07c"),
    "oriented_rectangle1": (160, "d79dccb83cd222e6"),
    "oriented_rectangle2": (82, "7741303c9b58b77a"),
    "oriented_rectangle3": (100, "ed4158b77f9874c4"),
    "rectangle0": (462, "431973cd38b539d0"),
    "rectangle1": (360, "9079283244a2d0ed"),
    "rectangle2": (210, "4a4ebdb1379272f5"),
    "rectangle3": (32, "83de76831d9bf735"),
    "rectangle_int": (486, "0498a01413e658e8"),
    "circle0": (148, "5ee6f53717f79559"),
    "circle1": (128, "6158780fa3d9c8c5"),
    "circle2": (40, "da776ce41ec48b7f"),
    "circle3": (148, "3c10f5e76ef9ccb0"),
    "line0": (357, "a9b0f5b9a49b7577"),
    "line1": (355, "19b114cdd6233689"),
    "line2": (131, "7a5fbcffe25fe728"),
    "linestrip0": (203, "36d9cfd2681ba135"),
    "linestrip1": (552, "4b800234b7f009bb"),
    "linestrip2": (369, "5fc59bb10a458059"),
    "point0": (97, "779e0afac8ceeb9f"),
    "point1": (97, "07d09f00bf80668e"),
    "point2": (15, "deac712100b39d90"),
    "point_corner": (30, "69ae6b696757500b"),
    "polygon_tiny": (1, "49252da505dccc0d"),
}
# a 6x5 mask PNG (pixel (r, c) set when (5r + c) % 3 != 0) at points [[10, 20], [14, 25]]: shapes_to_label
LABELME_MASK_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAUAAAAGAQAAAAAjgGnmAAAAFElEQVR4nGPIYPJguMGQweTBcAMAEMgDFYvo10QAAAAASUVORK5CYII="
)
LABELME_MASK_GOLDEN = (20, "4911401205adfa9d")


def labelme_cases() -> list[tuple[str, str, list[list[float]]]]:
    """The shapes of :data:`LABELME_GOLDEN`, seeded: points up to 4 px outside the image, two decimals."""
    rng = random.Random(27)

    def pt() -> list[float]:
        return [round(rng.uniform(-4, LM_W + 4), 2), round(rng.uniform(-4, LM_H + 4), 2)]

    out = [(f"polygon{i}", "polygon", [pt() for _ in range(3 + i)]) for i in range(6)]
    for i in range(4):
        cx, cy = rng.uniform(10, LM_W - 10), rng.uniform(10, LM_H - 10)
        a, b, t = rng.uniform(3, 12), rng.uniform(2, 8), rng.uniform(0, 3.14)
        c, s = math.cos(t), math.sin(t)
        corners = [
            [round(cx + c * dx - s * dy, 2), round(cy + s * dx + c * dy, 2)]
            for dx, dy in ((-a, -b), (a, -b), (a, b), (-a, b))
        ]
        out.append((f"oriented_rectangle{i}", "oriented_rectangle", corners))
    out += [(f"rectangle{i}", "rectangle", [pt(), pt()]) for i in range(4)]
    out.append(("rectangle_int", "rectangle", [[3, 4], [20, 30]]))
    for i in range(4):
        c = [round(rng.uniform(0, LM_W), 2), round(rng.uniform(0, LM_H), 2)]
        edge = [round(c[0] + rng.uniform(-9, 9), 2), round(c[1] + rng.uniform(-9, 9), 2)]
        out.append((f"circle{i}", "circle", [c, edge]))
    out += [(f"line{i}", "line", [pt(), pt()]) for i in range(3)]
    out += [(f"linestrip{i}", "linestrip", [pt() for _ in range(3 + i)]) for i in range(3)]
    out += [(f"point{i}", "point", [pt()]) for i in range(3)]
    out.append(("point_corner", "point", [[0, 0]]))
    out.append(("polygon_tiny", "polygon", [[10.2, 10.2], [10.8, 10.2], [10.5, 10.9]]))
    return out


def _digest(mask: np.ndarray) -> tuple[int, str]:
    return int(mask.sum()), hashlib.sha1(np.packbits(mask).tobytes()).hexdigest()[:16]


def test_labelme_cases_cover_every_shape_type_labelme_rasterises():
    kinds = {k for _, k, _ in labelme_cases()}
    assert kinds == {"polygon", "oriented_rectangle", "rectangle", "circle", "line", "linestrip", "point"}
    assert [n for n, _, _ in labelme_cases()] == list(LABELME_GOLDEN)


@pytest.mark.parametrize("name,kind,points", labelme_cases(), ids=[c[0] for c in labelme_cases()])
def test_labelme_shape_masks_equal_labelme_shape_to_mask(name, kind, points):
    shape = {"label": "x", "points": points, "shape_type": kind}
    assert _digest(shape_mask(shape, LM_H, LM_W, where=name)) == LABELME_GOLDEN[name]


def test_labelme_mask_shape_equals_labelme_shapes_to_label():
    shape = {"label": "m", "points": [[10, 20], [14, 25]], "shape_type": "mask", "mask": LABELME_MASK_PNG}
    m = shape_mask(shape, LM_H, LM_W, where="mask")
    assert _digest(m) == LABELME_MASK_GOLDEN
    patch = np.arange(30).reshape(6, 5) % 3 != 0
    assert (m[20:26, 10:15] == patch).all()
    assert base64.b64decode(LABELME_MASK_PNG)[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------------- Ref-DAVIS17
def _palette_png(path, arr: np.ndarray) -> None:
    from PIL import Image

    im = Image.fromarray(arr.astype(np.uint8), "P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def test_ref_davis17_reads_the_annotation_set_referformer_converts(tmp_path):
    """``wjn922/ReferFormer`` at 06fc218f5d8f04730f81471a15ed89ea7e4d30d8 (Apache-2.0),
    ``tools/data/convert_davis_to_ytvos.py``, read by hand (not run): Ref-DAVIS17's ``obj_id`` (from 1)
    numbers the objects of ``DAVIS/Annotations_unsupervised/480p`` (moved to ``<split>/Annotations``);
    each video's expressions are ``"0"``.. in the order annot1 first-frame, annot1 full-video, annot2
    first-frame, annot2 full-video per object (objects sorted by obj_id). Fixture: two objects whose ids are
    swapped between the semi-supervised and unsupervised sets; every expression's ground truth must be
    the unsupervised object its obj_id names (1 case per expression, 8; before: the other object, IoU 0)."""
    from PIL import Image

    from data_builders import build_jsonl
    from text4seg.data.jsonl import read_jsonl
    from text4seg.data.rle import rle_to_mask

    h, w = 32, 48
    left, right = np.zeros((h, w), bool), np.zeros((h, w), bool)
    left[4:20, 2:14], right[10:30, 30:46] = True, True
    for k in range(3):
        name = f"{k:05d}"
        (tmp_path / "JPEGImages" / "480p" / "v").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(
            tmp_path / "JPEGImages" / "480p" / "v" / f"{name}.jpg"
        )
        _palette_png(tmp_path / "Annotations" / "480p" / "v" / f"{name}.png", left * 1 + right * 2)
        _palette_png(
            tmp_path / "Annotations_unsupervised" / "480p" / "v" / f"{name}.png", left * 2 + right * 1
        )
    texts = {"1": "the right box", "2": "the left box"}  # obj_id in the unsupervised numbering
    exps, eid = {}, 0
    for obj in ("1", "2"):  # ReferFormer's order: annot1 first, annot1 full, annot2 first, annot2 full
        for _ in range(4):
            exps[str(eid)] = {"exp": texts[obj], "obj_id": obj}
            eid += 1
    meta = {"videos": {"v": {"expressions": exps, "frames": ["00000", "00001", "00002"]}}}
    (tmp_path / "meta_expressions.json").write_text(__import__("json").dumps(meta))
    out = tmp_path / "o.jsonl"
    opts = {"expressions": "meta_expressions.json", "frames": 3}
    build_jsonl("davis17", out, root=tmp_path, split="val", grid=8, with_gt=True, options=opts)
    rows = list(read_jsonl(out))
    assert len(rows) == 8
    for row in rows:
        want = right if "right" in row["messages"][0]["content"] else left
        assert all((rle_to_mask(m) == want).all() for m in row["text4seg"]["gt"]["masks"])


# ------------------------------------------------------------------------ official referring questions
# mc-lan/Text4Seg@069a7f75cfafc77f363722b93260b70726e75bfc, the RES evaluation:
# llava/eval/refer_seg_dataset.py takes each sentence as ``sent["sent"].strip().lower()``;
# llava/eval/model_refer_seg.py then removes commas (``question.replace(",", "")``) and asks
# ``random.choice(QUESTION_PARTIAL)`` with ``[class_name]`` replaced (QUESTION_PARTIAL:
# text4seg/checkpoints/official_data/questions.json).
def _official_eval_text(sent: str) -> str:
    return sent.strip().lower().replace(",", "")


def test_official_templates_question_is_what_the_official_res_evaluation_asks(tmp_path):
    import pickle

    from support.fakes import make_refer

    from data_builders import build_jsonl
    from text4seg.checkpoints import official
    from text4seg.data.jsonl import read_jsonl

    pytest.importorskip("pycocotools")
    make_refer(tmp_path, "refcoco", "unc", n_images=3, refs_per_image=2, splits=("val",))
    path = tmp_path / "refcoco" / "refs(unc).p"
    refs = pickle.loads(path.read_bytes())
    sents = {}
    for k, ref in enumerate(refs):  # upper case, commas and outer spaces, as raw annotations have them
        for s in ref["sentences"]:
            s["sent"] = f"  The {s['sent'].title()}, Left Of {k} " if k % 2 else s["sent"].upper()
            sents[(str(ref["ref_id"]), str(s["sent_id"]))] = s["sent"]
    path.write_bytes(pickle.dumps(refs))
    out = tmp_path / "val.jsonl"
    build_jsonl("refcoco", out, root=tmp_path, split="val", stats=False, options={"templates": "official"})
    rows = list(read_jsonl(out))
    assert len(rows) == len(sents)
    for row in rows:
        src = row["text4seg"]["source"]
        asked = _official_eval_text(sents[(src["ref_id"], src["sent_ids"][0])])
        allowed = {"<image>" + t.replace("[class_name]", asked) for t in official.questions("referring")}
        assert row["messages"][0]["content"] in allowed
