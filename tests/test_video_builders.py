"""Video builders on tiny fixtures in each dataset's native layout (tests/support/video.py)."""

import pytest
from support import video as V

from data_builders import build_jsonl
from text4seg.data.jsonl import read_jsonl
from text4seg.data.rle import rle_to_mask
from text4seg.descriptors import grid_to_mask, mask_to_grid
from text4seg.descriptors.video import decode_frames


def build(tmp_path, name, writer, split, **opts):
    root = writer(tmp_path / name, split)
    out = tmp_path / f"{name}.jsonl"
    report = build_jsonl(name, out, root=root, split=split, grid=8, with_gt=True, options=opts)
    return report, list(read_jsonl(out))


def answer_masks(row, form="frames"):
    meta = row["text4seg"]
    n = len(row["images"])
    dec = decode_frames(row["messages"][1]["content"], n, meta["grid"], meta["scheme"], form)
    assert dec.repairs == []
    return [grid_to_mask(g, meta["height"], meta["width"]) for g in dec.grids]


@pytest.mark.parametrize(
    "name,writer,split",
    [
        ("refytvos", V.write_refytvos, "train"),
        ("mevis", V.write_mevis, "train"),
        ("revos", V.write_revos, "valid"),
    ],
)
def test_one_sample_per_expression_with_t_frames_and_per_frame_ground_truth(tmp_path, name, writer, split):
    report, rows = build(tmp_path, name, writer, split, frames=3)
    assert report["samples"] == len(rows) >= 2
    row = rows[0]
    assert [p.rsplit("/", 1)[1] for p in row["images"]] == ["00000.jpg", "00002.jpg", "00005.jpg"]
    assert row["messages"][0]["content"].count("<image>") == 3
    gt = [rle_to_mask(m) for m in row["text4seg"]["gt"]["masks"]]
    assert (gt[2] == V.target_masks(1)[5]).all()  # expression 0 is the moving square
    # the answer's grid, drawn back at full size, covers the square's centre in each shown frame
    for t, m in zip((0, 2, 5), answer_masks(row)):
        assert m[24, 12 + V.STEP * t]


def test_revos_type_id_makes_reasoning_samples(tmp_path):
    _, rows = build(tmp_path, "revos", V.write_revos, "valid", frames=2)
    tasks = {r["text4seg"]["source"]["ref_id"]: r["text4seg"]["task"] for r in rows}
    assert tasks == {"0": "vres", "1": "vres", "2": "vreason"}


def test_davis_semi_supervised_query_carries_the_first_frame_grid(tmp_path):
    _, rows = build(tmp_path, "davis17", V.write_davis, "val", frames=2)
    assert {r["text4seg"]["source"]["ref_id"] for r in rows} == {"1", "2"}
    q, a = rows[0]["messages"][0]["content"], rows[0]["messages"][1]["content"]
    first_block = a.split("Frame 1: ", 1)[1].split("</seg>", 1)[0] + "</seg>"
    assert first_block in q


def test_delta_form_answer_decodes_to_the_ground_truth_grids(tmp_path):
    _, rows = build(tmp_path, "mevis", V.write_mevis, "train", frames=4, sampling="keyframe", form="delta")
    row = rows[0]
    dec = decode_frames(row["messages"][1]["content"], 4, 8, "rrle", "delta")
    gt = [
        mask_to_grid(rle_to_mask(m), 8, labels=row["text4seg"]["labels"][0])
        for m in row["text4seg"]["gt"]["masks"]
    ]
    assert dec.repairs == [] and (dec.grids == gt).all()


def test_split_without_masks_gives_query_rows(tmp_path):
    _, rows = build(tmp_path, "refytvos", V.write_refytvos, "valid", frames=2)
    assert rows and rows[0]["messages"][1]["content"] == "" and rows[0]["text4seg"]["gt"]["masks"] == []


def test_missing_mask_dict_entry_is_named(tmp_path):
    root = V.write_mevis(tmp_path / "m", "train")
    (root / "train" / "mask_dict.json").write_text("{}")
    with pytest.raises(ValueError, match="anno_id 101"):
        build_jsonl("mevis", tmp_path / "o.jsonl", root=root, split="train")
