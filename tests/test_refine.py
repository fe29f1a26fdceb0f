"""SAM refinement on a tiny random SAM: geometry, points, iterations, caching, empty masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("segment_anything")
pytest.importorskip("torch")

from support.sam import make_tiny_sam  # noqa: E402

from text4seg.inference.refine import Refiner, coarse_logits, longest_side_shape, sample_points  # noqa: E402


@pytest.fixture(scope="module")
def sam():
    return make_tiny_sam()


class CountingEncoder:
    """Wraps the image encoder's forward to count calls."""

    def __init__(self, sam):
        self.calls = 0
        orig = sam.image_encoder.forward

        def forward(x):
            self.calls += 1
            return orig(x)

        sam.image_encoder.forward = forward
        self.restore = lambda: setattr(sam.image_encoder, "forward", orig)


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_frame_size_comes_from_the_model(sam):
    assert Refiner(sam).frame == (64, 64) == tuple(sam.prompt_encoder.mask_input_size)


@pytest.mark.parametrize("h,w", [(40, 100), (100, 40), (50, 50)])
def test_mask_prompt_uses_sams_longest_side_resize_and_padding(h, w):
    m = np.ones((h, w), bool)
    m[:, : w // 2] = False  # right half on
    logits = coarse_logits(m, (64, 64))
    nh, nw = longest_side_shape(h, w, 64)
    assert max(nh, nw) == 64
    hi = math.log(999)
    assert logits.shape == (1, 64, 64) and logits.dtype == np.float32
    assert np.allclose(logits[0, nh:, :], -hi) and np.allclose(logits[0, :, nw:], -hi)  # padding
    inside = logits[0, :nh, :nw] > 0
    assert inside[:, -1].all() and not inside[:, 0].any()  # right half stays right, not stretched
    assert abs(inside.mean() - 0.5) < 0.05


def test_points_are_seeded_and_on_the_right_side():
    m = np.zeros((30, 40), bool)
    m[5:10, 5:20] = True
    c1, l1 = sample_points(m, 10, 10, seed=3)
    c2, _ = sample_points(m, 10, 10, seed=3)
    assert np.array_equal(c1, c2) and l1.tolist() == [1] * 10 + [0] * 10
    xs, ys = c1[:, 0].astype(int), c1[:, 1].astype(int)
    assert m[ys[:10], xs[:10]].all() and not m[ys[10:], xs[10:]].any()


def test_full_mask_samples_positives_only():
    c, lab = sample_points(np.ones((4, 4), bool), 10, 10)
    assert c.shape == (10, 2) and (lab == 1).all()


@pytest.mark.parametrize("h,w", [(48, 96), (96, 48), (64, 64)])
def test_refine_returns_original_resolution_after_three_calls(sam, h, w):
    r = Refiner(sam)
    m = np.zeros((h, w), bool)
    m[10:30, 10:30] = True
    out = r.refine(_img(h, w), m, key="a")
    assert out.shape == (h, w) and out.dtype == bool
    assert r.predict_calls == 3 and r.encoder_passes == 1


def test_feedback_uses_previous_low_res_logits(sam, monkeypatch):
    r = Refiner(sam, iterations=3)
    seen = []
    orig = r.predictor.predict

    def spy(**kw):
        seen.append(kw["mask_input"].copy())
        assert kw["multimask_output"] is False
        out = orig(**kw)
        seen.append(("low", out[2].copy()))
        return out

    monkeypatch.setattr(r.predictor, "predict", spy)
    m = np.zeros((32, 32), bool)
    m[4:20, 4:20] = True
    r.refine(_img(32, 32), m, key="b")
    assert np.array_equal(seen[0], coarse_logits(m, (64, 64)))
    assert np.array_equal(seen[2], seen[1][1]) and np.array_equal(seen[4], seen[3][1])


def test_empty_coarse_mask_is_not_refined(sam):
    r = Refiner(sam)
    out = r.refine(_img(20, 20), np.zeros((20, 20), bool), key="c")
    assert not out.any() and r.encoder_passes == 0 and r.predict_calls == 0


def test_embedding_computed_once_per_image_across_queries(sam):
    counter = CountingEncoder(sam)
    try:
        r = Refiner(sam)
        imgs = {k: _img(40, 60, seed=i) for i, k in enumerate("xyz")}
        m = np.zeros((40, 60), bool)
        m[5:20, 5:30] = True
        for k in ["x", "x", "y", "x", "z", "y", "x"]:
            r.refine(imgs[k], m, key=k)
        assert counter.calls == r.encoder_passes == 3
    finally:
        counter.restore()


def test_label_map_refined_per_class_and_merged(sam):
    r = Refiner(sam)
    lm = np.zeros((32, 48), np.int32)
    lm[2:12, 2:12] = 1
    lm[20:30, 30:45] = 2
    out = r.refine_label_map(_img(32, 48), lm, key="d")
    assert out.shape == lm.shape and set(np.unique(out).tolist()) <= {0, 1, 2}
    assert r.predict_calls == 6 and r.encoder_passes == 1


def test_mismatched_mask_size_is_a_clear_error(sam):
    with pytest.raises(ValueError, match="coarse mask is"):
        Refiner(sam).refine(_img(20, 20), np.ones((10, 10), bool), key="e")
