"""ReasonSeg (LISA layout) and local Hugging Face dataset builders on generated fixtures."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from support.fakes import make_hf, make_reasonseg  # noqa: E402

from data_builders import build_jsonl  # noqa: E402
from text4seg import decode, mask_to_grid  # noqa: E402
from text4seg.data.jsonl import read_jsonl  # noqa: E402
from text4seg.data.rle import rle_to_mask as mask_of_rle  # noqa: E402

pytest.importorskip("pycocotools")


def _target_mask(js, h, w):
    from pycocotools import mask as mu

    anno = json.loads(js.read_text())
    polys = [[c for p in s["points"] for c in p] for s in anno["shapes"] if s["label"] == "target"]
    if not polys:
        return np.zeros((h, w), bool)
    return mu.decode(mu.merge(mu.frPyObjects(polys, h, w))).astype(bool)


def test_reasonseg_one_sample_per_text_with_union_of_target_polygons_only(tmp_path):
    make_reasonseg(tmp_path, n_images=3)
    out = tmp_path / "r.jsonl"
    report = build_jsonl("reasonseg", out, root=tmp_path, split="val", stats=False)
    rows = list(read_jsonl(out))
    assert report["samples"] == len(rows) == 6
    d = tmp_path / "ReasonSeg" / "val"
    for row in rows:
        meta = row["text4seg"]
        js = d / f"{meta['source']['image_id']}.json"
        want = _target_mask(js, meta["height"], meta["width"])
        assert (mask_of_rle(meta["gt"]["masks"][0]) == want).all()
        got = decode(row["messages"][1]["content"], 16, strict=True).grid
        assert ((got != "others") == (mask_to_grid(want, 16) != "others")).all()
        anno = json.loads(js.read_text())
        if anno["is_sentence"]:
            assert set(got.ravel()) <= {"others", "target"}
        assert meta["task"] == "reason"
    assert any(decode(r["messages"][1]["content"], 16).is_empty for r in rows)


def test_reasonseg_bad_json_names_the_file(tmp_path):
    make_reasonseg(tmp_path, n_images=2)
    bad = tmp_path / "ReasonSeg" / "val" / "img_001.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="img_001.json"):
        build_jsonl("reasonseg", tmp_path / "x.jsonl", root=tmp_path, split="val")
    rep = build_jsonl(
        "reasonseg", tmp_path / "x.jsonl", root=tmp_path, split="val", skip_bad=True, stats=False
    )
    assert rep["skipped_bad"] == 1 and rep["samples"] == 2


def test_reasonseg_unknown_split_lists_folders(tmp_path):
    make_reasonseg(tmp_path, n_images=1)
    with pytest.raises(ValueError, match=r"unknown split 'train'.*\['val'\]"):
        build_jsonl("reasonseg", tmp_path / "x.jsonl", root=tmp_path, split="train")


@pytest.mark.parametrize("schema", ["refer", "mask"])
@pytest.mark.parametrize("fmt", ["disk", "parquet"])
def test_hf_builders_write_embedded_images_and_exact_masks(tmp_path, schema, fmt):
    from PIL import Image

    root = tmp_path / "ds"
    plain = make_hf(root, schema, fmt, n_rows=3)
    out = tmp_path / "o.jsonl"
    report = build_jsonl(f"hf-{schema}", out, root=root, split="val", stats=False)
    rows = list(read_jsonl(out))
    val = plain[3:]
    per_row = 2 if schema == "refer" else 1
    assert report["samples"] == len(rows) == 3 * per_row
    for row in rows:
        k = int(row["text4seg"]["id"].split("/")[2])
        want = val[k]["_mask"]
        assert Image.open(row["images"][0]).size == (want.shape[1], want.shape[0])
        assert (mask_of_rle(row["text4seg"]["gt"]["masks"][0]) == want).all()
        got = decode(row["messages"][1]["content"], 16, strict=True).grid
        assert ((got != "others") == (mask_to_grid(want, 16) != "others")).all()


def test_hf_missing_column_error_lists_the_columns(tmp_path):
    make_hf(tmp_path / "ds", "mask", "disk", n_rows=1)
    with pytest.raises(ValueError, match=r"columns \['caption'\] not found.*'text'"):
        build_jsonl(
            "hf-mask",
            tmp_path / "x.jsonl",
            root=tmp_path / "ds",
            split="val",
            options={"text_col": "caption"},
        )


def test_hf_unknown_split_lists_the_splits(tmp_path):
    make_hf(tmp_path / "ds", "refer", "parquet", n_rows=1)
    with pytest.raises(ValueError, match=r"unknown split 'test'.*\['train', 'val'\]"):
        build_jsonl("hf-refer", tmp_path / "x.jsonl", root=tmp_path / "ds", split="test")


def test_reasonseg_target_lost_on_the_grid_is_counted_and_dropped_on_request(tmp_path):
    names = make_reasonseg(tmp_path, n_images=3)
    js = tmp_path / "ReasonSeg" / "val" / f"{names[1]}.json"
    anno = json.loads(js.read_text())
    anno["shapes"] = [
        {"label": "target", "points": [[0, 0], [2, 0], [2, 2], [0, 2]], "shape_type": "polygon"}
    ]
    js.write_text(json.dumps(anno))
    kw = dict(root=tmp_path, split="val", stats=False)
    keep = build_jsonl("reasonseg", tmp_path / "k.jsonl", **kw)
    drop = build_jsonl("reasonseg", tmp_path / "d.jsonl", options={"empty_targets": "drop"}, **kw)
    assert keep["targets"]["lost_on_grid"] == drop["targets"]["dropped"] == len(anno["text"]) == 2
    assert keep["samples"] - drop["samples"] == 2 and str(js) in keep["targets"]["examples"][0]
