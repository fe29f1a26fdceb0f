"""Semantic builders (COCO-Stuff, ADE20K, PASCAL Context-59, VOC-20) on generated native layouts."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from support.fakes import make_semantic

from data_builders import build_jsonl
from text4seg import decode, mask_to_grid
from text4seg.data.jsonl import read_jsonl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

NAMES = ("coco-stuff", "ade20k", "pc59", "voc20")


def _build(tmp_path, name, split, **kw):
    kw.setdefault("stats", False)
    out = tmp_path / f"{name}_{split}.jsonl"
    report = build_jsonl(name, out, root=tmp_path / name, split=split, **kw)
    return report, list(read_jsonl(out))


@pytest.mark.parametrize("name", NAMES)
def test_eval_split_answer_is_the_grid_of_the_stored_label_map(tmp_path, name):
    make_semantic(tmp_path / name, name)
    report, rows = _build(tmp_path, name, "val")
    assert report["samples"] == len(rows) == 3
    for row in rows:
        gt = row["text4seg"]["gt"]
        lm = np.asarray(Image.open(gt["label_map"]))
        names = {v: n for v, n in enumerate(gt["classes"]) if n != "others" and v not in gt["ignore"]}
        want = mask_to_grid(lm, 16, labels=names, ignore_index=None)
        got = decode(row["messages"][1]["content"], 16, strict=True).grid
        assert (got == want).all()
        assert set(row["text4seg"]["labels"]) == set(want.ravel()) - {"others"}
        assert (row["text4seg"]["width"], row["text4seg"]["height"]) == (lm.shape[1], lm.shape[0])
        assert all(n in row["messages"][0]["content"] for n in names.values())  # full class list asked


def test_ignored_values_become_others(tmp_path):
    make_semantic(tmp_path / "voc20", "voc20")
    _, rows = _build(tmp_path, "voc20", "val")
    for row in rows:
        lm = np.asarray(Image.open(row["text4seg"]["gt"]["label_map"]))
        got = decode(row["messages"][1]["content"], 16).grid
        idx = mask_to_grid(lm, 16, labels=None, ignore_index=None)  # raw values as strings
        assert (got[np.isin(idx, ["others", "255"])] == "others").all()


def test_train_crops_write_images_matching_the_row_size(tmp_path):
    make_semantic(tmp_path / "ade20k", "ade20k", n_images=4)
    _, rows = _build(tmp_path, "ade20k", "train", options={"crop_prob": 1.0, "crop_min": 0.5})
    for row in rows:
        im = Image.open(row["images"][0])
        assert im.size == (row["text4seg"]["width"], row["text4seg"]["height"])
        assert "_crops" in row["images"][0] and im.size != (64, 48)


def test_partial_mode_asks_a_subset_and_answers_exactly_it(tmp_path):
    make_semantic(tmp_path / "pc59", "pc59", n_images=4)
    _, rows = _build(tmp_path, "pc59", "val", options={"mode": "partial"})
    for row in rows:
        labels = set(decode(row["messages"][1]["content"], 16).labels)
        assert labels and labels == set(row["text4seg"]["labels"])
        assert all(lab in row["messages"][0]["content"] for lab in labels)


def test_conditioned_mode_lists_distractors_absent_from_the_image(tmp_path):
    make_semantic(tmp_path / "coco-stuff", "coco-stuff")
    _, rows = _build(tmp_path, "coco-stuff", "val", options={"mode": "conditioned", "max_distractors": 3})
    for row in rows:
        q = row["messages"][0]["content"]
        present = set(row["text4seg"]["labels"])
        from data_builders.classes import COCO_STUFF_171

        asked = [n for n in COCO_STUFF_171 if n and n in q]
        assert present <= set(asked) and len(set(asked) - present) >= 1


def test_mix_is_deterministic_and_crops_are_reproducible(tmp_path):
    make_semantic(tmp_path / "voc20", "voc20", n_images=4)
    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    build_jsonl(
        "voc20", a, root=tmp_path / "voc20", split="train", stats=False, options={"crop_dir": tmp_path / "c"}
    )
    build_jsonl(
        "voc20", b, root=tmp_path / "voc20", split="train", stats=False, options={"crop_dir": tmp_path / "c"}
    )
    assert a.read_bytes() == b.read_bytes()


def test_missing_label_map_names_file_and_skip_bad_counts(tmp_path):
    make_semantic(tmp_path / "voc20", "voc20")
    victim = tmp_path / "voc20" / "SegmentationClass" / "val_0001.png"
    victim.unlink()
    with pytest.raises(ValueError, match="val_0001.png"):
        _build(tmp_path, "voc20", "val")
    report, rows = _build(tmp_path, "voc20", "val", skip_bad=True)
    assert report["skipped_bad"] == 1 and len(rows) == 2


def test_unknown_split_lists_the_split_files(tmp_path):
    make_semantic(tmp_path / "voc20", "voc20")
    with pytest.raises(ValueError, match=r"unknown split 'test'.*\['train', 'val'\]"):
        _build(tmp_path, "voc20", "test")


@pytest.mark.parametrize("split", ["training", "validation"])
def test_a_truncated_image_and_a_label_map_of_another_size_are_bad_on_every_split(tmp_path, split):
    """The same check on every split (it used to happen only where training crops decoded the image)."""
    from support.fakes import SEMANTIC_LAYOUTS

    name = "ade20k"
    stems = make_semantic(tmp_path / name, name)[split]
    img_t = SEMANTIC_LAYOUTS[name][0]
    folder = tmp_path / name / img_t.format(split=split)
    truncated = folder / f"{stems[0]}.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])  # a cut-off download
    Image.new("RGB", (10, 10)).save(folder / f"{stems[1]}.jpg")  # not the label map's 64x48
    with pytest.raises(ValueError, match=stems[0]):
        _build(tmp_path, name, split, options={"crop_prob": 0.0})
    report, rows = _build(tmp_path, name, split, skip_bad=True, options={"crop_prob": 0.0})
    assert report["skipped_bad"] == 2 and len(rows) == 1
    assert any("label map is 64x48" in e for e in report["bad_examples"])
