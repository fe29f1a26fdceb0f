"""Overlays for people: a colour per label, the ground-truth outline, the faint grid, coarse | refined."""

from __future__ import annotations

import numpy as np
from PIL import Image

from text4seg.data.overlay import GT_COLOUR, PALETTE, overlay_image, save_overlay

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


def test_each_label_is_filled_with_its_own_palette_colour():
    base, lm = _scene()
    img = overlay_image(base, lm > 0, label_map=lm, names=["others", "cat", "dog"])
    for k, (r, c) in ((1, (8, 12)), (2, (25, 37))):
        want = 0.45 * 100 + 0.55 * np.array(PALETTE[k - 1])
        assert np.abs(_px(img, r, c) - want).max() <= 1
    assert np.array_equal(_px(img, 16, 24), [100, 100, 100])  # "others" is not tinted


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
