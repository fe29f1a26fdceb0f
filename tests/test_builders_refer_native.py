"""Section 3 of issue 12: every REFER-family builder on fixtures in the real releases' native layout.

Each dataset's fixture uses the segmentation forms its release uses (refCLEF: polygons mixed with lists of
RLE dicts; refCOCO*: polygons plus crowd annotations as bare RLE with list counts; gRefCOCO: crowd members
in refs) and the real key names and value types. Every written grid and ground-truth mask is compared with
what pycocotools decodes for the same annotations (tests/support/cocoref.py): 0 cells and 0 pixels differ.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from support.cocoref import target_mask
from support.fakes import make_grefcoco, make_refer

from data_builders import build_jsonl
from data_builders.base import BadInput
from data_builders.refer import split_matches
from text4seg import decode, mask_to_grid
from text4seg.cli import main
from text4seg.data.jsonl import read_jsonl
from text4seg.data.rle import rle_to_mask

pytest.importorskip("pycocotools")

SPLITS = ("train", "val", "testA", "testB")
REFER = [
    ("refcoco", "unc"),
    ("refcoco+", "unc"),
    ("refcocog", "umd"),
    ("refclef", "unc"),
    ("refclef", "berkeley"),
]


def _form(seg) -> str:
    if isinstance(seg, dict):
        return "rle_dict_" + ("list_counts" if isinstance(seg["counts"], list) else "string_counts")
    if seg and isinstance(seg[0], dict):
        return "rle_list_" + ("list_counts" if isinstance(seg[0]["counts"], list) else "string_counts")
    return "polygons"


def _fixture(tmp_path, name, split_by):
    if name == "grefcoco":
        make_grefcoco(tmp_path, n_images=8, splits=SPLITS)
        refs = json.loads((tmp_path / name / "grefs(unc).json").read_text())
    else:
        make_refer(tmp_path, name, split_by, n_images=8, refs_per_image=3, splits=SPLITS, degenerate=True)
        refs = pickle.loads((tmp_path / name / f"refs({split_by}).p").read_bytes())
    inst = json.loads((tmp_path / name / "instances.json").read_text())
    return refs, inst


def _reference(ref, anns, im, name):
    """The target as the dataset's authors decode it: REFER = one annotation; gRefCOCO = ReLA (no crowd)."""
    ids = ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]
    targets = [anns[a] for a in ids if a != -1]
    return target_mask(targets, im["height"], im["width"], drop_crowd=name == "grefcoco")


@pytest.mark.parametrize("name,split_by", REFER + [("grefcoco", "unc")])
def test_written_grids_and_masks_equal_pycocotools_decode_on_native_layout(tmp_path, name, split_by):
    refs, inst = _fixture(tmp_path, name, split_by)
    anns = {a["id"]: a for a in inst["annotations"]}
    images = {im["id"]: im for im in inst["images"]}
    forms = {_form(a["segmentation"]) for a in inst["annotations"]}
    if name == "refclef":
        assert {"polygons", "rle_list_string_counts", "rle_list_list_counts"} <= forms
    else:
        assert {"polygons", "rle_dict_list_counts"} <= forms
    by_ref = {str(r["ref_id"]): r for r in refs}
    rows = []
    for split in SPLITS:
        out = tmp_path / f"{split}.jsonl"
        opts = {"split_by": split_by, "empty_targets": "keep"}  # keep every sample, to compare them all
        build_jsonl(name, out, root=tmp_path, split=split, with_gt=True, stats=False, options=opts)
        rows += list(read_jsonl(out))
    assert len(rows) == sum(len(r["sentences"]) for r in refs)
    pixels = cells = diff_px = diff_cells = 0
    for row in rows:
        meta = row["text4seg"]
        ref = by_ref[meta["source"]["ref_id"]]
        im = images[ref["image_id"]]
        want = _reference(ref, anns, im, name)
        got = rle_to_mask(meta["gt"]["masks"][0])
        diff_px += int(np.count_nonzero(got != want))
        pixels += want.size
        grid = decode(row["messages"][1]["content"], 16, strict=True).grid != "others"
        diff_cells += int(np.count_nonzero(grid != (mask_to_grid(want, 16) != "others")))
        cells += grid.size
    assert pixels > 0 and cells > 0
    assert (diff_px, diff_cells) == (0, 0)


