"""Every metric against hand-computed cases, the all-empty edge cases included."""

from __future__ import annotations

import numpy as np
import pytest

from text4seg.evaluation.metrics import (
    box_iou,
    mask_stats,
    mask_to_box,
    rec_scores,
    referring_scores,
    semantic_counts,
    semantic_scores,
)


def _m(h, w, *boxes):
    m = np.zeros((h, w), bool)
    for y0, y1, x0, x1 in boxes:
        m[y0:y1, x0:x1] = True
    return m


E = np.zeros((4, 4), bool)


def test_mask_stats_counts_intersection_and_union():
    s = mask_stats(_m(4, 4, (0, 2, 0, 2)), _m(4, 4, (0, 2, 1, 3)))  # 4 px each, overlap 2
    assert (s["inter"], s["union"], s["iou"]) == (2, 6, pytest.approx(1 / 3))
    assert s == {**s, "pred_empty": False, "gt_empty": False}


def test_empty_prediction_on_empty_ground_truth_has_iou_one():
    assert mask_stats(E, E)["iou"] == 1.0


def test_ciou_is_cumulative_and_giou_is_mean_of_samples():
    # sample 1: I=2 U=6 (IoU 1/3); sample 2: I=8 U=8 (IoU 1)
    p = [_m(4, 4, (0, 2, 0, 2)), _m(4, 4, (0, 2, 0, 4))]
    g = [_m(4, 4, (0, 2, 1, 3)), _m(4, 4, (0, 2, 0, 4))]
    r = referring_scores(p, g)
    assert r["ciou"] == pytest.approx(10 / 14)
    assert r["giou"] == pytest.approx((1 / 3 + 1) / 2)
    assert r["n_acc"] is None  # no no-target sample
    assert r["t_acc"] == 1.0
    assert r["pr@0.5"] == 0.5 and r["pr@0.9"] == 0.5


def test_no_target_samples_give_n_acc_and_count_in_giou():
    # no-target predicted empty (IoU 1), no-target predicted non-empty (IoU 0, U=4), targeted miss (U=4)
    p = [E, _m(4, 4, (0, 2, 0, 2)), E]
    g = [E, E, _m(4, 4, (2, 4, 2, 4))]
    r = referring_scores(p, g)
    assert r["n_acc"] == 0.5
    assert r["t_acc"] == 0.0
    assert r["giou"] == pytest.approx(1 / 3)
    assert r["ciou"] == 0.0
    assert r["pr@0.5"] == 0.0  # over the single targeted sample only
    assert (r["n_no_target"], r["n_targeted"]) == (2, 1)


def test_all_empty_set_scores_perfectly_and_t_acc_is_none():
    r = referring_scores([E, E], [E, E])
    assert r["ciou"] == 1.0 and r["giou"] == 1.0 and r["n_acc"] == 1.0
    assert r["t_acc"] is None and r["pr@0.5"] is None


def test_empty_set_gives_none_everywhere():
    r = referring_scores([], [])
    assert all(r[k] is None for k in ("ciou", "giou", "n_acc", "t_acc"))


def test_pr_threshold_is_inclusive():
    # IoU exactly 0.5: 2 of 4 pixels
    r = referring_scores([_m(2, 2, (0, 1, 0, 2))], [_m(2, 2, (0, 2, 0, 2))])
    assert r["pr@0.5"] == 1.0 and r["pr@0.6"] == 0.0


def test_referring_scores_rejects_length_and_shape_mismatch():
    with pytest.raises(ValueError, match="2 predictions for 1"):
        referring_scores([E, E], [E])
    with pytest.raises(ValueError, match="shape"):
        referring_scores([np.zeros((2, 3), bool)], [E])


def test_mask_to_box_uses_exclusive_max_edges():
    assert mask_to_box(_m(10, 10, (2, 5, 3, 7))) == (3, 2, 7, 5)
    assert mask_to_box(E) is None


