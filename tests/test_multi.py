"""Several expressions per answer (GSVA): the answer format, the grefcoco-multi builder, the scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.fakes import make_grefcoco, result_of

from data_builders import build_jsonl
from text4seg.data.jsonl import read_jsonl
from text4seg.data.results import ResultRecord
from text4seg.data.rle import mask_to_rle, rle_to_mask
from text4seg.descriptors import BACKGROUND
from text4seg.descriptors.multi import decode_multi, encode_multi, entry_masks
from text4seg.evaluation.evaluate import evaluate
from text4seg.evaluation.multi import refzom_scores, score_multi


def _fg(rows):
    return np.array(rows, bool)


def test_overlapping_targets_of_two_expressions_are_both_kept_whole():
    a = _fg([[1, 1], [0, 0]])
    b = _fg([[1, 0], [1, 0]])  # shares the top-left cell with a
    text = "Here.\n" + encode_multi([("left man", b), ("top row", a), ("dog", None)], "rrle")
    got = decode_multi(text, 3, 2, "rrle")
    assert [e.label for e in got] == ["left man", "top row", "dog"]
    assert (got[0].decoded.grid != BACKGROUND).tolist() == b.tolist()
    assert (got[1].decoded.grid != BACKGROUND).tolist() == a.tolist()
    assert got[2].decoded is None and got[2].rejected and got[2].found
    assert "[3] dog: none" in text


@pytest.mark.parametrize("scheme", ["rrle", "compact", "full"])
def test_every_scheme_round_trips_through_the_numbered_blocks(scheme):
    rng = np.random.default_rng(0)
    fgs = [rng.random((4, 4)) > 0.5 for _ in range(3)] + [np.zeros((4, 4), bool)]
    exprs = ["a cat", "the cat on the left", "[2] tricky", "nothing"]
    got = decode_multi(encode_multi(list(zip(exprs, fgs)), scheme), 4, 4, scheme)
    for e, fg in zip(got, fgs):
        pred = np.zeros((4, 4), bool) if e.decoded is None else e.decoded.grid != BACKGROUND
        assert pred.tolist() == fg.tolist()
    assert all(not e.decoded.repairs for e in got[:3])


def test_missing_repeated_and_out_of_range_markers_decode_leniently():
    block = encode_multi([("cat", _fg([[1, 0], [0, 0]]))], "rrle")
    text = block + "\n[1] cat: none\n[7] bird: none"  # [1] repeated, [7] outside 1..2
    got = decode_multi(text, 2, 2, "rrle")
    assert got[0].found and not got[0].rejected  # the first [1] counts
    assert not got[1].found and got[1].decoded is None
    masks = entry_masks(got, 4, 4)
    assert masks[0][:2, :2].all() and masks[0].sum() == 4 and not masks[1].any()


def test_a_block_cut_off_without_its_closing_tag_is_repaired_and_the_next_line_still_read():
    text = "[1] cat: <seg>cat *2\n cat *2\n[2] dog: none"
    got = decode_multi(text, 2, 2, "rrle")
    assert (got[0].decoded.grid == "cat").all() and got[0].decoded.repairs
    assert got[1].found and got[1].rejected


def _build(tmp_path, k=2, split="val", **kw):
    make_grefcoco(tmp_path, n_images=3)
    out = tmp_path / f"multi_{k}.jsonl"
    report = build_jsonl("grefcoco-multi", out, root=tmp_path, split=split, options={"k": k}, **kw)
    return report, list(read_jsonl(out))


def test_grefcoco_multi_groups_up_to_k_expressions_of_one_image_with_their_own_targets(tmp_path):
    report, rows = _build(tmp_path, k=2)
    single = tmp_path / "single.jsonl"
    build_jsonl("grefcoco", single, root=tmp_path, split="val")
    by_sent = {r["text4seg"]["source"]["sent_ids"][0]: r for r in read_jsonl(single)}
    total = 0
    for row in rows:
        meta = row["text4seg"]
        assert meta["task"] == "multi" and 1 <= len(meta["labels"]) <= 2
        assert len(meta["gt"]["masks"]) == len(meta["labels"]) == len(meta["source"]["sent_ids"])
        entries = decode_multi(row["messages"][1]["content"], len(meta["labels"]), 16)
        for j, sid in enumerate(meta["source"]["sent_ids"]):
            ref_row = by_sent[sid]["text4seg"]
            # the same target mask and the same grid as the one-expression builder gives that sentence
            assert meta["gt"]["masks"][j] == ref_row["gt"]["masks"][0]
            assert meta["labels"][j] == ref_row["labels"][0]
            assert entries[j].rejected == (not rle_to_mask(ref_row["gt"]["masks"][0]).any())
            total += 1
    assert total == len(by_sent) and report["samples"] == len(rows)
    assert any(e for r in rows for e in r["text4seg"]["gt"]["masks"])  # present targets...
    assert any("none" in r["messages"][1]["content"] for r in rows)  # ...and rejections mixed


def test_grefcoco_multi_is_deterministic_and_reshuffles_per_repeat(tmp_path):
    _, a = _build(tmp_path, k=5, repeat=2)
    _, b = _build(tmp_path, k=5, repeat=2)
    assert a == b
    ids = [r["text4seg"]["id"] for r in a]
    assert len(set(ids)) == len(ids)


def test_scores_count_every_expression_and_rejections_hand_case():
    h, w = 2, 2
    gt_a = mask_to_rle(_fg([[1, 1], [0, 0]]))
    gt_none = mask_to_rle(np.zeros((2, 2), bool))
    # expression 1 found at IoU 1/2 (pred covers 4 cells, gt 2), expression 2 wrongly masked (absent)
    ans = encode_multi([("a", np.ones((2, 2), bool)), ("b", _fg([[1, 0], [0, 0]]))], "rrle")
    rec = {"id": "s", "answer": ans, "grid": [2, 2], "scheme": "rrle", "width": w, "height": h}
    # second answer: rejects an absent target correctly, misses line 2
    rec2 = dict(rec, id="t", answer="[1] b: none")
    rec, rec2 = (ResultRecord.from_json(r, "test") for r in (rec, rec2))
    scores, rows = score_multi([(rec, ["a", "b"], [gt_a, gt_none]), (rec2, ["b", "a"], [gt_none, gt_a])])
    # items: IoU .5, 0 (fp on empty), 1 (rejected empty), 0 (missed) -> gIoU 1.5/4; cIoU (2+0+0+0)/(4+1+0+2)
    assert scores["giou"] == pytest.approx(1.5 / 4) and scores["ciou"] == pytest.approx(2 / 7)
    assert scores["n_acc"] == 0.5 and scores["t_acc"] == 0.5 and scores["missing_lines"] == 1
    assert rows[0]["parse_valid"] and not rows[1]["parse_valid"]


def test_evaluate_scores_a_multi_file_and_a_perfect_answer_scores_one(tmp_path):
    _, rows = _build(tmp_path, k=3)
    gt = tmp_path / "multi_3.jsonl"
    preds = [result_of(r, r["messages"][1]["content"], num_tokens=10) for r in rows]
    pred_path = tmp_path / "results.jsonl"
    pred_path.write_text("".join(json.dumps(p) + "\n" for p in preds))
    m = evaluate(pred_path, gt, tmp_path / "eval")
    multi = m["peers"]["multi"]
    n = sum(len(r["text4seg"]["labels"]) for r in rows)
    assert multi["n"] == n and m["n"] == len(rows) and m["parse_valid"] == 1.0
    assert multi["n_acc"] == 1.0 and multi["t_acc"] == 1.0 and multi["missing_lines"] == 0
    # the grid is coarser than the masks: IoU of the 16x16 answer, below 1 but well above chance
    assert 0.5 < multi["giou"] <= 1.0
    assert (tmp_path / "eval" / "per_sample.jsonl").read_text().count('"task": "multi"') == len(rows)


def test_refzom_scores_targeted_and_empty_items_hand_case():
    stats = [
        {"inter": 2, "union": 4, "iou": 0.5, "pred_empty": False, "gt_empty": False},
        {"inter": 3, "union": 3, "iou": 1.0, "pred_empty": False, "gt_empty": False},
        {"inter": 0, "union": 0, "iou": 1.0, "pred_empty": True, "gt_empty": True},
        {"inter": 0, "union": 5, "iou": 0.0, "pred_empty": False, "gt_empty": True},
    ]
    r = refzom_scores(stats)
    assert r["oiou"] == pytest.approx(5 / 7) and r["miou"] == pytest.approx(0.75) and r["acc"] == 0.5
