"""Interactive segmentation mIoU / cIoU per prompt kind against PSALM (issue 27): golden numbers computed
ONCE with the reference at a pinned commit on ``metrics_inputs.interactive_cases()``; the reference's code
is not copied, its outputs are facts written below.

Reference: github.com/zamling/PSALM at commit d5dbfdad0c9b51e6324f461ab886c28d9fc8e448,
``psalm/eval/region_segmentation.py``: ``compute_metric`` with its ``intersectionAndUnionGPU`` and
``AverageMeter`` unmodified (taken out of the module, which imports the model; one predicted mask per prompt,
score 0.9, so its top-1 is that mask), then ``evaluation()``'s closing lines ``ciou = (I / (U + 1e-10))[1]``,
``giou = avg[1]`` (PSALM's "gIoU" is the mIoU of its COCO-Interactive table), torch 2.x on CPU (int
``histc`` as CUDA). Golden per prompt kind and over all: ``(n, mIoU, cIoU)``, 6 decimals. PSALM's
per-sample IoU is I / (U + 1e-5), so ours is within 1e-5.

Ours: :func:`text4seg.evaluation.interactive.score_interactive` on result records whose ``refined`` mask
is the prediction (scored at full resolution) and rows whose ``ref_id`` names the prompt kind.
"""

from __future__ import annotations

import numpy as np
import pytest
from conformance.metrics_inputs import interactive_cases

from text4seg.data.results import ResultRecord
from text4seg.data.rle import mask_to_rle
from text4seg.evaluation.interactive import score_interactive

PSALM_GOLDEN = {  # zamling/PSALM@d5dbfdad compute_metric: (n, mIoU, cIoU)
    "point": (6, 0.511997, 0.472393),
    "scribble": (7, 0.432241, 0.322684),
    "box": (8, 0.472273, 0.489891),
    "mask": (9, 0.388074, 0.390244),
    "all": (30, 0.445617, 0.43619),
}


def _record(i: int, pred: np.ndarray) -> ResultRecord:
    h, w = pred.shape
    return ResultRecord(
        id=str(i), turn=0, image=None, query="", labels=["object"], answer="", scheme="rrle",
        grid=(1, 1), width=w, height=h, parse_valid=False, repairs=[], pred_labels=[], coarse=None,
        refined=mask_to_rle(pred), refined_labels=None, num_tokens=None, constrained=None, overlay=None,
        mask_png=None,
    )  # fmt: skip


def _scores() -> dict:
    items = []
    for kind, pairs in interactive_cases().items():
        for p, g in pairs:
            meta = {"gt": {"masks": [mask_to_rle(g)]}, "source": {"ref_id": f"{len(items)}:{kind}"}}
            items.append((_record(len(items), p), meta))
    return score_interactive(items)[0]["refined"]


@pytest.mark.parametrize("kind", sorted(PSALM_GOLDEN))
def test_interactive_miou_and_ciou_per_prompt_kind_are_psalms(kind):
    ours = _scores()[kind]
    n, miou, ciou = PSALM_GOLDEN[kind]
    assert ours["n"] == n
    assert (ours["miou"], ours["ciou"]) == pytest.approx((miou, ciou), abs=1e-5)
