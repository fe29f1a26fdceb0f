"""REFER family and gRefCOCO builders on generated fixtures in their native layout; the safe unpickler."""

from __future__ import annotations

import json
import os
import pickle
import random

import numpy as np
import pytest
from support.cocoref import target_mask
from support.fakes import make_grefcoco, make_refer, random_polygon

from data_builders import build_jsonl
from data_builders.coco import rle_counts, rle_of_segmentations, sample_rle
from data_builders.safe_pickle import UnsafePickleError, safe_load, safe_loads
from text4seg import decode, mask_to_grid
from text4seg.cli import main
from text4seg.data.jsonl import read_jsonl
from text4seg.data.rle import rle_to_mask as mask_of_rle

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
pytest.importorskip("pycocotools")


def _check_rows_against_instances(rows, inst_path, refs, grid=16):
    inst = json.loads(inst_path.read_text())
    anns = {a["id"]: a for a in inst["annotations"]}
    images = {im["id"]: im for im in inst["images"]}
    by_ref = {str(r["ref_id"]): r for r in refs}
    for row in rows:
        meta = row["text4seg"]
        ref = by_ref[meta["source"]["ref_id"]]
        im = images[ref["image_id"]]
        assert (meta["width"], meta["height"]) == (im["width"], im["height"])
        assert row["images"][0].endswith(im["file_name"]) and os.path.isabs(row["images"][0])
        ids = [int(a) for a in meta["source"]["ann_ids"]]
        full = target_mask([anns[a] for a in ids], im["height"], im["width"])
        assert (mask_of_rle(meta["gt"]["masks"][0]) == full).all()
        got = decode(row["messages"][1]["content"], grid, strict=True).grid
        assert ((got != "others") == (mask_to_grid(full, grid) != "others")).all()
        assert set(got.ravel()) <= {"others", meta["labels"][0]}


@pytest.mark.parametrize(
    "name,split_by", [("refcoco", "unc"), ("refcoco+", "unc"), ("refcocog", "umd"), ("refclef", "berkeley")]
)
def test_refer_builders_make_one_sample_per_sentence_matching_pycocotools(tmp_path, name, split_by):
    make_refer(tmp_path, name, split_by, n_images=6, refs_per_image=2, sents_per_ref=2)
    refs = pickle.loads((tmp_path / name / f"refs({split_by}).p").read_bytes())  # our own fixture
    out = tmp_path / "o.jsonl"
    report = build_jsonl(name, out, root=tmp_path, split="val", options={"split_by": split_by}, stats=False)
    rows = list(read_jsonl(out))
    want = sum(len(r["sentences"]) for r in refs if r["split"] == "val")
    assert report["samples"] == len(rows) == want > 0
    assert len({r["text4seg"]["id"] for r in rows}) == want
    _check_rows_against_instances(rows, tmp_path / name / "instances.json", refs)


def test_grefcoco_unions_targets_and_gives_empty_grid_without_target(tmp_path):
    make_grefcoco(tmp_path, n_images=3)
    refs = json.loads((tmp_path / "grefcoco" / "grefs(unc).json").read_text())
    rows = []
    for split in ("train", "val", "testA"):
        build_jsonl(
            "grefcoco",
            tmp_path / f"{split}.jsonl",
            root=tmp_path,
            split=split,
            with_gt=True,
            stats=False,
            options={"keep_crowd": "1"},
        )
        rows += list(read_jsonl(tmp_path / f"{split}.jsonl"))
    assert len(rows) == len(refs)
    empty = [r for r in rows if not r["text4seg"]["source"]["ann_ids"]]
    multi = [r for r in rows if len(r["text4seg"]["source"]["ann_ids"]) > 1]
    assert empty and multi
    for r in empty:
        assert decode(r["messages"][1]["content"], 16, strict=True).is_empty
        assert not mask_of_rle(r["text4seg"]["gt"]["masks"][0]).any()
    _check_rows_against_instances(
        [r for r in rows if r not in empty], tmp_path / "grefcoco" / "instances.json", refs
    )


