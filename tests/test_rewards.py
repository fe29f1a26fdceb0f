"""Mask rewards (text4seg.training.rewards) on hand-made cases, and their ground truth from built rows."""

import json

import numpy as np
import pytest

from text4seg.descriptors import encode, wrap
from text4seg.training.rewards import (
    format_rewards,
    ground_truth_grid,
    iou_rewards,
    pixel_iou_rewards,
    rejection_rewards,
)


def grid(cells: dict[tuple[int, int], str], size: int = 4) -> np.ndarray:
    g = np.full((size, size), "others", dtype=object)
    for (r, c), lab in cells.items():
        g[r, c] = lab
    return g


def answer(g: np.ndarray, scheme: str) -> str:
    return "Here is the mask.\n" + wrap(encode(g, scheme))


DOG = grid({(0, 0): "dog", (0, 1): "dog", (1, 0): "dog", (1, 1): "dog"})
EMPTY = grid({})


@pytest.mark.parametrize("scheme", ["rrle", "full", "compact"])
def test_exact_match_scores_one(scheme):
    assert iou_rewards([answer(DOG, scheme)], [DOG], scheme) == [1.0]


@pytest.mark.parametrize("scheme", ["rrle", "compact"])
def test_disjoint_masks_score_zero(scheme):
    other = grid({(3, 3): "dog", (3, 2): "dog"})
    assert iou_rewards([answer(other, scheme)], [DOG], scheme) == [0.0]


def test_half_overlap_is_the_continuous_iou():
    half = grid({(0, 0): "dog", (0, 1): "dog"})  # 2 of 4 cells: IoU 2/4
    shifted = grid({(0, 1): "dog", (0, 2): "dog", (1, 1): "dog", (1, 2): "dog"})  # 2 shared of 6
    assert iou_rewards([answer(half, "rrle"), answer(shifted, "rrle")], [DOG, DOG]) == pytest.approx(
        [0.5, 2 / 6]
    )


def test_empty_answer_to_empty_target_scores_one_and_nonempty_zero():
    got = iou_rewards([answer(EMPTY, "rrle"), answer(DOG, "rrle")], [EMPTY, EMPTY])
    assert got == [1.0, 0.0]
    assert iou_rewards([answer(EMPTY, "rrle")], [DOG]) == [0.0]


def test_wrong_label_on_the_right_cells_scores_zero():
    cat = np.where(DOG == "dog", "cat", "others").astype(object)
    assert iou_rewards([answer(cat, "rrle")], [DOG]) == [0.0]


def test_malformed_text_never_raises_and_scores_low():
    texts = ["I cannot see it", "", "<seg>dog *2| others *2\n", "<seg>garbage ** |||</seg>", None]
    rewards = iou_rewards(texts, [DOG] * len(texts), "rrle")
    assert all(0.0 <= r <= 1.0 for r in rewards)
    assert rewards[0] == 0.0 and rewards[1] == 0.0
    # a truncated answer keeps the cells it wrote (row 0) and loses the rest
    assert rewards[2] == pytest.approx(0.5)


def test_multi_label_cell_and_per_label_matching():
    gt = grid({(0, 0): "sky", (0, 1): "sky", (3, 3): "boat"})
    pred = grid({(0, 0): "sky", (0, 1): "sky", (3, 3): "sky"})  # boat written as sky
    assert iou_rewards([answer(pred, "rrle")], [gt]) == pytest.approx([2 / 3])
    # per label: sky 2/3 (3 written, 2 right), boat 0/1 -> mean 1/3
    assert iou_rewards([answer(pred, "rrle")], [gt], per_label=True) == pytest.approx([1 / 3])
    assert iou_rewards([answer(gt, "rrle")], [gt], per_label=True) == [1.0]


def test_format_reward_punishes_what_the_lenient_decoder_repairs():
    good = answer(DOG, "rrle")
    truncated = "<seg>dog *2| others *2\n"  # unclosed, rows missing: padded by the decoder
    bare = "dog *2| others *2\n" * 2 + "others *4\n" * 2  # parses leniently, but is no <seg> answer
    rewards = format_rewards([good, truncated, "no mask here", bare], [DOG] * 4, "rrle")
    assert rewards[0] == 1.0
    assert 0.0 <= rewards[1] < 1.0
    assert rewards[2] == 0.0 and rewards[3] == 0.0
    # the padded answer gets the same IoU as if it were complete: only the format term tells them apart
    padded = "<seg>dog *2| others *2\n</seg>"
    complete = answer(grid({(0, 0): "dog", (0, 1): "dog"}), "rrle")
    assert iou_rewards([padded], [DOG]) == iou_rewards([complete], [DOG])
    assert format_rewards([padded], [DOG])[0] < format_rewards([complete], [DOG])[0]


