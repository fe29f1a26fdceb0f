"""Overlays for people: a colour per label, the ground-truth outline, the faint grid, coarse | refined."""

from __future__ import annotations

import numpy as np
from PIL import Image

from text4seg.data.overlay import GT_COLOUR, PALETTE, label_colours, overlay_image, save_overlay

H, W = 32, 48
S = 8  # 256 / 32: the scale overlay_image picks for a 32 x 48 image (shorter side -> 256 px)
TOP, LEFT = 10 + 18, 10  # padding + panel title, no query line


def _px(img: np.ndarray, r: int, c: int, panel: int = 0) -> np.ndarray:
    """The overlay pixel at the centre of image pixel (r, c) in panel 0 (coarse) or 1 (refined)."""
    x0 = LEFT + panel * (W * S + 10)
    return img[TOP + r * S + S // 2, x0 + c * S + S // 2].astype(int)


def _scene():
    base = np.full((H, W, 3), 100, np.uint8)
    lm = np.zeros((H, W), np.int32)
    lm[4:12, 6:18] = 1
    lm[20:30, 30:44] = 2
    return base, lm


def _centre_off_stripe(img, r, c, panel=0):
    """The overlay pixel near the centre of image pixel (r, c), moved off the diagonal hatching."""
    x0 = LEFT + panel * (W * S + 10)
    y, x = TOP + r * S + S // 2, x0 + c * S + S // 2
    while ((x - x0) + (y - TOP)) % 8 < 2:
        x += 1
    return img[y, x].astype(int)


def test_each_label_is_filled_with_its_own_colour_and_others_are_not_tinted():
    base, lm = _scene()
    img = overlay_image(base, lm > 0, label_map=lm, names=["others", "cat", "dog"])
    colours = label_colours(np.full((H * S, W * S, 3), 100, np.uint8), [np.kron(lm, np.ones((S, S)))], 2)
    assert colours[1] != colours[2]
    for k, (r, c) in ((1, (8, 12)), (2, (25, 37))):
        want = 0.55 * 100 + 0.45 * np.array(colours[k])
        assert np.abs(_centre_off_stripe(img, r, c) - want).max() <= 1
    assert np.array_equal(_px(img, 16, 24), [100, 100, 100])  # "others" is not tinted


def test_a_label_on_an_object_of_its_palette_colour_gets_a_contrasting_fill():
    """A red fill on a red circle (and blue on blue) was nearly invisible: each label now takes the
    palette colour farthest from the pixels under it, and the outline and stripes show in any case."""
    base = np.full((H, W, 3), 230, np.uint8)
    lm = np.zeros((H, W), np.int32)
    lm[4:28, 4:22], lm[4:28, 26:44] = 1, 2
    base[lm == 1], base[lm == 2] = PALETTE[0], PALETTE[1]  # objects in the first two palette colours
    colours = label_colours(base, [lm], 2)
    for k in (1, 2):
        assert np.abs(np.subtract(colours[k], PALETTE[k - 1])).sum() > 200, colours
    img = overlay_image(base, lm > 0, label_map=lm, names=["others", "red", "blue"])
    for k, (r, c) in ((1, (16, 12)), (2, (16, 34))):
        inside = _centre_off_stripe(img, r, c)
        assert np.abs(inside - np.array(PALETTE[k - 1])).sum() > 100  # the fill changed the object's colour


def test_ground_truth_outline_is_drawn_on_its_edge_only():
    base, lm = _scene()
    gt = np.zeros((H, W), bool)
    gt[8:24, 8:40] = True
    img = overlay_image(base, lm > 0, label_map=lm, names=["others", "cat", "dog"], gt=gt)
    edge_y = TOP + 8 * S  # first scaled row of the ground truth
    assert np.array_equal(img[edge_y, LEFT + 20 * S], GT_COLOUR)
    assert not np.array_equal(img[edge_y + 3 * S, LEFT + 20 * S], GT_COLOUR)  # inside: no outline


def test_the_answer_grid_is_drawn_faintly_on_the_coarse_panel_only():
    base, lm = _scene()
    img = overlay_image(
        base, lm > 0, np.zeros((H, W), bool), label_map=lm, names=["others", "a", "b"], grid=(4, 4)
    )
    line_y = TOP + round(H * S / 4)  # the first horizontal cell boundary of a 4 x 4 grid
    col = LEFT + 2  # a background column left of any label
    assert np.abs(img[line_y, col].astype(int) - (0.75 * 100 + 0.25 * 255)).max() <= 1
    x1 = LEFT + W * S + 10 + 2
    assert np.array_equal(img[line_y, x1], [100, 100, 100])  # refined panel: no grid


def test_refined_panel_sits_beside_the_coarse_one_with_the_same_label_colours():
    base, lm = _scene()
    refined = np.zeros((H, W), np.int32)
    refined[5:11, 7:17] = 1
    alone = overlay_image(base, lm > 0, label_map=lm, names=["others", "cat", "dog"])
    both = overlay_image(base, lm > 0, refined, label_map=lm, names=["others", "cat", "dog"])
    assert both.shape[1] == alone.shape[1] + W * S + 10
    assert np.array_equal(_px(both, 8, 12, panel=1), _px(both, 8, 12, panel=0))
    assert np.array_equal(_px(both, 25, 37, panel=1), [100, 100, 100])  # dog not in the refined map


def test_query_text_adds_a_header_line(tmp_path):
    base, lm = _scene()
    plain = overlay_image(base, lm > 0)
    asked = overlay_image(base, lm > 0, query="Please segment the cat.")
    assert asked.shape[0] == plain.shape[0] + 20 + 6
    save_overlay(tmp_path / "o.png", base, lm > 0, lm > 0)
    assert Image.open(tmp_path / "o.png").size == (2 * W * S + 10 + 20, plain.shape[0])


def test_a_no_target_sample_gets_the_dashed_frame_the_legend_names():
    base, _ = _scene()
    empty = np.zeros((H, W), bool)
    img = overlay_image(base, empty, gt=empty)
    plain = overlay_image(base, empty)
    frame = img[TOP : TOP + 3, LEFT : LEFT + W * S].reshape(-1, 3)
    assert (frame == GT_COLOUR).all(axis=1).mean() > 0.4  # dashes along the top edge
    assert not (plain[TOP : TOP + 3, LEFT : LEFT + W * S].reshape(-1, 3) == GT_COLOUR).all(axis=1).any()


def test_long_legend_labels_are_wrapped_not_cut():
    base, lm = _scene()
    long = "the small person in a striped shirt standing behind the second blue car on the left " * 2
    short = overlay_image(base, lm > 0, label_map=lm, names=["others", "cat", "dog"])
    wrapped = overlay_image(base, lm > 0, label_map=lm, names=["others", long.strip(), "dog"])
    assert wrapped.shape[1] == short.shape[1]  # same width: the text goes on more lines
    assert wrapped.shape[0] >= short.shape[0] + 2 * 16
    legend = wrapped[TOP + H * S + 8 :, -12:]  # the right margin stays clear: nothing runs off
    assert (legend == legend[0, 0]).all()