def test_grid_sampling_from_rle_equals_full_resolution_decode_on_random_polygons():
    from pycocotools import mask as mu

    rng = random.Random(1)
    diff = total = 0
    for _ in range(200):
        h, w = rng.randint(20, 700), rng.randint(20, 700)
        segs = [[random_polygon(rng, h, w, 3, 40) for _ in range(rng.randint(1, 3))]]
        rle = rle_of_segmentations(segs, h, w)
        full = mu.decode(rle).astype(bool)
        assert rle_counts(rle["counts"]).sum() == h * w
        for size in (16, (24, 32)):
            diff += int(
                (
                    sample_rle(rle, *mask_to_grid(full, size).shape) != (mask_to_grid(full, size) != "others")
                ).sum()
            )
            total += mask_to_grid(full, size).size
    assert total > 0 and diff == 0


def test_same_inputs_give_identical_bytes_also_with_workers(tmp_path):
    make_refer(tmp_path, "refcoco", n_images=9, splits=("train",))
    a = build_jsonl("refcoco", tmp_path / "a.jsonl", root=tmp_path, stats=False)
    b = build_jsonl("refcoco", tmp_path / "b.jsonl", root=tmp_path, stats=False, workers=2)
    assert a["samples"] == b["samples"] == 36
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_repeat_doubles_samples_and_train_has_no_gt_by_default(tmp_path):
    make_refer(tmp_path, "refcoco", n_images=3, splits=("train",))
    rep = build_jsonl("refcoco", tmp_path / "r.jsonl", root=tmp_path, repeat=2, stats=False)
    rows = list(read_jsonl(tmp_path / "r.jsonl"))
    assert rep["samples"] == 24 and len({r["text4seg"]["id"] for r in rows}) == 24
    assert all(r["text4seg"]["gt"]["masks"] == [] for r in rows)


def test_multi_round_groups_expressions_of_one_image(tmp_path):
    make_refer(tmp_path, "refcoco", n_images=2, refs_per_image=2, sents_per_ref=2, splits=("val",))
    build_jsonl(
        "refcoco", tmp_path / "m.jsonl", root=tmp_path, split="val", options={"turns": 4}, stats=False
    )
    rows = list(read_jsonl(tmp_path / "m.jsonl"))
    assert len(rows) == 2
    for r in rows:
        assert len(r["messages"]) == 8 and len(r["text4seg"]["gt"]["masks"]) == 4
        assert (
            r["messages"][0]["content"].startswith("<image>") and "<image>" not in r["messages"][2]["content"]
        )


def test_unknown_split_error_lists_the_splits_in_the_file(tmp_path):
    make_refer(tmp_path, "refcoco", n_images=3)
    with pytest.raises(ValueError, match=r"unknown split 'testC'.*\['testA', 'train', 'val', 'test'\]"):
        build_jsonl("refcoco", tmp_path / "x.jsonl", root=tmp_path, split="testC")


def test_missing_image_names_the_file_and_skip_bad_counts_it(tmp_path, capsys):
    make_refer(tmp_path, "refcoco", n_images=3, splits=("val",))
    victim = tmp_path / "images/mscoco/images/train2014/COCO_train2014_000000000101.jpg"
    victim.unlink()
    out = tmp_path / "x.jsonl"
    assert main(["build", "refcoco", "--root", str(tmp_path), "--split", "val", "--out", str(out)]) == 2
    assert str(victim) in capsys.readouterr().err and not out.exists()
    rep = build_jsonl("refcoco", out, root=tmp_path, split="val", skip_bad=True, stats=False)
    assert rep["skipped_bad"] == 2 and rep["samples"] == 8 and str(victim) in rep["bad_examples"][0]


def test_corrupt_instances_json_error_names_the_file(tmp_path):
    make_refer(tmp_path, "refcoco", n_images=2)
    (tmp_path / "refcoco" / "instances.json").write_text('{"images": [')
    with pytest.raises(ValueError, match="instances.json"):
        build_jsonl("refcoco", tmp_path / "x.jsonl", root=tmp_path, split="val")


