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


# --------------------------------------------------------------------------------------- referring
def _box_mask(rng: np.random.RandomState, h: int, w: int) -> np.ndarray:
    """A bool mask with one random rectangle (at least 1 x 1)."""
    m = np.zeros((h, w), bool)
    y0, x0 = rng.randint(0, h), rng.randint(0, w)
    m[y0 : rng.randint(y0 + 1, h + 1), x0 : rng.randint(x0 + 1, w + 1)] = True
    return m


def _near(rng: np.random.RandomState, gt: np.ndarray) -> np.ndarray:
    """A prediction near ``gt``: shifted by up to 3 pixels, 2 % of pixels flipped."""
    pred = np.roll(gt, (rng.randint(-3, 4), rng.randint(-3, 4)), axis=(0, 1))
    return pred ^ (rng.rand(*gt.shape) < 0.02)


def referring_cases() -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """``{case: [(pred, gt), ...]}``, ``(H, W)`` bool masks (sizes vary within a case). An empty gt is a
    no-target sample, an empty pred the model's rejection; every reference was given exactly that
    (ReLA's ``empty`` flag = gt empty, its ``nt_label`` and GSVA's [REJ] = pred empty)."""
    rng = np.random.RandomState(2027)
    z = np.zeros
    cases: dict[str, list] = {}
    mixed = []
    for i in range(14):
        h, w = 24 + 4 * i, 40 - i
        gt = _box_mask(rng, h, w)
        kind = i % 7
        if kind == 5:  # no-target, rejected / no-target, answered
            mixed.append((z((h, w), bool), z((h, w), bool)))
        elif kind == 6:
            mixed.append((_box_mask(rng, h, w), z((h, w), bool)))
        elif kind == 4:  # targeted, rejected
            mixed.append((z((h, w), bool), gt))
        elif kind == 3:  # targeted, exact
            mixed.append((gt.copy(), gt))
        else:
            mixed.append((_near(rng, gt), gt))
    cases["mixed_gref"] = mixed
    t, f = np.ones((1, 1), bool), np.zeros((1, 1), bool)
    cases["smallest_1x1"] = [(t, t), (f, t), (t, f), (f, f)]
    big = [_box_mask(rng, 512, 683) for _ in range(2)]
    cases["largest_512x683"] = [(_near(rng, g), g) for g in big]
    cases["no_no_target"] = [(_near(rng, g), g) for g in (_box_mask(rng, 30, 30) for _ in range(5))]
    cases["all_no_target"] = [
        (z((16, 16), bool), z((16, 16), bool)),
        (_box_mask(rng, 16, 16), z((16, 16), bool)),
    ]
    cases["all_empty"] = [(z((8, 8), bool), z((8, 8), bool)) for _ in range(3)]
    cases["perfect"] = [(g.copy(), g) for g in (_box_mask(rng, 20, 20) for _ in range(3))]
    return cases


def multi_cases() -> dict[str, list[list[tuple[np.ndarray, np.ndarray]]]]:
    """``{case: [[(pred, gt) per expression] per image]}``: the referring cases grouped as GSVA's
    multi-expression samples (1 to 3 expressions of one image, one mask size per image). The added
    expressions keep the case's kind: absent targets (rejected in ``all_empty``) where the case has no
    target, exact ones in ``perfect``, near ones elsewhere."""
    rng = np.random.RandomState(4)
    out = {}
    for case, pairs in referring_cases().items():
        images = []
        for p, g in pairs:
            more = []
            for _ in range(rng.randint(3)):
                g2 = _box_mask(rng, *g.shape)
                if case == "all_empty":
                    more.append((np.zeros_like(g), np.zeros_like(g)))
                elif case == "all_no_target":
                    more.append((g2, np.zeros_like(g)))
                else:
                    more.append((g2.copy() if case == "perfect" else _near(rng, g2), g2))
            images.append([(p, g), *more])
        out[case] = images
    return out


def interactive_cases() -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """``{prompt kind: [(pred, gt), ...]}`` (PSALM's COCO-Interactive: one ground-truth mask per prompt,
    one predicted mask): near, empty, exact and 1 x 1 predictions."""
    rng = np.random.RandomState(9)
    out = {}
    for k, kind in enumerate(("point", "scribble", "box", "mask")):
        pairs = []
        for i in range(3 + k):
            g = _box_mask(rng, 20 + 7 * i, 33 - 2 * i)
            pairs.append((_near(rng, g), g))
        pairs.append((np.zeros_like(g), g))
        pairs.append((g.copy(), g))
        pairs.append((np.ones((1, 1), bool), np.ones((1, 1), bool)))
        out[kind] = pairs
    return out


# ---------------------------------------------------------------------------------------- panoptic
PanopticImage = tuple[np.ndarray, dict[int, int], np.ndarray, dict[int, int], set[int]]


