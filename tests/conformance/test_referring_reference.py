"""Referring, Ref-ZOM and multi-expression scores against the evaluators that define them (issue 27):
golden numbers computed ONCE with each reference at a pinned commit, on ``metrics_inputs.referring_cases()``
/ ``multi_cases()``; the references' code is not copied, their outputs are facts written below.

Each reference was given exactly our conventions' inputs: no-target = empty ground truth (ReLA's ``empty``
flag, DMMI's ``source_type == 'zero'``), rejection = empty prediction (ReLA's ``nt_label``, GSVA's [REJ]).
The runs used torch 2.x on CPU with ``torch.histc`` taking int tensors as CUDA does (float histogram, cast
back), ``.cuda()`` a no-op and a one-process gloo group for the meters' ``all_reduce``.

* LISA: github.com/dvlab-research/LISA at commit 3cb2d4301f1af4691bd4f3938335ef06e76f155a, ``train_ds.py``
  ``validate`` (its body run as is on a fake engine) with ``utils/utils.py`` ``intersectionAndUnionGPU``
  and ``AverageMeter``. Golden: ``(gIoU, cIoU)``, 6 decimals. LISA's epsilons (IoU = I / (U + 1e-5),
  gIoU = sum / (count + 1e-5), float32 meters) keep it within 1e-5 of ours; on the all-empty set its
  cIoU is 0 (0 / 1e-10) where ours is 1 (metrics.py's degenerate-case table).
* ReLA: github.com/henghuiding/ReLA at commit 3ca955198da8ace68f8980b6fcbada0791cc51c2,
  ``gres_model/evaluation/refer_evaluation.py`` ``ReferEvaluator.process`` + ``evaluate`` unmodified
  (``distributed=False``, detectron2 imports stubbed). Golden: gIoU, cIoU, Pr@0.7/0.8/0.9 (percent),
  T_acc, N_acc. Equal to ours; where the set has no no-target sample ReLA reports T_acc = N_acc = 0 (ours:
  N-acc None, T-acc defined), and a set of no-target samples only crashes it (ZeroDivisionError, T_acc).
* Ref-ZOM: github.com/toggle1995/RIS-DMMI at commit 753cd600b14db2b0d8ec60bee49666ba5bfc4d54,
  ``test.py`` ``evaluate`` unmodified on a fake model / BERT / loader, its final locals read at return.
  Golden: oIoU (cum_I / cum_U), mIoU, Acc (one-to-zero), precision@0.5..0.9 over targeted samples, n
  targeted. Equal to ours (``refzom_scores``; Pr@X from ``referring_scores``); DMMI's Acc is nan without
  one-to-zero samples (ours None) and a set of one-to-zero samples only crashes it (``cum_I * 100. /
  cum_U``).
* GSVA: github.com/LeapLabTHU/GSVA at commit 618dc7957cd239442d1ecd45c8d575cf91b9ca8e, ``solver.py``
  ``eval_gres`` unmodified (dataset ``grefcoco``) with ``utils/meter.py`` ``AverageMeter``, one image per
  ``multi_cases()`` item, one [SEG] or [REJ] per expression. Golden: gIoU, cIoU, N_acc, T_acc. It divides
  by zero (N_acc or T_acc) on a set without no-target or without targeted expressions; there gIoU and
  cIoU were read from its meters with its own two closing expressions, and on a set without targeted
  expressions they fail too (its meters' sums stay floats: ``avg[1]`` is a TypeError). Its epsilons
  (IoU = I / (U + 1e-8), gIoU = sum / (count + 1e-5), float32) keep it within 1e-5 of ours.
"""

from __future__ import annotations

import math

import pytest
from conformance.metrics_inputs import multi_cases, referring_cases

from text4seg.evaluation.metrics import aggregate_referring, mask_stats, referring_scores
from text4seg.evaluation.multi import refzom_scores

EPS = 1e-5  # LISA's / GSVA's / PSALM's epsilons and float32 meters (module docstring)
CRASH = "ZeroDivisionError"


def _pairs(case: str):
    pairs = referring_cases()[case]
    return [p for p, _ in pairs], [g for _, g in pairs]


# ---------------------------------------------------------------------------------------------- LISA
LISA_GOLDEN = {  # dvlab-research/LISA@3cb2d430 train_ds.validate: (gIoU, cIoU)
    "mixed_gref": (0.426578, 0.309962),
    "smallest_1x1": (0.499996, 0.333333),
    "largest_512x683": (0.582616, 0.696263),
    "no_no_target": (0.392335, 0.550741),
    "all_no_target": (0.499997, 0.0),
    "all_empty": (0.999997, 0.0),
    "perfect": (0.999995, 1.0),
}


@pytest.mark.parametrize("case", sorted(LISA_GOLDEN))
def test_ciou_and_giou_are_lisas_up_to_its_epsilons(case):
    ours = referring_scores(*_pairs(case))
    giou, ciou = LISA_GOLDEN[case]
    assert ours["giou"] == pytest.approx(giou, abs=EPS)
    if case == "all_empty":  # documented: LISA 0 / (0 + 1e-10) = 0, ours 1 (nothing to find, nothing found)
        assert (ciou, ours["ciou"]) == (0.0, 1.0)
    else:
        assert ours["ciou"] == pytest.approx(ciou, abs=EPS)