def test_format_reward_needs_the_grid_shape():
    g16 = np.full((16, 16), "others", dtype=object)
    wrong_shape = answer(EMPTY, "rrle")  # 4 rows, where 16 are due
    bad, good = format_rewards([wrong_shape, answer(g16, "rrle")], [g16, g16])
    assert good == 1.0 and bad < 0.5  # 12 missing rows and 4 short ones


def test_rejection_reward_is_one_when_emptiness_matches():
    texts = [answer(EMPTY, "compact"), answer(DOG, "compact")]
    assert rejection_rewards(texts, [EMPTY, EMPTY], "compact", graded=False) == [1.0, 0.0]
    assert rejection_rewards(texts, [DOG, DOG], "compact") == [0.0, 1.0]


def test_rejection_reward_of_an_absent_target_falls_with_the_foreground_written():
    one_cell = answer(grid({(2, 2): "dog"}), "rrle")
    four_cells = answer(DOG, "rrle")
    empty, one, four = rejection_rewards([answer(EMPTY, "rrle"), one_cell, four_cells], [EMPTY] * 3, "rrle")
    assert empty == 1.0
    assert one == pytest.approx(0.5 * (1 - 1 / 16)) and four == pytest.approx(0.5 * (1 - 4 / 16))
    assert empty > one > four > 0.0


def _row(mask: np.ndarray, label: str, scheme: str) -> dict:
    from text4seg.data.rle import mask_to_rle

    return {
        "id": "r1",
        "labels": [label],
        "grid": [16, 16],
        "scheme": scheme,
        "gt": {"masks": [mask_to_rle(mask)], "label_map": "", "classes": [], "ignore": [], "boxes": []},
    }


def test_ground_truth_grid_from_a_synthetic_row_equals_its_answer(tmp_path):
    from data_builders import build_jsonl
    from text4seg.descriptors import decode

    out = tmp_path / "rows.jsonl"
    build_jsonl(
        "synthetic",
        out,
        split="val",
        grid=16,
        scheme="compact",
        seed=0,
        with_gt=True,
        root=tmp_path / "images",
        stats=False,
        options={"image_size": 64, "num_images": 12, "absent_rate": 0.3, "semantic_rate": 0.0},
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert any(not decode(r["messages"][-1]["content"], 16, "compact").labels for r in rows)
    for r in rows:
        want = decode(r["messages"][-1]["content"], 16, "compact").grid
        got = ground_truth_grid(r["text4seg"])
        assert (got == want).all(), r["text4seg"]["id"]
        assert iou_rewards([r["messages"][-1]["content"]], [got], "compact") == [1.0]


def test_solution_column_overrides_the_masks():
    meta = _row(np.zeros((64, 64), bool), "dog", "rrle")
    g16 = np.full((16, 16), "others", dtype=object)
    g16[0, :4] = "dog"
    assert (ground_truth_grid(meta, solution=answer(g16, "rrle")) == g16).all()
    assert not (ground_truth_grid(meta) != "others").any()


def test_ground_truth_without_masks_names_the_row():
    meta = {"id": "x/7", "labels": ["dog"], "grid": [16, 16], "scheme": "rrle", "gt": {"masks": []}}
    with pytest.raises(ValueError, match="x/7.*with-gt"):
        ground_truth_grid(meta)


def test_pixel_iou_reward_against_the_full_resolution_mask():
    mask = np.zeros((64, 64), bool)
    mask[:16, :8] = True  # rows 0-3, columns 0-1 of the 16 x 16 grid
    meta = _row(mask, "dog", "rrle")
    g16 = np.full((16, 16), "others", dtype=object)
    g16[:4, :2] = "dog"
    g16_half = g16.copy()
    g16_half[2:4, :2] = "others"
    got = pixel_iou_rewards([answer(g16, "rrle"), answer(g16_half, "rrle"), "nothing"], [meta] * 3)
    assert got == pytest.approx([1.0, 0.5, 0.0])
    empty = _row(np.zeros((64, 64), bool), "dog", "rrle")
    assert pixel_iou_rewards([answer(np.full((16, 16), "others"), "rrle")], [empty]) == [1.0]


@pytest.mark.parametrize(
    "text",
    ["Here is the mask.\n<seg><seg></seg>", "<seg>dog\n1:1-2</seg>"],
    ids=["nested-tag", "no-final-newline"],
)
def test_format_reward_is_one_only_for_what_the_strict_decoder_accepts(text):
    # the lenient decoder reads these without a repair; a GRPO run learnt to write the first one
    from text4seg.descriptors import decode

    assert decode(text, 4, "compact").repairs == []
    assert format_rewards([text], [DOG], "compact")[0] < 1.0
    assert format_rewards([answer(DOG, "compact")], [DOG], "compact") == [1.0]
