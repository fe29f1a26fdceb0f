"""Own-data builders on fixtures in their native layouts: coco-format, labelme, mask-folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.owndata import make_coco_format, make_labelme, make_mask_folder

from data_builders import build_jsonl
from data_builders.owndata import split_of
from text4seg.cli import main
from text4seg.data.jsonl import read_jsonl
from text4seg.data.rle import rle_to_mask
from text4seg.data.stats import target_summary
from text4seg.descriptors import decode, mask_to_grid

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
        "--ann",
        f"{tmp_path / 'instances.json'}",
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


# ------------------------------------------------------------------------------------------------ labelme
def test_labelme_every_shape_kind_and_groups(tmp_path):
    from data_builders.labelme import shape_mask

    docs = make_labelme(tmp_path, n_images=2)
    rep, rows = _build("labelme", tmp_path, tmp_path, with_gt=True)
    assert rep["skipped_bad"] == 0
    first = [r for r in rows if r["text4seg"]["source"]["image_id"] == "ann/shot0.json"]
    by_label = {r["text4seg"]["labels"][0]: r for r in first}
    # a point ("eye") is LabelMe's disc of radius 5; a point set ("dots") has no area: no sample
    assert set(by_label) == {"cat", "box", "ball", "wire", "path", "eye", "car", "blob", "tag"}
    gt = {k: rle_to_mask(r["text4seg"]["gt"]["masks"][0]) for k, r in by_label.items()}
    assert gt["box"][2:13, 30:41].all() and gt["box"].sum() == 11 * 11  # rectangle corners inclusive
    assert gt["blob"].sum() == 16 and gt["blob"][21:25, 12:16].all()  # mask shape pasted at its box
    assert gt["ball"][30, 50] and gt["ball"].sum() > 30  # circle of radius 4
    assert 28 * 10 <= gt["wire"].sum() <= 29 * 11  # LabelMe's 10-pixel-wide line
    assert gt["eye"][0:11, 0:11].sum() == gt["eye"].sum() > 60  # disc of radius 5 at (5, 5)
    assert gt["tag"][18, 53] and not gt["tag"][14, 48]  # the oriented rectangle's polygon
    assert gt["car"].sum() == sum(
        shape_mask(s, 48, 64).sum() for s in docs[0]["shapes"] if s["label"] == "car"
    )
    assert first[0]["images"][0] == str((tmp_path / "images" / "shot0.png").resolve())
    embedded = [r for r in rows if r["text4seg"]["source"]["image_id"] == "ann/shot1.json"]
    assert embedded and Path(embedded[0]["images"][0]).is_file()  # imageData written out


def test_labelme_group_targets_split_same_label_by_group_id(tmp_path):
    make_labelme(tmp_path, n_images=1)
    _, rows = _build("labelme", tmp_path, tmp_path, options={"targets": "group"})
    cars = sorted(r["text4seg"]["source"]["ref_id"] for r in rows if r["text4seg"]["labels"] == ["car"])
    assert cars == ["1", "8"]  # group 1 (two polygons) and the ungrouped shape 8


def test_labelme_image_path_escaping_the_root_is_refused(tmp_path, capsys):
    make_labelme(tmp_path, n_images=2)
    doc = json.loads((tmp_path / "ann" / "shot0.json").read_text())
    doc["imagePath"] = "../../../etc/passwd"
    (tmp_path / "ann" / "shot0.json").write_text(json.dumps(doc))
    code = main(["build", "labelme", "--root", str(tmp_path), "--out", str(tmp_path / "o.jsonl")])
    assert code == 2 and "escapes the dataset root" in capsys.readouterr().err
    doc["shapes"][0]["shape_type"], doc["imagePath"] = "cuboid", "../images/shot0.png"
    (tmp_path / "ann" / "shot1.json").write_text(json.dumps(doc))
    rep = build_jsonl("labelme", tmp_path / "o.jsonl", root=tmp_path, skip_bad=True)
    assert rep["skipped_bad"] == 2 and any("shot1.json shape 0" in b for b in rep["bad_examples"])


# -------------------------------------------------------------------------------------------- mask-folder
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_mask_folder_binary_class_and_instance_masks(tmp_path, fmt):
    queries = make_mask_folder(tmp_path, fmt=fmt)
    rep, rows = _build("mask-folder", tmp_path, tmp_path, with_gt=True)
    assert rep["skipped_bad"] == 0 and len(rows) == len(queries)
    masks = [rle_to_mask(r["text4seg"]["gt"]["masks"][0]) for r in rows]
    assert masks[0].sum() == 16 * 26  # binary 255
    assert masks[1][:10].all() and masks[1].sum() == 10 * 64  # class "sky" by name
    assert masks[2].sum() == 18 * 30  # class id 2 (road)
    assert masks[3].sum() == 0 and rows[3]["text4seg"]["labels"] == []  # building absent: no target
    assert decode(rows[3]["messages"][1]["content"], 16).is_empty
    assert masks[4].sum() == 100 and masks[5].sum() == 20 * 30  # 16-bit instance ids 7 and 300
    assert (
        rows[1]["text4seg"]["labels"] == ["sky"] and "where cars drive" in rows[2]["messages"][0]["content"]
    )


def test_mask_folder_bad_row_names_file_and_line(tmp_path, capsys):
    make_mask_folder(tmp_path)
    with open(tmp_path / "queries.jsonl", "a") as fh:
        fh.write(json.dumps({"image": "p1.jpg", "mask": "p1_classes.png", "id": "tree", "query": "x"}) + "\n")
    code = main(["build", "mask-folder", "--root", str(tmp_path), "--out", str(tmp_path / "o.jsonl")])
    assert code == 2 and "queries.jsonl:7" in capsys.readouterr().err and not (tmp_path / "o.jsonl").exists()


def test_owndata_builders_are_byte_identical_for_a_seed_and_split_by_ratio(tmp_path):
    make_mask_folder(tmp_path)
    make_labelme(tmp_path / "lm", n_images=3)
    embedded = {"image_dir": str(tmp_path / "embedded")}  # else <out stem>_images/, which differs for a and b
    for name, root, opts in (("mask-folder", tmp_path, {}), ("labelme", tmp_path / "lm", embedded)):
        a = build_jsonl(name, tmp_path / "a.jsonl", root=root, seed=3, workers=2, options=opts)
        b = build_jsonl(name, tmp_path / "b.jsonl", root=root, seed=3, options=opts)
        assert a["samples"] == b["samples"] > 0
        assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
        n = 0
        for split in ("train", "val"):
            n += build_jsonl(
                name, tmp_path / "s.jsonl", root=root, split=split, options={"split_ratio": 0.5}
            )["samples"]
        assert n == a["samples"]
