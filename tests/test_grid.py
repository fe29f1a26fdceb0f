"""Mask <-> grid geometry: PIL-exact nearest sampling, the inverse painting, small-object samplers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from text4seg import decode, encode, grid_to_mask, mask_to_grid
from text4seg.descriptors import grid_labels, grid_shape, grid_to_label_map


@st.composite
def label_maps(draw):
    h = draw(st.integers(1, 300))
    w = draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**31))
    k = draw(st.integers(1, 6))
    rng = np.random.default_rng(seed)
    lm = np.zeros((h, w), np.uint8)
    for c in range(1, k):  # random rectangles and discs of random sizes
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = rng.integers(y0, h + 1), rng.integers(x0, w + 1)
        lm[y0 : y1 + 1, x0 : x1 + 1] = c
    noise = rng.random((h, w)) < draw(st.sampled_from([0.0, 0.01, 0.3]))
    lm[noise] = rng.integers(0, k, noise.sum())
    return lm


@settings(max_examples=200, deadline=None)
@given(label_maps(), st.sampled_from([16, 24, 32, 7, 1]), st.sampled_from([16, 24, 32, 5]))
def test_nearest_sampler_equals_pil_resize(lm, rows, cols):
    names = [None, "a", "b", "c", "d", "e"]
    expected_ids = np.asarray(Image.fromarray(lm).resize((cols, rows), Image.NEAREST))
    expected = np.asarray(["others" if i == 0 else names[i] for i in expected_ids.ravel()]).reshape(
        rows, cols
    )
    assert (mask_to_grid(lm, (rows, cols), labels=names) == expected).all()


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 400), st.integers(1, 400), st.sampled_from([16, 24, 32]), st.integers(0, 10**6))
def test_grid_to_mask_equals_pil_nearest_upsampling(h, w, size, seed):
    g = np.where(np.random.default_rng(seed).random((size, size)) < 0.4, "dog", "others")
    expected = np.asarray(Image.fromarray(g == "dog").resize((w, h), Image.NEAREST))
    assert (grid_to_mask(g, h, w) == expected).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(16, 300), st.integers(16, 300), st.integers(0, 10**6))
def test_painting_then_sampling_returns_the_grid(h, w, seed):
    g = np.where(np.random.default_rng(seed).random((16, 16)) < 0.5, "dog", "others")
    mask = grid_to_mask(g, h, w)
    for sampler in ("nearest", "majority", "any"):
        assert (mask_to_grid(mask, 16, labels="dog", sampler=sampler) == g).all()


def test_ignore_pixels_and_unnamed_ids_are_background():
    lm = np.array([[255, 1], [2, 0]], np.uint8)
    assert mask_to_grid(lm, 2, labels={1: "cat"}).tolist() == [["others", "cat"], ["others", "others"]]
    assert mask_to_grid(lm, 2).tolist() == [["others", "1"], ["2", "others"]]
    # a sequence of names: id 255 is out of its range, so background even without ignore_index
    out = mask_to_grid(lm, 2, labels=["x", "cat", "dog"], ignore_index=None)
    assert out.tolist() == [["others", "cat"], ["dog", "x"]]


def test_foreground_class_named_others_is_renamed_not_lost():
    g = mask_to_grid(np.ones((4, 4), bool), 2, labels="others")
    assert (g != "others").all()


def test_labels_are_normalised_on_the_way_in():
    g = mask_to_grid(np.ones((2, 2), bool), 2, labels="man | woman\n")
    assert g[0, 0] == "man / woman"


def test_any_sampler_keeps_a_small_object_that_nearest_misses():
    mask = np.zeros((480, 640), bool)
    mask[2:6, 2:6] = True  # 4x4 px in a 30x40 px cell, away from the sampled centre
    assert (mask_to_grid(mask, 16, labels="ant") == "others").all()
    assert (mask_to_grid(mask, 16, labels="ant", sampler="any") == "ant").sum() == 1
    assert (mask_to_grid(mask, 16, labels="ant", sampler="majority") == "others").all()


def test_any_sampler_picks_the_most_frequent_foreground_label():
    lm = np.zeros((16, 16), np.uint8)
    lm[:3, :3] = 1
    lm[3:7, :3] = 2
    g = mask_to_grid(lm, 1, labels=[None, "a", "b"], sampler="any")
    assert g.tolist() == [["b"]]


def test_whole_image_object_round_trips_as_a_full_mask():
    mask = np.ones((37, 53), bool)
    g = mask_to_grid(mask, 16, labels="sky")
    back = grid_to_mask(decode(encode(g), 16, strict=True).grid, 37, 53)
    assert back.all()


def test_label_map_painting_keeps_every_label():
    g = np.array([["others", "a"], ["b", "a"]])
    lm, names = grid_to_label_map(g, 4, 6)
    assert names == ["others", "a", "b"] and lm.shape == (4, 6)
    assert (np.asarray(names)[lm][::2, ::3] == g).all()
    assert grid_labels(g) == ["a", "b"]


def test_grid_to_mask_for_one_label():
    g = np.array([["a", "b"]])
    assert grid_to_mask(g, 1, 4, label="b").tolist() == [[False, False, True, True]]


@pytest.mark.parametrize("bad", [0, -3, (16,), "16", (0, 4), True])
def test_bad_grid_sizes_are_refused_with_the_value(bad):
    with pytest.raises(ValueError, match="size"):
        grid_shape(bad)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="2-D"):
        mask_to_grid(np.zeros((2, 2, 3), bool))
    with pytest.raises(ValueError, match="sampler"):
        mask_to_grid(np.zeros((2, 2), bool), sampler="bilinear")
    with pytest.raises(ValueError, match="dtype"):
        mask_to_grid(np.zeros((2, 2), float))


@pytest.mark.parametrize(
    "src,dst", [(16, 480), (16, 640), (16, 427), (24, 375), (32, 500), (16, 16), (16, 32), (7, 3)]
)
def test_official_geometry_equals_torch_interpolate_nearest(src, dst):
    torch = pytest.importorskip("torch")
    from text4seg.descriptors.grid import floor_index

    x = torch.arange(src, dtype=torch.float32).reshape(1, 1, src, 1)
    want = torch.nn.functional.interpolate(x, size=(dst, 1), mode="nearest")[0, 0, :, 0].long().numpy()
    assert np.array_equal(floor_index(src, dst), want)


def test_official_and_pil_geometry_differ_by_at_most_one_cell_and_pil_is_default():
    rng = np.random.default_rng(0)
    grid = np.where(rng.random((16, 16)) < 0.4, "dog", "others")
    pil = grid_to_mask(grid, 427, 640)
    official = grid_to_mask(grid, 427, 640, geometry="official")
    assert np.array_equal(pil, grid_to_mask(grid, 427, 640, geometry="pil"))
    assert not np.array_equal(pil, official)  # 427 is not a multiple of 16
    from text4seg.descriptors.grid import floor_index, nearest_index

    assert np.abs(floor_index(16, 427) - nearest_index(16, 427)).max() <= 1
    with pytest.raises(ValueError, match="official"):
        grid_to_mask(grid, 10, 10, geometry="torch")
