"""Own-data builders on fixtures in their native layouts: coco-format, labelme, mask-folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.owndata import make_coco_format, make_labelme, make_mask_folder

from data_builders import build_jsonl
from data_builders.owndata import split_of, target_summary
from text4seg.cli import main
from text4seg.data.records import read_jsonl
from text4seg.data.rle import rle_to_mask
from text4seg.descriptors import decode, grid_to_mask, mask_to_grid

pytest.importorskip("pycocotools")


def _rows(path) -> list[dict]:
    return list(read_jsonl(path))


def _build(name, tmp_path, root, out="out.jsonl", **kw):
    out = tmp_path / out
    rep = build_jsonl(name, out, root=root, **kw)
    return rep, _rows(out)


# ------------------------------------------------------------------------------------------ coco-format
def _reference_union(data, image_id, cat_id):
    from pycocotools import mask as mu

    im = next(i for i in data["images"] if i["id"] == image_id)
    h, w = im["height"], im["width"]
    m = np.zeros((h, w), bool)
    for a in data["annotations"]:
        if a["image_id"] == image_id and a["category_id"] == cat_id:
            seg = a["segmentation"]  # pycocotools.coco.COCO.annToRLE, verbatim logic
            if isinstance(seg, list):
                rle = mu.merge(mu.frPyObjects(seg, h, w))
            elif isinstance(seg["counts"], list):
                rle = mu.frPyObjects(seg, h, w)
            else:
                rle = {"size": seg["size"], "counts": seg["counts"].encode()}
            m |= mu.decode(rle).astype(bool)
    return m


def test_coco_format_referring_targets_equal_pycocotools_unions(tmp_path):
    data = make_coco_format(tmp_path, n_images=4)
    rep, rows = _build(
        "coco-format",
        tmp_path,
        tmp_path / "images",
        with_gt=True,
        options={"ann": str(tmp_path / "instances.json"), "absent_rate": 0},
    )
    assert rep["skipped_bad"] == 0
    names = {c["id"]: c["name"] for c in data["categories"]}
    present = {(a["image_id"], a["category_id"]) for a in data["annotations"]}
    assert len(rows) == len(present)
    for row in rows:
        meta = row["text4seg"]
        image_id, cat_id = int(meta["source"]["image_id"]), int(meta["source"]["ref_id"])
        ref = _reference_union(data, image_id, cat_id)
        assert (rle_to_mask(meta["gt"]["masks"][0]) == ref).all()  # polygons, str RLE, list RLE, crowd
        assert meta["labels"] == [names[cat_id]]
        grid = decode(row["messages"][1]["content"], 16).grid
        assert (grid == mask_to_grid(ref, 16, labels=names[cat_id])).all()
        assert names[cat_id] in row["messages"][0]["content"]


def test_coco_format_absent_categories_give_seeded_no_target_samples(tmp_path):
    make_coco_format(tmp_path, n_images=4)
    opts = {"ann": str(tmp_path / "instances.json"), "absent_rate": 1}
    _, rows = _build("coco-format", tmp_path, tmp_path / "images", options=opts)
    empty = [r for r in rows if r["text4seg"]["labels"] == []]
    assert empty and all("/absent" in r["text4seg"]["id"] for r in empty)
    assert all(decode(r["messages"][1]["content"], 16).is_empty for r in empty)
    _, again = _build("coco-format", tmp_path, tmp_path / "images", out="b.jsonl", options=opts)
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_coco_format_semantic_label_map_uses_category_names(tmp_path):
    make_coco_format(tmp_path, n_images=2)
    rep, rows = _build(
        "coco-format",
        tmp_path,
        tmp_path / "images",
        split="val",
        options={"ann": str(tmp_path / "instances.json"), "task": "semantic"},
    )
    assert len(rows) == 2
    meta = rows[0]["text4seg"]
    assert meta["task"] == "semantic" and set(meta["labels"]) == {"cup", "person", "dog"}
    lm = np.asarray(Image.open(meta["gt"]["label_map"]))
    classes = meta["gt"]["classes"]
    assert classes[0] == "others" and set(classes[1:]) == {"cup", "person", "dog"}
    grid = decode(rows[0]["messages"][1]["content"], 16).grid
    assert (grid == mask_to_grid(lm, 16, labels=classes, ignore_index=None)).all()


def test_coco_format_instance_task_numbers_people_and_leaves_crowds_out(tmp_path):
    make_coco_format(tmp_path, n_images=2)
    _, rows = _build(
        "coco-format",
        tmp_path,
        tmp_path / "images",
        split="val",
        options={"ann": str(tmp_path / "instances.json"), "task": "instance"},
    )
    from text4seg.descriptors.instances import instance_masks
    from text4seg.evaluation.instances import instance_scores, instances_of_label_map, match_instances

    for row in rows:
        meta = row["text4seg"]
        assert sorted(meta["labels"]) == sorted(
            ["cup 1", "person 1", "person 2"] + (["dog 1"] if meta["source"]["image_id"] == "1" else [])
        )
        grid = decode(row["messages"][1]["content"], 16).grid
        assert (grid[:, :8] != "person 2").all()  # person 1 is the left one
        lm = np.asarray(Image.open(meta["gt"]["label_map"]))
        gt = instances_of_label_map(lm, meta["gt"]["classes"])
        pred = [(n, m) for n, _, m in instance_masks(grid, meta["height"], meta["width"])]
        s = instance_scores([match_instances(pred, gt)])
        assert s["fn"] == 0 and s["fp"] == 0  # rectangles on the grid's pixel lattice: answer = truth
    assert "person 3" not in rows[1]["text4seg"]["gt"]["classes"]  # the crowd is no instance


def test_coco_format_split_ratio_partitions_images_deterministically(tmp_path):
    make_coco_format(tmp_path, n_images=12)
    opts = {"ann": str(tmp_path / "instances.json"), "split_ratio": 0.5, "absent_rate": 0}
    ids = {}
    for split in ("train", "val"):
        _, rows = _build(
            "coco-format", tmp_path, tmp_path / "images", out=f"{split}.jsonl", split=split, options=opts
        )
        ids[split] = {r["text4seg"]["source"]["image_id"] for r in rows}
    assert ids["train"].isdisjoint(ids["val"]) and len(ids["train"] | ids["val"]) == 12
    assert ids["train"] == {str(i) for i in range(1, 13) if split_of(str(i), 0, 0.5) == "train"}
    with pytest.raises(ValueError, match="split_ratio"):
        build_jsonl("coco-format", tmp_path / "x.jsonl", root=tmp_path / "images", split="test", options=opts)


def test_coco_format_bad_annotation_is_named_and_skip_bad_counts_it(tmp_path, capsys):
    data = make_coco_format(tmp_path, n_images=3)
    data["annotations"][0]["segmentation"] = {"size": [48, 64], "counts": 12}
    data["annotations"][-1]["category_id"] = 99
    (tmp_path / "instances.json").write_text(json.dumps(data))
    argv = [
        "build",
        "coco-format",
        "--root",
        str(tmp_path / "images"),
        "--set",
        f"ann={tmp_path / 'instances.json'}",
    ]
    assert main([*argv, "--out", str(tmp_path / "bad.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"annotation {data['annotations'][0]['id']}" in err and "instances.json" in err
    assert not (tmp_path / "bad.jsonl").exists()
    assert main([*argv, "--out", str(tmp_path / "ok.jsonl"), "--skip-bad"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["skipped_bad"] == 2 and "category_id 99" in " ".join(rep["bad_examples"])


def test_coco_format_shards_partition_the_full_build(tmp_path):
    make_coco_format(tmp_path, n_images=5)
    opts = {"ann": str(tmp_path / "instances.json")}
    _, full = _build("coco-format", tmp_path, tmp_path / "images", options=opts)
    parts = []
    for i in range(2):
        _, rows = _build(
            "coco-format", tmp_path, tmp_path / "images", out=f"s{i}.jsonl", shard=f"{i}/2", options=opts
        )
        parts += rows
    assert sorted(json.dumps(r) for r in parts) == sorted(json.dumps(r) for r in full)


def test_target_summary_counts_targets_and_empty_samples(tmp_path):
    make_coco_format(tmp_path, n_images=4)
    opts = {"ann": str(tmp_path / "instances.json"), "absent_rate": 1}
    _, rows = _build("coco-format", tmp_path, tmp_path / "images", options=opts)
    s = target_summary(tmp_path / "out.jsonl")
    assert s["samples"] == len(rows) and s["tasks"] == {"res": len(rows)}
    assert s["empty_targets"] == sum(not r["text4seg"]["labels"] for r in rows) > 0
    assert s["targets_per_sample"]["max"] == 1
