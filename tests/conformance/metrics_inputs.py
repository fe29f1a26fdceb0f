"""Deterministic inputs of the metrics conformance suite (tests/conformance/test_metrics_reference.py).

numpy only, so that the throwaway scripts that ran the references (their own environments) built the very
same arrays; the golden numbers in the test module were computed on these.
"""

from __future__ import annotations

import numpy as np

VOID = 255


# ----------------------------------------------------------------------------------------- semantic
def _rect_map(rng: np.random.RandomState, h: int, w: int, classes, ring: bool) -> np.ndarray:
    """A label map of background (0) with one rectangle per class id of ``classes`` (later ones on top),
    with a one-pixel void (255) ring around each when ``ring`` (VOC's boundary)."""
    lm = np.zeros((h, w), np.int64)
    for c in classes:
        y0, x0 = rng.randint(0, h - 2), rng.randint(0, w - 2)
        y1, x1 = rng.randint(y0 + 1, h + 1), rng.randint(x0 + 1, w + 1)
        if ring:
            lm[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1] = VOID
        lm[y0:y1, x0:x1] = c
    return lm


def _perturb(rng: np.random.RandomState, gt: np.ndarray, k: int) -> np.ndarray:
    """A prediction near ``gt``: shifted by up to 2 pixels, 10 % of pixels a random class, 3 % an unknown
    label (-1); void pixels answered with their neighbours' classes (the shift)."""
    pred = np.roll(gt, (rng.randint(-2, 3), rng.randint(-2, 3)), axis=(0, 1)).copy()
    pred[pred == VOID] = 0
    noise = rng.rand(*gt.shape)
    pred[noise < 0.10] = rng.randint(0, k, size=int((noise < 0.10).sum()))
    pred[noise > 0.97] = -1
    return pred


def semantic_cases() -> dict[str, tuple[int, list[tuple[np.ndarray, np.ndarray]]]]:
    """``{case: (K, [(pred, gt), ...])}``: integer label maps, gt 0 = background, 255 = void; pred -1 = a
    label that is not a class. The issue's painted example is built in the test (it needs text4seg)."""
    rng = np.random.RandomState(27)
    cases: dict[str, tuple[int, list]] = {}
    # VOC-20 (K = 21): every class present over 4 maps, void rings, shifted and noisy predictions
    pairs = []
    for i in range(4):
        gt = _rect_map(rng, 48, 64, range(1 + 5 * i, 6 + 5 * i), ring=True)
        pairs.append((_perturb(rng, gt, 21), gt))
    cases["voc20_all_classes"] = (21, pairs)
    # PC-59 (K = 60): a subset of the classes (the reference's K-mean then counts absent ones as 0)
    pairs = []
    for _ in range(2):
        gt = _rect_map(rng, 40, 30, rng.choice(np.arange(1, 60), 6, replace=False), ring=False)
        pairs.append((_perturb(rng, gt, 60), gt))
    cases["pc59_subset"] = (60, pairs)
    # ADE-150 (K = 151), the largest map: 512 x 683, every class a tile, 10 % noise
    gt = np.zeros((512, 683), np.int64)
    tiles = np.arange(1, 151)
    rng.shuffle(tiles)
    for n, c in enumerate(tiles):
        r, q = divmod(n, 13)
        gt[r * 42 : r * 42 + 40, q * 52 : q * 52 + 50] = c
    cases["ade150_largest"] = (151, [(_perturb(rng, gt, 151), gt)])
    # the smallest maps: 1 x 1
    one = np.ones((1, 1), np.int64)
    cases["smallest_1x1"] = (
        21,
        [(3 * one, 3 * one), (5 * one, 0 * one), (0 * one, 7 * one), (-one, 2 * one)],
    )
    # empty: all background answered background; all void answered with classes; all background
    # answered with a class
    z = np.zeros((8, 8), np.int64)
    cases["empty_background"] = (21, [(z, z)])
    cases["all_void"] = (21, [(np.arange(64).reshape(8, 8) % 21, z + VOID)])
    cases["background_answered_a_class"] = (21, [(z + 4, z), (z - 1, z)])
    return cases


# ------------------------------------------------------------------------------------------- DAVIS
def davis_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{case: (pred, gt)}``, ``(T, H, W)`` bool, every frame annotated (DAVIS val)."""
    rng = np.random.RandomState(17)
    cases = {}

    def moving(t: int, h: int, w: int, step: int, size: int) -> np.ndarray:
        m = np.zeros((t, h, w), bool)
        for i in range(t):
            y, x = min(2 + i * step, h - size), min(3 + i * step, w - size)
            m[i, y : y + size, x : x + size] = True
        return m

    gt = moving(8, 48, 64, 3, 16)
    cases["copy_first_frame"] = (np.repeat(gt[:1], 8, axis=0), gt)  # the item 5
    cases["good_tracker"] = (np.roll(gt, 1, axis=2) | (rng.rand(*gt.shape) > 0.995), gt)
    gt3 = moving(3, 20, 24, 2, 6)
    cases["three_frames"] = (np.roll(gt3, 1, axis=1), gt3)
    gt_big = moving(5, 480, 854, 40, 200)
    cases["largest_480x854"] = (np.roll(gt_big, (5, -7), axis=(1, 2)), gt_big)
    gone = gt.copy()
    gone[3:6] = False  # the object leaves the view for three frames
    cases["target_leaves"] = (np.roll(gone, 2, axis=1), gone)
    cases["empty_prediction"] = (np.zeros_like(gt), gt)
    return cases
