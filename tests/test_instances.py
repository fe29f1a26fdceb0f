"""Instance-numbered descriptors (numbering, round trip) and instance matching (hand cases)."""

from __future__ import annotations

import numpy as np
import pytest

from text4seg.descriptors import decode, encode
from text4seg.descriptors.instances import (
    instance_masks,
    number_instances,
    parse_instance_label,
    split_instances,
)
from text4seg.evaluation.instances import (
    hungarian,
    instance_scores,
    instances_of_label_map,
    iou_matrix,
    match_instances,
)


def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_instances_are_numbered_top_to_bottom_then_left_to_right():
    masks = [
        _box(32, 32, 20, 28, 2, 8),  # bottom
        _box(32, 32, 2, 8, 20, 28),  # top right
        _box(32, 32, 2, 8, 2, 8),  # top left
        _box(32, 32, 10, 16, 10, 16),  # a dog
    ]
    grid, insts, _ = number_instances(masks, ["person", "person", "person", "dog"], 8)
    labels = {i.index: i.label for i in insts}
    assert labels == {2: "person 1", 1: "person 2", 0: "person 3", 3: "dog 1"}
    assert grid[1, 1] == "person 1" and grid[1, 6] == "person 2" and grid[6, 1] == "person 3"


def test_numbering_does_not_depend_on_input_order():
    masks = [_box(32, 32, 2, 8, 2, 8), _box(32, 32, 2, 8, 20, 28), _box(32, 32, 20, 28, 2, 8)]
    g1, _, _ = number_instances(masks, ["cat"] * 3, 8)
    g2, _, _ = number_instances(masks[::-1], ["cat"] * 3, 8)
    assert (g1 == g2).all()


def test_overlapping_cell_goes_to_the_smaller_instance_and_invisible_ones_get_no_number():
    big = _box(32, 32, 0, 32, 0, 32)
    small = _box(32, 32, 8, 16, 8, 16)
    speck = np.zeros((32, 32), bool)
    speck[1, 1] = True  # not on any sampled pixel of an 4x4 grid
    grid, insts, order = number_instances([big, small, speck], ["bg thing", "cup", "cup"], 4)
    assert {i.label for i in insts} == {"bg thing 1", "cup 1"}
    assert (grid == "cup 1").sum() == 1
    assert order[-1] == 2  # the invisible cup ranks after the visible one


def test_instance_masks_round_trip_through_text_for_every_scheme():
    masks = [_box(48, 64, 0, 24, 0, 32), _box(48, 64, 24, 48, 32, 64), _box(48, 64, 0, 24, 32, 64)]
    names = ["car", "car", "tree"]
    grid, insts, _ = number_instances(masks, names, 16)
    for scheme in ("rrle", "compact"):
        dec = decode(encode(grid, scheme), 16, scheme, strict=True)
        back = instance_masks(dec.grid, 48, 64)
        assert [(n, k) for n, k, _ in back] == [("car", 1), ("car", 2), ("tree", 1)]
        by_label = {(n, k): m for n, k, m in back}
        for inst in insts:
            assert (by_label[(inst.name, inst.k)] == masks[inst.index]).all()


def test_split_instances_reads_unnumbered_labels_as_k0_and_multiword_names():
    grid = np.array([["traffic light 2", "traffic light 1"], ["sky", "others"]])
    got = [(i.name, i.k, int(i.cells.sum())) for i in split_instances(grid)]
    assert got == [("traffic light", 1, 1), ("traffic light", 2, 1), ("sky", 0, 1)]
    assert parse_instance_label("room 101") == ("room", 101)
    assert parse_instance_label("item 0") == ("item 0", 0)


def test_hungarian_matches_scipy_on_random_rectangular_costs():
    scipy_opt = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (3, 3), (4, 6), (6, 4), (7, 7)]:
        c = rng.random(shape)
        r1, c1 = hungarian(c)
        r2, c2 = scipy_opt.linear_sum_assignment(c)
        assert c[r1, c1].sum() == pytest.approx(c[r2, c2].sum())
        assert len(r1) == min(shape) and len(set(c1.tolist())) == len(c1)


def test_swapped_numbers_still_match_perfectly():
    a, b = _box(8, 8, 0, 4, 0, 4), _box(8, 8, 4, 8, 4, 8)
    m = match_instances([("cat", b), ("cat", a)], [("cat", a), ("cat", b)])
    assert sorted(m.pairs) == [(0, 1, 1.0), (1, 0, 1.0)]
    s = instance_scores([m])
    assert (s["tp"], s["fp"], s["fn"], s["mean_instance_iou"]) == (2, 0, 0, 1.0)


def test_hand_case_counts_fp_fn_and_mean_iou():
    a = _box(10, 10, 0, 10, 0, 5)  # 50 px
    half = _box(10, 10, 0, 10, 0, 2)  # IoU 20/50 = 0.4 with a: matched but below 0.5
    b = _box(10, 10, 0, 10, 5, 10)
    pred = [("dog", half), ("dog", b), ("cat", a)]  # the cat has no cat ground truth
    gt = [("dog", a), ("dog", b), ("bird", b)]
    m = match_instances(pred, gt)
    assert m.pairs == [(0, 0, pytest.approx(0.4)), (1, 1, 1.0)]
    s = instance_scores([m])
    assert (s["tp"], s["fp"], s["fn"]) == (1, 2, 2)
    assert s["mean_instance_iou"] == pytest.approx((0.4 + 1.0) / 3)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 3)


def test_no_instances_anywhere_gives_undefined_rates():
    s = instance_scores([match_instances([], [])])
    assert s["precision"] is None and s["mean_instance_iou"] is None and s["tp"] == 0


def test_iou_matrix_and_label_map_ground_truth():
    lm = np.array([[0, 1], [2, 2]])
    gt = instances_of_label_map(lm, ["others", "cup 1", "cup 2"])
    assert [n for n, _ in gt] == ["cup", "cup"]
    iou = iou_matrix([gt[0][1]], [gt[0][1], gt[1][1]])
    assert iou.tolist() == [[1.0, 0.0]]