# ---------------------------------------------------------------------------------------------- ReLA
RELA_GOLDEN = {  # henghuiding/ReLA@3ca95519 ReferEvaluator.evaluate()["grefcoco"]
    # case: (gIoU %, cIoU %, Pr@0.7 %, Pr@0.8 %, Pr@0.9 %, T_acc, N_acc)
    "mixed_gref": (42.657859, 30.996152, 20.0, 20.0, 20.0, 0.8, 0.5),
    "smallest_1x1": (50.0, 33.333333, 50.0, 50.0, 50.0, 0.5, 0.5),
    "largest_512x683": (58.261879, 69.626323, 50.0, 0.0, 0.0, 0.0, 0.0),
    "no_no_target": (39.233548, 55.074116, 0.0, 0.0, 0.0, 0.0, 0.0),
    "perfect": (100.0, 100.0, 100.0, 100.0, 100.0, 0.0, 0.0),
    "all_no_target": CRASH,
    "all_empty": CRASH,
}


@pytest.mark.parametrize("case", sorted(RELA_GOLDEN))
def test_referring_scores_are_relas(case):
    ours = referring_scores(*_pairs(case))
    ref = RELA_GOLDEN[case]
    if ref == CRASH:  # documented: ReLA divides T_acc by 0 without targeted samples; ours: None
        assert ours["n_targeted"] == 0 and ours["t_acc"] is None and ours["pr@0.7"] is None
        return
    giou, ciou, *pr, t_acc, n_acc = ref
    got = [100 * ours["giou"], 100 * ours["ciou"], *(100 * ours[f"pr@{t}"] for t in (0.7, 0.8, 0.9))]
    assert got == pytest.approx([giou, ciou, *pr], abs=1e-4)
    if ours["n_no_target"]:
        assert (ours["t_acc"], ours["n_acc"]) == pytest.approx((t_acc, n_acc), abs=1e-6)
    else:  # documented: ReLA reports both as 0 without no-target samples; ours N-acc None, T-acc defined
        assert (t_acc, n_acc) == (0.0, 0.0) and ours["n_acc"] is None and ours["t_acc"] == 1.0


# ---------------------------------------------------------------------------------------- Ref-ZOM
DMMI_GOLDEN = {  # toggle1995/RIS-DMMI@753cd600 test.evaluate: (oIoU, mIoU, Acc, precision@0.5..0.9, n)
    "mixed_gref": (0.461196, 0.39721, 0.5, (0.3, 0.3, 0.2, 0.2, 0.2), 10),
    "smallest_1x1": (0.5, 0.5, 0.5, (0.5, 0.5, 0.5, 0.5, 0.5), 2),
    "largest_512x683": (0.696263, 0.582619, math.nan, (0.5, 0.5, 0.5, 0.0, 0.0), 2),
    "no_no_target": (0.550741, 0.392335, math.nan, (0.4, 0.4, 0.0, 0.0, 0.0), 5),
    "perfect": (1.0, 1.0, math.nan, (1.0, 1.0, 1.0, 1.0, 1.0), 3),
    "all_no_target": CRASH,
    "all_empty": CRASH,
}


@pytest.mark.parametrize("case", sorted(DMMI_GOLDEN))
def test_refzom_scores_are_dmmis(case):
    preds, gts = _pairs(case)
    ours = refzom_scores([mask_stats(p, g) for p, g in zip(preds, gts)])
    ref = DMMI_GOLDEN[case]
    if ref == CRASH:  # documented: DMMI's cum_I * 100. / cum_U with no one-to-one/many sample
        assert ours["n_targeted"] == 0 and ours["oiou"] is None and ours["miou"] is None
        assert ours["acc"] == referring_scores(preds, gts)["n_acc"]
        return
    oiou, miou, acc, pr, n = ref
    assert (ours["oiou"], ours["miou"]) == pytest.approx((oiou, miou), abs=1e-6)
    assert ours["n_targeted"] == n
    if math.isnan(acc):  # DMMI: np.mean of no one-to-zero sample; ours None
        assert ours["acc"] is None
    else:
        assert ours["acc"] == pytest.approx(acc, abs=1e-6)
    prs = referring_scores(preds, gts)
    assert [prs[f"pr@{t}"] for t in (0.5, 0.6, 0.7, 0.8, 0.9)] == pytest.approx(list(pr), abs=1e-6)


# ---------------------------------------------------------------------------------------------- GSVA
GSVA_GOLDEN = {  # LeapLabTHU/GSVA@618dc795 solver.eval_gres (grefcoco): (gIoU, cIoU, N_acc, T_acc)
    "mixed_gref": (0.345849, 0.389528, 0.5, 0.916667),
    "smallest_1x1": (0.818181, 0.8, 0.5, 0.888889),
    # ZeroDivisionError at N_acc (no no-target expression): gIoU / cIoU from its meters
    "largest_512x683": (0.371814, 0.561893, CRASH, 1.0),
    "no_no_target": (0.321097, 0.504815, CRASH, 1.0),
    "perfect": (0.999998, 1.0, CRASH, 1.0),
    # ZeroDivisionError at T_acc (no targeted expression); gIoU / cIoU a TypeError too
    "all_no_target": ("TypeError", "TypeError", 0.2, CRASH),
    "all_empty": ("TypeError", "TypeError", 1.0, CRASH),
}


@pytest.mark.parametrize("case", sorted(GSVA_GOLDEN))
def test_multi_expression_scores_are_gsvas(case):
    ours = aggregate_referring([mask_stats(p, g) for image in multi_cases()[case] for p, g in image])
    for key, ref in zip(("giou", "ciou", "n_acc", "t_acc"), GSVA_GOLDEN[case]):
        if ref == CRASH:  # documented: GSVA divides by 0; ours None
            assert ours[key] is None, key
        elif ref == "TypeError":  # GSVA has no number; ours is defined (no targeted expression)
            assert ours["n_targeted"] == 0 and ours[key] is not None, key
        else:
            assert ours[key] == pytest.approx(ref, abs=EPS), key
