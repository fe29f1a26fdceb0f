"""Metrics against the reference implementations that define them (issue 27): golden numbers computed
ONCE with the reference at a pinned commit, on the inputs of ``metrics_inputs.py`` (generated
deterministically, numpy only). The references' code is not copied; their outputs are facts written
below. A change that moves any number fails here.

* Semantic mIoU, official Text4Seg: github.com/mc-lan/Text4Seg at commit
  d6540b6b41d3595cfc0a3cf1b0016b617f7dadc0 (non-commercial licence: run, not copied),
  ``llava/eval/eval_semantic_seg.py``: ``intersectionAndUnionGPU(pred, gt, K, ignore_index=0)`` of
  ``llava/eval/utils.py`` (torch 2.x, float32 histograms) summed over the set, ``mean(I / (U + 1e-10))``
  over K = 21 / 60 / 151 classes; a label that is not a class is 0 (``translate_sequence``:
  ``labels_set.get(label, 0)``), so pred -1 was given to it as 0. Golden per case: ``(sum I, sum U,
  classes with U > 0, sha1(int64 [I; U])[:16], the reference's mIoU over K)``. Ours:
  ``semantic_counts(..., background=0, void_predictions=True)`` and the mean over classes with U > 0
  (``miou_with_background``): the per-class I and U are the reference's exactly; the means agree when
  every class occurs (a full benchmark split), else the reference counts each absent class as 0.
* J and F by the DAVIS 2017 semi-supervised protocol: github.com/davisvideochallenge/davis2017-evaluation
  at commit ac7c43fca936f9722837b7fbd337d284ba37004b, ``DAVISEvaluation._evaluate_semisupervised`` on the
  frames ``[1:-1]`` (what ``DAVISEvaluation.evaluate`` passes it for task ``semi-supervised``) and
  ``utils.db_statistics`` (mean), run with opencv-python-headless 4.x, scikit-image 0.26, numpy 2.x.
  Golden per case: ``(J mean, F mean)`` over the scored frames, 6 decimals.

Other metric families, pinned the same way in their own modules of this folder:

* PQ / SQ / RQ vs panopticapi ``pq_compute_single_core`` + ``pq_average``: test_panoptic_reference.py.
* referring cIoU / gIoU / N-acc / T-acc / Pr@X vs LISA (``train_ds.validate``) and ReLA
  (``ReferEvaluator.evaluate``), Ref-ZOM vs DMMI's ``test.evaluate``, multi-expression vs GSVA's
  ``solver.eval_gres``: test_referring_reference.py (the references' epsilons and crashes asserted as the
  degenerate-case table of ``text4seg/evaluation/metrics.py`` documents them).
* interactive mIoU / cIoU per prompt kind vs PSALM's ``compute_metric``: test_interactive_reference.py.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from conformance.metrics_inputs import davis_cases, semantic_cases

from text4seg.evaluation.metrics import semantic_counts, semantic_scores_from_counts
from text4seg.evaluation.video import davis_frames, j_and_f

# ------------------------------------------------------------------------------------------- semantic
SEMANTIC_GOLDEN = {  # mc-lan/Text4Seg@d6540b6b intersectionAndUnionGPU(..., ignore_index=0), summed
    "voc20_all_classes": (10340, 13265, 21, "f36895d13de15b2c", 0.429768),
    "pc59_subset": (2135, 2665, 45, "a0ccfbe26c7979eb", 0.112821),
    "ade150_largest": (297868, 401524, 151, "f397a5ad16486978", 0.75266),
    "smallest_1x1": (2, 6, 4, "62410df6aa7ee5f3", 0.063492),
    "empty_background": (64, 64, 1, "93a73258c93f686c", 0.047619),
    "all_void": (0, 64, 21, "1c4a97cef5b3de6c", 0.0),
    "background_answered_a_class": (128, 128, 1, "3034ba7ddadca957", 0.047619),
    "issue_cat_60x60": (3541, 3659, 2, "835e74e73c49a2e7", 0.091098),
}


def issue_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """The issue's example: a 60 x 60 VOC map with one 30 x 30 cat (class 8) at (3, 3), painted back from
    its 16 x 16 grid (R-RLE, PIL nearest) by the project's own decoder."""
    from data_builders.classes import PASCAL_VOC_20
    from text4seg import encode, mask_to_grid, wrap
    from text4seg.data.results import answer_to_masks

    classes = ["others", *PASCAL_VOC_20]
    gt = np.zeros((60, 60), np.int64)
    gt[3:33, 3:33] = 8
    grid = mask_to_grid(gt, 16, labels=classes, ignore_index=None)
    am = answer_to_masks(wrap(encode(grid)), 60, 60, 16)
    lut = np.array([classes.index(n) if n in classes else -1 for n in am.names])
    return [(lut[am.label_map], gt)]


def _cases() -> dict:
    cases = dict(semantic_cases())
    cases["issue_cat_60x60"] = (21, issue_pairs())
    return cases


def _ours(k: int, pairs) -> tuple[np.ndarray, np.ndarray]:
    inter, union = np.zeros(k, np.int64), np.zeros(k, np.int64)
    for pred, gt in pairs:
        i, u = semantic_counts(pred, gt, k, 255, background=0, void_predictions=True)
        inter += i
        union += u
    return inter, union


@pytest.mark.parametrize("case", sorted(SEMANTIC_GOLDEN))
def test_semantic_counts_with_background_are_the_official_text4seg_counts(case):
    k, pairs = _cases()[case]
    inter, union = _ours(k, pairs)
    s_i, s_u, n_scored, digest, ref_miou_k = SEMANTIC_GOLDEN[case]
    assert (int(inter.sum()), int(union.sum()), int((union > 0).sum())) == (s_i, s_u, n_scored)
    assert hashlib.sha1(np.stack([inter, union]).tobytes()).hexdigest()[:16] == digest
    ours = semantic_scores_from_counts(inter, union)
    if n_scored == k:  # every class occurs: our mean is the reference's
        assert ours["miou"] == pytest.approx(ref_miou_k, abs=1e-6)
    else:  # the reference averages absent classes in as 0
        assert ours["miou"] * n_scored / k == pytest.approx(ref_miou_k, abs=1e-6)


def test_the_issues_example_scores_the_official_0_9565():
    inter, union = _ours(21, issue_pairs())
    assert semantic_scores_from_counts(inter, union)["miou"] == pytest.approx(0.9565, abs=5e-5)


# ---------------------------------------------------------------------------------------------- DAVIS
DAVIS_GOLDEN = {  # davisvideochallenge/davis2017-evaluation@ac7c43fc, semi-supervised, frames [1:-1]
    "copy_first_frame": (0.145913, 0.075521),
    "empty_prediction": (0.0, 0.0),
    "good_tracker": (0.834932, 0.689848),
    "largest_480x854": (0.888351, 0.9975),
    "target_leaves": (0.888889, 0.765625),
    "three_frames": (0.714286, 1.0),
}


@pytest.mark.parametrize("case", sorted(DAVIS_GOLDEN))
def test_j_and_f_on_the_davis_protocols_frames_are_the_reference_numbers(case):
    pred, gt = davis_cases()[case]
    keep = davis_frames(gt.shape[0])
    scores = j_and_f([pred[keep]], [gt[keep]])
    j, f = DAVIS_GOLDEN[case]
    assert scores["j"] == pytest.approx(j, abs=1e-6) and scores["f"] == pytest.approx(f, abs=1e-6)
