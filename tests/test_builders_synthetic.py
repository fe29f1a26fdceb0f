"""The synthetic shapes builder, the build driver and the ``text4seg build``/``stats`` commands."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from data_builders import BUILDERS, build_jsonl
from text4seg import decode, mask_to_grid
from text4seg.cli import main
from text4seg.data.jsonl import read_jsonl
from text4seg.data.rle import rle_to_mask as mask_of_rle

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _build(tmp_path, name="s.jsonl", **kw):
    kw.setdefault("split", "val")
    kw.setdefault("limit", 40)
    kw.setdefault("stats", False)
    out = tmp_path / name
    report = build_jsonl("synthetic", out, **kw)
    return out, report, list(read_jsonl(out))


def test_same_seed_gives_byte_identical_jsonl_and_other_seed_differs(tmp_path):
    a, _, _ = _build(tmp_path, "a.jsonl", root=tmp_path / "img")
    b, _, _ = _build(tmp_path, "b.jsonl", root=tmp_path / "img")
    c, _, _ = _build(tmp_path, "c.jsonl", root=tmp_path / "img", seed=1)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_every_answer_decodes_strictly_to_the_grid_of_its_gt_mask(tmp_path):
    _, report, rows = _build(tmp_path, options={"turns": 2})
    assert report["samples"] == len(rows) == 40
    for row in rows:
        meta = row["text4seg"]
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        assert len(answers) == len(meta["gt"]["masks"])
        for ans, rle in zip(answers, meta["gt"]["masks"]):
            grid = decode(ans, 16, strict=True).grid
            mask = mask_of_rle(rle)
            assert mask.shape == (meta["height"], meta["width"])
            assert ((grid != "others") == (mask_to_grid(mask, 16) != "others")).all()


def test_absent_targets_give_all_others_grid_and_empty_mask(tmp_path):
    _, _, rows = _build(tmp_path, options={"absent_rate": 1.0, "multi_rate": 0.0, "semantic_rate": 0.0})
    for row in rows:
        assert row["text4seg"]["task"] == "gres"
        assert decode(row["messages"][1]["content"], 16).is_empty
        assert not mask_of_rle(row["text4seg"]["gt"]["masks"][0]).any()
        assert row["text4seg"]["gt"]["boxes"] == []


def test_multi_target_masks_are_unions_with_one_box_per_target(tmp_path):
    _, _, rows = _build(tmp_path, options={"absent_rate": 0.0, "multi_rate": 1.0, "semantic_rate": 0.0})
    assert any(len(r["text4seg"]["gt"]["boxes"]) > 1 for r in rows)
    for row in rows:
        mask = mask_of_rle(row["text4seg"]["gt"]["masks"][0])
        for x, y, w, h in row["text4seg"]["gt"]["boxes"]:
            assert mask[int(y) : int(y + h), int(x) : int(x + w)].any()


def test_semantic_rows_store_label_map_and_classes_matching_the_answer(tmp_path):
    from PIL import Image

    _, _, rows = _build(tmp_path, options={"semantic_rate": 1.0, "absent_rate": 0.0, "multi_rate": 0.0})
    for row in rows:
        gt = row["text4seg"]["gt"]
        assert row["text4seg"]["task"] == "semantic" and gt["classes"][0] == "others"
        lm = np.asarray(Image.open(gt["label_map"]))
        labels = set(decode(row["messages"][1]["content"], 16).labels)
        assert labels <= set(gt["classes"][1:]) and labels == set(row["text4seg"]["labels"])
        assert set(np.unique(lm).tolist()) <= set(range(len(gt["classes"])))


def test_image_size_and_shape_count_options_are_honoured(tmp_path):
    from PIL import Image

    _, _, rows = _build(tmp_path, limit=8, options={"image_size": "40x24", "min_shapes": 3, "max_shapes": 3})
    for row in rows:
        assert Image.open(row["images"][0]).size == (40, 24)
        assert (row["text4seg"]["width"], row["text4seg"]["height"]) == (40, 24)


def test_splits_use_disjoint_seeds(tmp_path):
    from PIL import Image

    _, _, tr = _build(tmp_path, "t.jsonl", split="train", limit=10)
    _, _, va = _build(tmp_path, "v.jsonl", split="val", limit=10)
    pix_tr = {np.asarray(Image.open(r["images"][0])).tobytes() for r in tr}
    pix_va = {np.asarray(Image.open(r["images"][0])).tobytes() for r in va}
    assert not pix_tr & pix_va
    assert tr[0]["text4seg"]["gt"]["masks"] == []  # train: no GT by default
    assert va[0]["text4seg"]["gt"]["masks"] != []


def test_bad_option_error_lists_the_allowed_values(tmp_path):
    with pytest.raises(ValueError, match="unknown colour 'teal'.*red"):
        _build(tmp_path, options={"colors": "red,teal"})


def test_shards_partition_the_samples_and_workers_keep_bytes(tmp_path):
    kw = {"limit": None, "root": tmp_path / "img", "options": {"num_images": 12}}
    full, _, rows = _build(tmp_path, "f.jsonl", **kw)
    _, _, s0 = _build(tmp_path, "s0.jsonl", shard="0/2", **kw)
    _, _, s1 = _build(tmp_path, "s1.jsonl", shard="1/2", **kw)
    ids = sorted(r["text4seg"]["id"] for r in rows)
    assert sorted(r["text4seg"]["id"] for r in s0 + s1) == ids and s0 and s1
    par, _, _ = _build(tmp_path, "p.jsonl", workers=2, **kw)
    assert par.read_bytes() == full.read_bytes()


def test_repeat_doubles_samples_with_unique_ids(tmp_path):
    _, report, rows = _build(tmp_path, limit=None, repeat=2, options={"num_images": 5})
    assert report["samples"] == 10
    assert len({r["text4seg"]["id"] for r in rows}) == 10


def test_cli_build_list_and_stats_run_in_process(tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    assert (
        main(["build", "synthetic", "--out", str(out), "--split", "train", "--limit", "5", "--no-stats"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 5 and len(out.read_text().splitlines()) == 5
    assert (tmp_path / "c_images").is_dir()
    assert main(["build", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in listed] == list(BUILDERS)
    assert main(["stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["answers"] == 5 and stats["tokens"]["max"] >= stats["tokens"]["p50"] > 0


def test_cli_unknown_builder_and_split_print_one_line_listing_valid_ones(tmp_path, capsys):
    assert main(["build", "nope", "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and "synthetic" in err and len(err.strip().splitlines()) == 1
    assert main(["build", "synthetic", "--split", "dev", "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "unknown split 'dev'" in err and "'val'" in err
    assert not (tmp_path / "x.jsonl").exists()
