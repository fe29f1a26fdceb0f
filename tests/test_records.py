"""The neutral sample record, its ms-swift row and atomic JSONL files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from text4seg.data.jsonl import read_jsonl
from text4seg.data.records import Sample, to_swift_row, write_jsonl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _sample(i: int, turns: int = 1, masks: bool = True) -> Sample:
    from text4seg.data.rle import mask_to_rle as rle_of_mask

    m = np.zeros((6, 8), bool)
    m[1 : 1 + i, 2:5] = True
    return Sample(
        id=f"s{i}",
        image=f"/data/img{i}.png",
        width=8,
        height=6,
        turns=[(f"q{t}", f"a{t}\n<seg>x</seg>") for t in range(turns)],
        task="res" if i else "gres",
        labels=["dog"] if i else [],
        source={"dataset": "d", "split": "val", "image_id": 7, "ann_ids": [1, 2]},
        masks=[rle_of_mask(m)] * turns if masks else [],
    )


def test_row_has_swift_messages_image_tag_first_turn_only():
    row = to_swift_row(_sample(1, turns=2))
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert row["messages"][0]["content"] == "<image>q0"
    assert row["messages"][2]["content"] == "q1"
    assert row["images"] == ["/data/img1.png"]


def test_row_extra_key_has_fixed_schema_with_strings_for_ids():
    a, b = to_swift_row(_sample(1)), to_swift_row(_sample(0, masks=False))

    def shape(x):
        if isinstance(x, dict):
            return {k: shape(v) for k, v in x.items()}
        return type(x).__name__

    assert shape(a["text4seg"])["source"] == shape(b["text4seg"])["source"]
    assert list(a["text4seg"]) == list(b["text4seg"])
    assert list(a["text4seg"]["gt"]) == list(b["text4seg"]["gt"])
    assert a["text4seg"]["source"]["image_id"] == "7"
    assert a["text4seg"]["source"]["ann_ids"] == ["1", "2"]
    assert b["text4seg"]["source"]["ref_id"] == ""


def test_rle_roundtrips_through_the_row():
    from text4seg.data.rle import mask_to_rle as rle_of_mask
    from text4seg.data.rle import rle_to_mask as mask_of_rle

    m = np.random.default_rng(0).random((9, 13)) > 0.5
    row = json.loads(json.dumps(to_swift_row(_sample(1)) | {}))
    assert isinstance(row["text4seg"]["gt"]["masks"][0]["counts"], str)
    assert (mask_of_rle(rle_of_mask(m)) == m).all()


def test_write_then_read_roundtrips_and_leaves_no_temp_file(tmp_path):
    out = tmp_path / "x.jsonl"
    n = write_jsonl([_sample(1), _sample(2)], out)
    assert n == 2
    rows = list(read_jsonl(out))
    assert [r["text4seg"]["id"] for r in rows] == ["s1", "s2"]
    assert os.listdir(tmp_path) == ["x.jsonl"]


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path):
    out = tmp_path / "x.jsonl"
    write_jsonl([_sample(1)], out)
    before = out.read_bytes()

    def rows():
        yield _sample(2)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(rows(), out)
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["x.jsonl"]


def test_read_jsonl_names_file_and_line_of_bad_json(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        list(read_jsonl(p))


def test_unknown_task_is_refused_listing_valid_ones():
    s = _sample(1)
    s.task = "dance"
    with pytest.raises(ValueError, match="dance.*res"):
        to_swift_row(s)


def test_hf_datasets_loads_mixed_rows_without_schema_errors(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "x.jsonl"
    write_jsonl([_sample(0), _sample(1), _sample(2, turns=2), _sample(3, masks=False)], out)
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert len(ds) == 4
    assert ds[0]["text4seg"]["labels"] == []
    assert len(ds[2]["messages"]) == 4


def test_files_with_all_empty_lists_load_together_with_hf_features(tmp_path):
    datasets = pytest.importorskip("datasets")
    from text4seg.data.records import hf_features

    write_jsonl([_sample(0, masks=False)], tmp_path / "a.jsonl")  # every list empty: nulls if inferred
    write_jsonl([_sample(1), _sample(2, turns=2)], tmp_path / "b.jsonl")
    files = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    ds = datasets.load_dataset("json", data_files=files, split="train", features=hf_features())
    assert len(ds) == 3 and ds[1]["text4seg"]["gt"]["masks"][0]["size"] == [6, 8]