def test_refclef_rle_list_annotations_give_their_mask_not_an_empty_target(tmp_path):
    refs, inst = _fixture(tmp_path, "refclef", "unc")
    anns = {a["id"]: a for a in inst["annotations"]}
    degenerate = {r["ref_id"] for r in refs if r["ref_id"] // 3 < len(SPLITS) and r["ref_id"] % 3 < 2}
    rle_refs = {
        str(r["ref_id"])
        for r in refs
        if _form(anns[r["ann_id"]]["segmentation"]).startswith("rle_list") and r["ref_id"] not in degenerate
    }
    out = tmp_path / "val.jsonl"
    rep = build_jsonl("refclef", out, root=tmp_path, split="val", stats=False)
    rows = [r for r in read_jsonl(out) if r["text4seg"]["source"]["ref_id"] in rle_refs]
    assert rows and rep["targets"]["policy"] == "keep"
    assert all(rle_to_mask(r["text4seg"]["gt"]["masks"][0]).any() for r in rows)
    assert all(not decode(r["messages"][1]["content"], 16, strict=True).is_empty for r in rows)
    # the fixture's degenerate refs of val (one empty mask, one 3x3 px corner object), 2 sentences each
    assert rep["targets"] | {"examples": []} == {
        "policy": "keep", "empty_target": 2, "lost_on_grid": 2, "dropped": 0, "examples": []
    }  # fmt: skip


@pytest.mark.parametrize("name", ["refcoco", "refclef"])
def test_training_split_with_empty_targets_fails_with_counts_and_writes_nothing(tmp_path, name, capsys):
    _fixture(tmp_path, name, "unc")
    out = tmp_path / "train.jsonl"
    with pytest.raises(ValueError, match=r"empty_target: 2, lost_on_grid: 2.*--skip-bad"):
        build_jsonl(name, out, root=tmp_path, split="train")
    assert not out.exists()
    args = ["build", name, "--root", str(tmp_path), "--split", "train", "--out", str(out)]
    assert main(args) == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "4 samples of training split 'train'" in err


def test_skip_bad_drops_and_counts_empty_targets_on_training_split(tmp_path):
    refs, _ = _fixture(tmp_path, "refcoco", "unc")
    out = tmp_path / "train.jsonl"
    rep = build_jsonl("refcoco", out, root=tmp_path, split="train", skip_bad=True, stats=False)
    n_train = sum(len(r["sentences"]) for r in refs if r["split"] == "train")
    assert rep["targets"]["dropped"] == 4 == rep["targets"]["empty_target"] + rep["targets"]["lost_on_grid"]
    assert rep["samples"] == n_train - 4 and rep["skipped_bad"] == 0
    assert all(not decode(r["messages"][1]["content"], 16).is_empty for r in read_jsonl(out))
    assert rep["targets"]["examples"][0].startswith("empty_target: ref 0 ")


def test_evaluation_split_keeps_flagged_samples_and_option_can_drop_them(tmp_path):
    refs, _ = _fixture(tmp_path, "refcocog", "umd")
    n_val = sum(len(r["sentences"]) for r in refs if r["split"] == "val")
    keep = build_jsonl("refcocog", tmp_path / "k.jsonl", root=tmp_path, split="val", stats=False,
                       options={"split_by": "umd"})  # fmt: skip
    drop = build_jsonl("refcocog", tmp_path / "d.jsonl", root=tmp_path, split="val", stats=False,
                       options={"split_by": "umd", "empty_targets": "drop"})  # fmt: skip
    assert keep["samples"] == n_val and keep["targets"]["dropped"] == 0
    assert drop["samples"] == n_val - 4 and drop["targets"]["dropped"] == 4
    with pytest.raises(ValueError, match=r"empty_targets='never'.*\['drop', 'keep', 'fail'\]"):
        build_jsonl("refcocog", tmp_path / "x.jsonl", root=tmp_path, split="val",
                    options={"split_by": "umd", "empty_targets": "never"})  # fmt: skip


def test_grefcoco_follows_rela_and_leaves_crowd_out_unless_asked(tmp_path):
    refs, inst = _fixture(tmp_path, "grefcoco", "unc")
    crowd = {a["id"] for a in inst["annotations"] if a["iscrowd"]}
    changed = {r["ref_id"] for r in refs if set(r["ann_id"]) & crowd}
    only_crowd = {r["ref_id"] for r in refs if r["ann_id"] != [-1] and set(r["ann_id"]) <= crowd}
    assert changed and only_crowd  # the fixture has both kinds
    total = {"rela": 0, "kept": 0}
    for split in SPLITS:
        for mode, opts in (("rela", {}), ("kept", {"keep_crowd": "true"})):
            rep = build_jsonl("grefcoco", tmp_path / f"{mode}{split}.jsonl", root=tmp_path, split=split,
                              stats=False, options=opts | {"empty_targets": "keep"})  # fmt: skip
            total[mode] += rep["conventions"]["crowd_removed_refs"]
            assert rep["conventions"]["crowd"].startswith("kept" if mode == "kept" else "left out")
            if mode == "rela":  # a ref whose every target is crowd is left with an empty target, counted
                assert rep["targets"]["empty_target"] == sum(
                    len(r["sentences"]) for r in refs if r["ref_id"] in only_crowd and r["split"] == split
                )
    assert total == {"rela": len(changed), "kept": 0}
    rows = list(read_jsonl(tmp_path / "relatrain.jsonl"))
    for r in rows:
        assert not set(r["text4seg"]["source"]["ann_ids"]) & crowd


def test_test_split_is_the_union_of_the_test_splits_as_in_the_refer_api(tmp_path):
    refs, _ = _fixture(tmp_path, "refcoco", "unc")
    rep = build_jsonl("refcoco", tmp_path / "t.jsonl", root=tmp_path, split="test", stats=False)
    rows = list(read_jsonl(tmp_path / "t.jsonl"))
    want = sum(len(r["sentences"]) for r in refs if r["split"] in ("testA", "testB"))
    assert rep["samples"] == len(rows) == want
    assert {r["text4seg"]["source"]["split"] for r in rows} == {"testA", "testB"}
    assert all(r["text4seg"]["id"].split("/")[1] in ("testA", "testB") for r in rows)
    assert split_matches("testA", "testAB") and split_matches("testB", "testAB")
    assert not split_matches("testA", "testB") and not split_matches("val", "test")
    assert split_matches("test", "test") and not split_matches("train", "val")


@pytest.mark.parametrize(
    "seg,match,cause",
    [
        ("oops", "segmentation of type str", "bad_segmentation"),
        (
            [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], {"size": [1, 1], "counts": "0"}],
            "list of dict/list",
            "bad_segmentation",
        ),
        (
            {"size": [3, 3], "counts": [9]},
            r"RLE size \[3, 3\] differs from the image size",
            "rle_size_mismatch",
        ),
        ([[1.0, 2.0, 3.0]], "not an even-length list of numbers", "bad_polygon"),
        # the one-pass type check keeps refusing what the per-item check refused
        ([[1.0, 2.0, True, 4.0, 5.0, 6.0]], "not an even-length list of numbers", "bad_polygon"),
        ([[1.0, 2.0, "3.0", 4.0, 5.0, 6.0]], "not an even-length list of numbers", "bad_polygon"),
        ([[1, 2, None, 4, 5, 6]], "not an even-length list of numbers", "bad_polygon"),
        ({"size": [512, 512], "counts": [3000, True, 259143]}, "not non-negative ints", "rle_bad_counts"),
        ({"size": [512, 512], "counts": [3000, -1, 259145]}, "not non-negative ints", "rle_bad_counts"),
        ({"size": [512, 512], "counts": [3000, 2.0, 259142]}, "not non-negative ints", "rle_bad_counts"),
        ({"counts": [1]}, "RLE dict without 'size' and 'counts'", "bad_segmentation"),
        # compressed counts cut inside a value (the last character carries the continuation bit)
        ({"size": [512, 512], "counts": "PPP"}, "end inside a value", "bad_segmentation"),
        ({"size": [512, 512], "counts": "0P"}, "end inside a value", "bad_segmentation"),
        ([[1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]], "NaN or infinite", "polygon_not_finite"),
        ([[1.0, 2.0, 1e12, 4.0, 5.0, 6.0]], "far outside", "polygon_out_of_range"),
    ],
)
def test_unknown_segmentation_form_is_a_bad_annotation_named_with_file_and_id(tmp_path, seg, match, cause):
    make_refer(tmp_path, "refclef", n_images=3, splits=("val",))
    p = tmp_path / "refclef" / "instances.json"
    inst = json.loads(p.read_text())
    inst["annotations"][0]["segmentation"] = seg
    p.write_text(json.dumps(inst))
    out = tmp_path / "x.jsonl"
    if cause == "polygon_not_finite":  # json writes NaN, which is not JSON: the whole file is refused
        for skip in (False, True):
            with pytest.raises(ValueError, match=r"instances.json: NaN is not JSON"):
                build_jsonl("refclef", out, root=tmp_path, split="val", skip_bad=skip, stats=False)
        return
    with pytest.raises(
        BadInput, match=rf"bad segmentation of annotation 1000 in .*instances.json: .*{match}"
    ):
        build_jsonl("refclef", out, root=tmp_path, split="val")
    rep = build_jsonl("refclef", out, root=tmp_path, split="val", skip_bad=True, stats=False)
    assert rep["skipped_bad"] == 1 and rep["bad_causes"] == {cause: 1}
    assert rep["samples"] == 10


