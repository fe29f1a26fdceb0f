"""The coco-panoptic builder on a fixture in the official layout, and panoptic scoring through evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.peers import make_coco_panoptic

from data_builders import build_jsonl
from data_builders.panoptic import rgb_to_id
from text4seg.data.jsonl import read_jsonl
from text4seg.data.rle import rle_to_mask
from text4seg.descriptors import decode
from text4seg.descriptors.instances import split_instances
from text4seg.evaluation.evaluate import evaluate


def test_rgb_to_id_reads_every_channel():
    rgb = np.array([[[1, 2, 3]]], np.uint8)
    assert rgb_to_id(rgb)[0, 0] == 1 + 256 * 2 + 65536 * 3


def _build(tmp_path):
    data = make_coco_panoptic(tmp_path, n_images=2)
    out = tmp_path / "pan.jsonl"
    report = build_jsonl("coco-panoptic", out, root=tmp_path, split="val2017", with_gt=True)
    return data, report, list(read_jsonl(out))


def test_panoptic_rows_keep_every_segment_and_number_things_like_the_grid(tmp_path):
    data, report, rows = _build(tmp_path)
    assert report["samples"] == 2
    for row, ann, ids in zip(rows, data["annotations"], data["id_maps"]):
        meta = row["text4seg"]
        segs = ann["segments_info"]
        assert meta["task"] == "panoptic" and meta["gt"]["classes"] == ["person"]
        assert meta["labels"] == ["sky-other-merged", "grass-merged", "person 1", "person 2", "person"]
        assert meta["gt"]["ignore"] == [4]  # the crowd segment
        for rle, s in zip(meta["gt"]["masks"], segs):  # the PNG's ids, R + 256 G + 256^2 B
            assert (rle_to_mask(rle) == (ids == s["id"])).all()
        grid = decode(row["messages"][1]["content"], 16).grid
        found = {(i.name, i.k) for i in split_instances(grid)}
        assert {("person", 1), ("person", 2), ("sky-other-merged", 0), ("grass-merged", 0)} <= found
        # person 1 is the upper-left instance (numbering by centroid row band, then x)
        p1 = rle_to_mask(meta["gt"]["masks"][2])
        assert np.argwhere(p1).mean(0)[0] < np.argwhere(rle_to_mask(meta["gt"]["masks"][3])).mean(0)[0]


def test_a_missing_png_names_the_file(tmp_path):
    make_coco_panoptic(tmp_path, n_images=1)
    png = next((tmp_path / "annotations" / "panoptic_val2017").glob("*.png"))
    png.unlink()
    with pytest.raises(ValueError, match=png.name):
        build_jsonl("coco-panoptic", tmp_path / "x.jsonl", root=tmp_path, split="val2017")


def test_evaluate_scores_panoptic_answers_with_pq(tmp_path):
    _, _, rows = _build(tmp_path)
    recs = []
    for r in rows:
        m = r["text4seg"]
        recs.append(
            {
                "id": m["id"],
                "turn": 0,
                "answer": r["messages"][1]["content"],
                "grid": m["grid"],
                "scheme": m["scheme"],
                "width": m["width"],
                "height": m["height"],
            }
        )
    (tmp_path / "res.jsonl").write_text("".join(json.dumps(x) + "\n" for x in recs))
    pan = evaluate(tmp_path / "res.jsonl", tmp_path / "pan.jsonl")["peers"]["panoptic"]
    coarse = pan["coarse"]
    # the ground truth's own 16x16 answer: every person and stuff region matched, nothing extra
    assert coarse["per_class"]["person"]["tp"] == 4 and coarse["per_class"]["person"]["fn"] == 0
    assert coarse["per_class"]["person"]["fp"] == 0 and coarse["rq"] == 1.0
    assert 0.5 < coarse["pq"] <= 1.0 and coarse["n_th"] == 1 and coarse["n_st"] == 2
    assert pan["refined"] is None