def _pan_image(rng: np.random.RandomState, h: int, w: int, cats, crowd_cat=None, void=True) -> PanopticImage:
    """One image: gt segments = random rectangles (later on top) of ``cats``, a void border when ``void``,
    one crowd rectangle of ``crowd_cat``; the prediction shifts each gt segment, drops the last one
    (a false negative) and adds one spurious segment (a false positive)."""
    gmap = np.zeros((h, w), np.int64)
    gsegs: dict[int, int] = {}
    for n, c in enumerate(cats, start=1):
        gmap[_box_mask(rng, h, w)] = n
        gsegs[n] = int(c)
    crowd = set()
    if crowd_cat is not None:
        n = len(gsegs) + 1
        gmap[_box_mask(rng, h, w)] = n
        gsegs[n] = int(crowd_cat)
        crowd.add(n)
    if void:
        gmap[0, :] = 0
        gmap[:, -1] = 0
    gsegs = {k: v for k, v in gsegs.items() if (gmap == k).any()}
    crowd &= set(gsegs)
    pmap = np.zeros((h, w), np.int64)
    psegs: dict[int, int] = {}
    for k in sorted(set(gsegs) - crowd)[:-1]:
        moved = np.roll(gmap == k, (rng.randint(-2, 3), rng.randint(-2, 3)), axis=(0, 1))
        pmap[moved] = 100 + k
        psegs[100 + k] = gsegs[k]
    pmap[_box_mask(rng, max(h // 3, 1), max(w // 3, 1)).nonzero()] = 99
    psegs[99] = int(cats[0])
    psegs = {k: v for k, v in psegs.items() if (pmap == k).any()}
    return pmap, psegs, gmap, gsegs, crowd


def panoptic_cases() -> dict[str, tuple[dict[int, bool], list[PanopticImage]]]:
    """``{case: ({category: isthing}, [(pred id map, pred {id: category}, gt id map, gt {id: category},
    crowd gt ids), ...])}``; id 0 = void. Every category of the dict is one of panopticapi's categories."""
    rng = np.random.RandomState(31)
    cats = {1: True, 2: True, 3: True, 17: False, 18: False}
    cases: dict[str, tuple[dict, list]] = {}
    cases["mixed"] = (
        cats,
        [_pan_image(rng, 40 + 8 * i, 60 - 4 * i, [1, 17, 2, 18, 3], crowd_cat=1) for i in range(5)],
    )
    cases["largest_512x683"] = (cats, [_pan_image(rng, 512, 683, [1, 1, 2, 17, 18, 3, 3, 1], crowd_cat=2)])
    # IoU exactly 0.5 is no match (> 0.5): gt 4 pixels, prediction 2 of them
    g = np.array([[1, 1, 1, 1]])
    p = np.array([[5, 5, 0, 0]])
    cases["iou_exactly_half"] = (cats, [(p, {5: 1}, g, {1: 1}, set())])
    # the module docstring's worked example: void in the gt leaves the union
    cases["void_leaves_union"] = (
        cats,
        [(np.array([[5, 5, 0, 5]]), {5: 1}, np.array([[1, 1, 1, 0]]), {1: 1}, set())],
    )
    one = np.ones((1, 1), np.int64)
    cases["smallest_1x1"] = (
        cats,
        [
            (one, {1: 1}, one, {1: 1}, set()),
            (one, {1: 2}, one, {1: 1}, set()),
            (one, {1: 17}, 0 * one, {}, set()),
        ],
    )
    # a prediction over a crowd region of its category (ignored) and of another category (false positive)
    gmap = np.zeros((6, 6), np.int64)
    gmap[:, :3] = 1
    gmap[:, 3:] = 2
    pmap = np.zeros((6, 6), np.int64)
    pmap[:, :3] = 7
    pmap[:, 3:] = 8
    cases["crowd_regions"] = (cats, [(pmap, {7: 1, 8: 3}, gmap, {1: 1, 2: 2}, {1, 2})])
    gmap = np.zeros((10, 12), np.int64)
    gmap[2:6, 3:9] = 1
    gmap[7:, :] = 2
    cases["empty_prediction"] = (cats, [(np.zeros((10, 12), np.int64), {}, gmap, {1: 1, 2: 17}, set())])
    # the ground truth all void: every predicted segment is ignored, no category is scored
    cases["all_void_gt"] = (cats, [(pmap, {7: 1, 8: 3}, np.zeros((6, 6), np.int64), {}, set())])
    # two crowd regions of one category, a prediction over the first (panopticapi keeps the last crowd
    # segment per category: a documented difference) and a matched segment keeping category 1 scored
    gmap = np.zeros((4, 9), np.int64)
    gmap[:, 0:3], gmap[:, 3:6], gmap[:, 6:] = 1, 2, 3
    pmap = np.zeros((4, 9), np.int64)
    pmap[:, 0:3], pmap[:, 6:] = 7, 9
    cases["two_crowds_one_category"] = (cats, [(pmap, {7: 1, 9: 1}, gmap, {1: 1, 2: 1, 3: 1}, {1, 2})])
    return cases
