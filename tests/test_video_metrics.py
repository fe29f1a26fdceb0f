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


def _video_files(tmp_path, dataset: str, pred, gt):
    """A built video row of ``dataset`` (frames f0..f{T-1}) and its video_results.jsonl record."""
    import json

    from text4seg.data.rle import mask_to_rle

    names = [f"{i:05d}" for i in range(gt.shape[0])]
    row = {
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        "images": [f"/v/{n}.jpg" for n in names],
        "text4seg": {
            "id": f"{dataset}/val/v/1",
            "task": "vres",
            "source": {"dataset": dataset, "image_id": "v", "ref_id": "1"},
            "gt": {"masks": [mask_to_rle(m) for m in gt]},
        },
    }
    rec = {
        "id": "r",
        "video": "v",
        "expression_id": "1",
        "frames": names,
        "masks": [mask_to_rle(m) for m in pred],
    }
    (tmp_path / "built.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "video_results.jsonl").write_text(json.dumps(rec) + "\n")


@pytest.mark.parametrize(
    "dataset, want_jf, scored",
    [
        # davisvideochallenge/davis2017-evaluation@ac7c43fc (tests/conformance: copy_first_frame)
        ("davis17", (0.145913 + 0.075521) / 2, "but the first and the last"),
        ("refytvos", None, "every shown frame"),
    ],
)
def test_cli_davis_rows_are_scored_without_their_first_and_last_frame(tmp_path, dataset, want_jf, scored):
    """Issue 27 item 5: a prediction that copies the first frame's mask (given in the question of a
    DAVIS-17 semi-supervised row) to every frame; the DAVIS protocol scores frames 1..T-2 only, and the
    output says which frames were scored. Other datasets keep every shown frame."""
    import json

    from conformance.metrics_inputs import davis_cases
    from support.hostile import cli

    pred, gt = davis_cases()["copy_first_frame"]
    _video_files(tmp_path, dataset, pred, gt)
    proc = cli(["evaluate", "--pred", "video_results.jsonl", "--gt", "built.jsonl", "--out", "ev"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert scored in out["scored"]
    assert out["frames"] == (6 if dataset == "davis17" else 8)
    if want_jf is None:  # every frame, the first one (a perfect copy) included
        want_jf = j_and_f([pred], [gt])["jf"]
        assert want_jf > (0.145913 + 0.075521) / 2
    assert out["jf"] == pytest.approx(want_jf, abs=1e-6)
