"""``--templates official``: the referring builders write the released Text4Seg models' questions and answers
verbatim (golden bytes for a fixed seed); builders whose official strings are not established refuse it."""

from __future__ import annotations

import json

import pytest
from support.fakes import make_refer
from support.hostile import cli, one_line_error

from text4seg.checkpoints import official
from text4seg.data.jsonl import read_jsonl

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def refer_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("refer")
    make_refer(root, "refcoco", "unc", n_images=2, refs_per_image=2, splits=("train", "val"))
    return root


def _rows(root, tmp_path, *extra) -> dict:
    out = tmp_path / "val.jsonl"
    args = ["build", "refcoco", "--root", root, "--split", "val", "--out", out, "--quiet", *extra]
    proc = cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {r["text4seg"]["id"]: r for r in read_jsonl(out)}


def test_refcoco_official_templates_golden_question_and_answer_bytes(refer_root, tmp_path):
    rows = _rows(refer_root, tmp_path, "--templates", "official", "--seed", "0")
    row = rows["refcoco/val/2/4"]
    q, a = row["messages"][0]["content"], row["messages"][1]["content"]
    assert q == "<image>Where is 'near dog shirt' in this image? Please output segmentation mask."
    assert a.split("\n<seg>")[0] == "Here is the segmentation mask highlighting the near dog shirt:"
    row = rows["refcoco/val/3/6"]
    assert row["messages"][0]["content"] == "<image>Can you segment the man small dog in the image?"
    assert row["messages"][1]["content"].startswith(
        "Certainly, here is the segmentation mask for 'man small dog':\n<seg>"
    )


def test_official_templates_change_only_the_sentences(refer_root, tmp_path):
    ours = _rows(refer_root, tmp_path)
    off = _rows(refer_root, tmp_path, "--templates", "official")
    questions = {t.split("[class_name]")[0] for t in official.questions("referring")}
    assert ours.keys() == off.keys()
    for sid, row in off.items():
        q = row["messages"][0]["content"].removeprefix("<image>")
        assert any(q.startswith(p) for p in questions), q
        # descriptors, labels, masks and sources are the same bytes as with our templates
        assert (
            row["messages"][1]["content"].split("\n", 1)[1]
            == ours[sid]["messages"][1]["content"].split("\n", 1)[1]
        )
        assert json.dumps(row["text4seg"]) == json.dumps(ours[sid]["text4seg"])


def test_semantic_builder_refuses_official_templates_in_one_line_saying_why(tmp_path):
    proc = cli(["build", "ade20k", "--root", tmp_path, "--split", "validation", "--out", tmp_path / "a.jsonl",
                "--templates", "official"], tmp_path)  # fmt: skip
    one_line_error(proc, 2, "--templates official", "not public", "cls_ade20k_ori.txt")
    assert not (tmp_path / "a.jsonl").exists()


def test_grefcoco_multi_refuses_official_templates_in_one_line(tmp_path):
    from support.fakes import make_grefcoco

    make_grefcoco(tmp_path, n_images=2, splits=("val",))
    out = tmp_path / "m.jsonl"
    args = ["build", "grefcoco-multi", "--root", tmp_path, "--split", "val", "--out", out]
    proc = cli([*args, "--templates", "official"], tmp_path)
    one_line_error(proc, 2, "grefcoco-multi", "--templates official", "several expressions")