def test_image_path_escaping_the_root_is_refused(tmp_path):
    make_refer(tmp_path, "refcoco", n_images=3, splits=("val",))
    p = tmp_path / "refcoco" / "instances.json"
    inst = json.loads(p.read_text())
    inst["images"][0]["file_name"] = "../../../../etc/passwd"
    p.write_text(json.dumps(inst))
    with pytest.raises(ValueError, match="escapes the dataset root"):
        build_jsonl("refcoco", tmp_path / "x.jsonl", root=tmp_path, split="val")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_malicious_pickle_is_refused_with_one_line_and_nothing_runs(tmp_path, capsys, monkeypatch):
    make_refer(tmp_path, "refcoco", n_images=2)
    (tmp_path / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps([{"ref_id": 1}, _Evil()], protocol=2))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafePickleError, match=r"refs\(unc\)\.p.*(posix|os)\.system"):
        safe_load(tmp_path / "refcoco" / "refs(unc).p")
    rc = main(
        ["build", "refcoco", "--root", str(tmp_path), "--split", "val", "--out", str(tmp_path / "x.jsonl")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "refusing to load" in err
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_safe_unpickler_rebuilds_plain_data_and_python2_strings():
    data = {"a": [1, 2.5, None, True], "b": ("x", 2**70), "c": {"é": -3}, "d": {1, 2}}
    for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
        plain = data if proto >= 4 else {k: v for k, v in data.items() if k != "d"}  # old sets call set()
        assert safe_loads(pickle.dumps(plain, protocol=proto)) == plain
    assert safe_loads(pickle.dumps(b"raw", protocol=3)) == b"raw"
    py2 = b"(dp0\nS'sent'\np1\nS'caf\\xc3\\xa9'\np2\ns."  # protocol-0 Python 2 str holding UTF-8
    assert safe_loads(py2) == {"sent": "café"}
    with pytest.raises(ValueError, match="corrupt pickle"):
        safe_loads(pickle.dumps(data)[:-5])


def test_segmentations_accept_polygons_uncompressed_and_compressed_rle_and_bad_ones_name_the_source():
    from pycocotools import mask as mu

    from data_builders.base import BadInput
    from text4seg.data.rle import mask_to_rle as rle_of_mask
    from text4seg.data.rle import rle_to_json

    m = np.zeros((30, 40), bool)
    m[3:20, 5:9] = True
    compressed = rle_of_mask(m)  # counts as str, as in our JSONL
    assert (mu.decode(rle_of_segmentations([compressed], 30, 40)).astype(bool) == m).all()
    poly = [[5, 3, 9, 3, 9, 20, 5, 20]]
    union = rle_of_segmentations([compressed, poly], 30, 40)
    assert mu.decode(union).astype(bool)[m].all()
    assert rle_to_json(rle_of_segmentations([], 30, 40))["size"] == [30, 40]
    assert not mu.decode(rle_of_segmentations([], 30, 40)).any()
    with pytest.raises(BadInput, match="bad segmentation of ref 7"):
        rle_of_segmentations([{"size": [30, 40]}], 30, 40, where="of ref 7")


def test_malformed_ref_record_is_a_one_line_error_or_skipped(tmp_path, capsys):
    make_refer(tmp_path, "refcoco", n_images=3, splits=("val",))
    p = tmp_path / "refcoco" / "refs(unc).p"
    refs = pickle.loads(p.read_bytes())
    del refs[0]["image_id"]
    p.write_bytes(pickle.dumps(refs, protocol=2))
    out = tmp_path / "x.jsonl"
    assert main(["build", "refcoco", "--root", str(tmp_path), "--split", "val", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "malformed annotation" in err and "image_id" in err
    rep = build_jsonl("refcoco", out, root=tmp_path, split="val", skip_bad=True, stats=False)
    assert rep["skipped_bad"] == 1 and rep["samples"] == 10
