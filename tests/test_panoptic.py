"""Panoptic quality against hand-computed cases (COCO panoptic protocol)."""

from __future__ import annotations

import numpy as np
import pytest

from text4seg.evaluation.panoptic import panoptic_quality


def m(rows):
    return np.array(rows, np.int32)


def test_void_pixels_of_the_prediction_leave_the_union():
    # gt [1 1 1 0], pred [5 5 0 5]: inter 2, union 3 + 3 - 2 - 1 (pred pixel on void) = 3
    r = panoptic_quality([(m([[5, 5, 0, 5]]), {5: 7})], [(m([[1, 1, 1, 0]]), {1: 7})], things={7})
    assert r["pq"] == pytest.approx(2 / 3) and r["sq"] == pytest.approx(2 / 3) and r["rq"] == 1.0
    assert r["pq_th"] == pytest.approx(2 / 3) and r["pq_st"] is None and r["n_st"] == 0


def test_iou_of_exactly_one_half_is_no_match():
    # gt [1 1 0 0]... use gt [1 1 2 2] with pred [5 5 5 5] (cat of 1): inter 2, union 4 -> IoU 0.5: no match
    gt = (m([[1, 1, 2, 2]]), {1: 1, 2: 2})
    pred = (m([[5, 5, 5, 5]]), {5: 1})
    r = panoptic_quality([pred], [gt], things=set())
    # cat 1: FP 1 + FN 1 -> PQ 0; cat 2: FN 1 -> PQ 0
    assert r["per_class"][1] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "tp": 0, "fp": 1, "fn": 1}
    assert r["per_class"][2]["fn"] == 1 and r["pq"] == 0.0 and r["n"] == 2


def test_different_categories_never_match():
    r = panoptic_quality([(m([[3, 3]]), {3: 2})], [(m([[1, 1]]), {1: 1})], things={1, 2})
    assert r["per_class"][1]["fn"] == 1 and r["per_class"][2]["fp"] == 1 and r["pq"] == 0.0


def test_prediction_mostly_on_void_is_not_a_false_positive():
    # pred segment 9 (cat 4) lies 3/4 on void -> ignored; 1/2 on void would be a FP
    gt = (m([[0, 0, 0, 1]]), {1: 1})
    r = panoptic_quality([(m([[9, 9, 9, 9]]), {9: 4})], [gt], things=set())
    assert 4 not in r["per_class"] and r["per_class"][1]["fn"] == 1
    gt2 = (m([[0, 0, 1, 1]]), {1: 1})
    r2 = panoptic_quality([(m([[9, 9, 9, 9]]), {9: 4})], [gt2], things=set())
    assert r2["per_class"][4]["fp"] == 1


def test_crowd_is_never_matched_or_missed_and_absorbs_predictions_of_its_category():
    # gt: segment 1 = crowd person (cat 1), segment 2 = dog (cat 2); pred 7 = person inside the crowd
    gt = (m([[1, 1, 1, 2, 2]]), {1: 1, 2: 2}, {1})
    pred = (m([[7, 7, 0, 8, 8]]), {7: 1, 8: 2})
    r = panoptic_quality([pred], [gt], things={1, 2})
    assert 1 not in r["per_class"]  # no TP, no FN (crowd), no FP (inside crowd)
    assert r["per_class"][2] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "tp": 1, "fp": 0, "fn": 0}
    # a prediction of another category on the crowd is a false positive
    r2 = panoptic_quality([(m([[7, 7, 0, 8, 8]]), {7: 3, 8: 2})], [gt], things={1, 2, 3})
    assert r2["per_class"][3]["fp"] == 1


def test_hand_case_over_two_images_things_and_stuff():
    # image A: person 1 (cat 1, thing) matched at IoU 3/4, sky (cat 10, stuff) matched at IoU 1
    ga = (m([[1, 1, 1, 10], [0, 10, 10, 10]]), {1: 1, 10: 10})
    pa = (m([[1, 1, 1, 1], [2, 2, 2, 2]]), {1: 1, 2: 10})
    # pred 1 = 4 px, gt 1 = 3 px, inter 3, union 4 -> 3/4; pred 2 = 4 px (1 void), gt 10 = 4 px
    # inter 3, union 4 + 4 - 3 - 1 = 4 -> 3/4
    # image B: person missed (FN), an extra person predicted on the sky (FP), the sky missed (FN)
    gb = (m([[1, 1, 10, 10]]), {1: 1, 10: 10})
    pb = (m([[0, 0, 4, 4]]), {4: 1})
    r = panoptic_quality([pa, pb], [ga, gb], things={1})
    # cat 1: TP 1 (IoU .75), FP 1, FN 1 -> PQ .75 / 2, SQ .75, RQ .5; cat 10: TP 1 (IoU .75), FN 1
    assert r["pq_th"] == pytest.approx(0.375) and r["sq_th"] == pytest.approx(0.75) and r["rq_th"] == 0.5
    assert r["pq_st"] == pytest.approx(0.5) and r["rq_st"] == pytest.approx(2 / 3)
    assert r["pq"] == pytest.approx((0.375 + 0.5) / 2) and r["n"] == 2


def test_bad_inputs_name_the_image():
    with pytest.raises(ValueError, match="segment ids"):
        panoptic_quality([(m([[3]]), {})], [(m([[1]]), {1: 1})], things=set())
    with pytest.raises(ValueError, match="image 0"):
        panoptic_quality([(m([[3, 3]]), {3: 1})], [(m([[1]]), {1: 1})], things=set())