def test_box_iou_hand_computed():
    assert box_iou((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(2 / 6)
    assert box_iou(None, None) == 1.0 and box_iou(None, (0, 0, 1, 1)) == 0.0


def test_rec_accuracy_needs_iou_strictly_above_threshold():
    gt = (0, 0, 4, 2)  # 8 px
    exactly_half = _m(4, 4, (0, 2, 0, 2))  # box (0,0,2,2): IoU 4/8 = 0.5 -> not counted
    good = _m(4, 4, (0, 2, 0, 3))  # IoU 6/8
    r = rec_scores([exactly_half, good, E], [gt, gt, gt])
    assert r["acc@0.5"] == pytest.approx(1 / 3)
    assert r["mean_box_iou"] == pytest.approx((0.5 + 0.75 + 0) / 3)


def test_rec_accepts_mask_ground_truth():
    m = _m(4, 4, (1, 3, 1, 3))
    assert rec_scores([m], [m])["acc@0.5"] == 1.0


def test_semantic_counts_ignore_pixels_and_unnamed_predictions():
    gt = np.array([[0, 0, 1, 255]])
    pred = np.array([[0, 1, -1, 0]])  # -1: "others", no class named
    inter, union = semantic_counts(pred, gt, 2)
    # class 0: I=1 (px0), U = gt{0,1} + pred{0} = 2; class 1: I=0, U = gt{2} + pred{1} = 2
    assert inter.tolist() == [1, 0] and union.tolist() == [2, 2]


def test_miou_sums_over_set_and_skips_absent_classes():
    gts = [np.array([[0, 1]]), np.array([[1, 1]])]
    preds = [np.array([[0, 1]]), np.array([[1, 0]])]
    r = semantic_scores(preds, gts, 3, class_names=["a", "b", "c"])
    # a: I=1, U=2 ; b: I=2, U=3 ; c: absent -> None
    assert r["iou"] == {"a": 0.5, "b": pytest.approx(2 / 3), "c": None}
    assert r["miou"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_semantic_all_ignore_gives_none():
    r = semantic_scores([np.zeros((2, 2), int)], [np.full((2, 2), 255)], 2)
    assert r["miou"] is None


def test_semantic_rejects_out_of_range_ground_truth():
    with pytest.raises(ValueError, match="ground-truth id 7"):
        semantic_counts(np.zeros((1, 1), int), np.full((1, 1), 7), 2)


# ------------------------------------------------- degenerate cases (metrics.py header, with LISA/ReLA)
T = _m(4, 4, (0, 2, 0, 2))


def test_all_empty_vs_empty_set_is_perfect_where_lisa_gives_ciou_zero_and_rela_divides_by_zero():
    r = referring_scores([E, E, E], [E, E, E])
    assert (r["ciou"], r["giou"], r["n_acc"]) == (1.0, 1.0, 1.0)
    assert r["t_acc"] is None and all(r[f"pr@{t:g}"] is None for t in (0.5, 0.6, 0.7, 0.8, 0.9))
    assert (r["n"], r["n_no_target"], r["n_targeted"]) == (3, 3, 0)


def test_without_no_target_samples_n_acc_is_none_not_relas_zero():
    r = referring_scores([T, E], [T, T])  # one hit, one rejection of a present target
    assert r["n_acc"] is None and r["t_acc"] == 0.5
    assert r["ciou"] == pytest.approx(4 / 8) and r["giou"] == pytest.approx(0.5)


def test_all_no_target_samples_give_t_acc_none_and_ciou_over_false_positives_only():
    r = referring_scores([E, T], [E, E])  # one correct rejection, one false positive of 4 px
    assert r["t_acc"] is None and r["n_acc"] == 0.5
    assert r["ciou"] == 0.0 and r["giou"] == 0.5  # sum I = 0 over sum U = 4; IoUs 1 and 0


def test_ciou_is_one_exactly_when_the_union_sum_is_zero():
    assert referring_scores([E], [E])["ciou"] == 1.0
    assert referring_scores([E, E], [E, T])["ciou"] == 0.0  # U > 0 from the missed target