def test_ref_zom_zero_one_and_many_targets_equal_pycocotools_and_score_with_its_metrics(tmp_path):
    """Ref-ZOM's released layout: one-to-one (int ann_id), one-to-many (list: the union) and one-to-zero
    (source "zero": an empty target, never flagged); evaluate adds Ref-ZOM's oIoU / mIoU / Acc."""
    import json
    import pickle

    from support.cocoref import target_mask
    from support.refzom import make_refzom

    from text4seg.data.rle import rle_to_mask
    from text4seg.evaluation.evaluate import evaluate

    counts = make_refzom(tmp_path)
    out = tmp_path / "zom.jsonl"
    report = build_jsonl("ref-zom", out, root=tmp_path, split="test", stats=False)
    rows = list(read_jsonl(out))
    refs = {r["ref_id"]: r for r in pickle.loads((tmp_path / "ref-zom" / "refs(final).p").read_bytes())}
    inst = json.loads((tmp_path / "ref-zom" / "instances.json").read_text())
    anns = {a["id"]: a for a in inst["annotations"]}
    seen = {"one": 0, "many": 0, "zero": 0}
    for row in rows:
        meta = row["text4seg"]
        ref = refs[int(meta["source"]["ref_id"])]
        seen[ref["source"]] += 1
        mask = rle_to_mask(meta["gt"]["masks"][0])
        if ref["source"] == "zero":
            assert not mask.any() and "<seg>" in row["messages"][1]["content"]
        else:
            ids = ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]
            want = target_mask([anns[i] for i in ids], meta["height"], meta["width"])
            assert np.array_equal(mask, want)
    assert all(seen[k] > 0 for k in seen) and report["targets"]["empty_target"] == 0
    assert counts["zero"] >= seen["zero"] // 2
    # answers = the ground-truth grids: Acc 1 on one-to-zero samples, high (grid-bound) oIoU/mIoU
    res = tmp_path / "res.jsonl"
    keys = ("id", "grid", "scheme", "width", "height")
    with open(res, "w") as fh:
        for row in rows:
            rec = {k: row["text4seg"][k] for k in keys}
            rec.update(turn=0, answer=row["messages"][1]["content"])
            fh.write(json.dumps(rec) + "\n")
    zom = evaluate(res, out)["referring"]["coarse"]["refzom"]
    assert zom["n_empty"] == seen["zero"] and zom["n_targeted"] == seen["one"] + seen["many"]
    assert zom["acc"] == 1.0 and zom["oiou"] > 0.5 and zom["miou"] > 0.5
