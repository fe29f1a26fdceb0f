"""J&F (DAVIS protocol) on hand-computed cases: region J, the boundary map, F with its tolerance."""

import numpy as np
import pytest

from text4seg.evaluation.video import boundary_f, boundary_map, j_and_f


def square(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0 : r1 + 1, c0 : c1 + 1] = True
    return m


def test_boundary_map_is_the_ring_offset_half_a_pixel_towards_the_origin():
    b = boundary_map(square((5, 5), 1, 2, 1, 2))
    expected = {(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)}
    assert set(zip(*np.nonzero(b))) == expected


def test_empty_prediction_of_empty_target_scores_one_for_j_and_f():
    z = np.zeros((3, 8, 8), bool)
    assert j_and_f([z], [z]) == {"j": 1.0, "f": 1.0, "jf": 1.0, "pairs": 1}


def test_empty_prediction_of_a_present_target_scores_zero_and_vice_versa():
    z, m = np.zeros((1, 8, 8), bool), square((8, 8), 2, 4, 2, 4)[None]
    assert j_and_f([z], [m])["jf"] == 0.0
    assert j_and_f([m], [z])["jf"] == 0.0


def test_one_pixel_shift_is_within_the_boundary_tolerance():
    gt, pred = square((5, 5), 1, 2, 1, 2), square((5, 5), 1, 2, 2, 3)  # tolerance ceil(0.008*7.07) = 1
    out = j_and_f([pred[None]], [gt[None]])
    assert out["j"] == pytest.approx(2 / 6)
    assert out["f"] == pytest.approx(1.0)


def test_three_pixel_shift_matches_only_the_facing_boundary_columns():
    gt, pred = square((10, 10), 1, 2, 1, 2), square((10, 10), 1, 2, 4, 5)
    # boundaries: 8 pixels each; gt column 2 and pred column 3 (3 pixels each) are 1 apart
    assert boundary_f(pred, gt) == pytest.approx(3 / 8)


def test_pairs_are_averaged_over_their_frames_first():
    m = square((6, 6), 1, 3, 1, 3)
    z = np.zeros_like(m)
    a_pred, a_gt = np.stack([m, z]), np.stack([m, m])  # J per frame 1, 0
    b_pred, b_gt = m[None], m[None]  # J 1
    out = j_and_f([a_pred, b_pred], [a_gt, b_gt])
    assert out["j"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["jf"] == pytest.approx((out["j"] + out["f"]) / 2)


def test_shape_mismatch_names_the_pair():
    with pytest.raises(ValueError, match="pair 1"):
        j_and_f([np.zeros((1, 4, 4)), np.zeros((1, 4, 4))], [np.zeros((1, 4, 4)), np.zeros((2, 4, 4))])
