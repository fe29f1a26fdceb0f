"""``text4seg evaluate --report``: a self-contained HTML page (metrics, IoU histogram, gallery worst first),
checked against the per-sample scores and numpy's histogram, and screenshotted in headless chromium."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
from PIL import Image
from support.browser import screenshot, shots_dir

from text4seg import encode, mask_to_grid, wrap
from text4seg.cli import main
from text4seg.data.records import read_jsonl, write_jsonl
from text4seg.data.rle import mask_to_rle
from text4seg.evaluation.report import iou_histogram

H, W = 64, 96


@pytest.fixture
def evaluated(tmp_path):
    """Six referring samples whose predictions are shifted ground-truth boxes (IoU from 1 down to 0), one
    with a SAM-refined mask, plus their images; `text4seg evaluate --report` run on them."""
    rng = np.random.default_rng(0)
    gt_rows, preds = [], []
    for i in range(6):
        img = tmp_path / f"img{i}.png"
        a = (rng.integers(0, 60, (H, W, 3)) + 120).astype(np.uint8)
        a[16:48, 24:72] = (40, 150, 70)  # a green box; the mask is drawn in red
        Image.fromarray(a).save(img)
        gt = np.zeros((H, W), bool)
        gt[16:48, 24:72] = True
        pred = np.zeros((H, W), bool)
        pred[16:48, 24 + 10 * i : 72 + 10 * i] = True  # shift right: lower IoU for larger i
        gt_rows.append(
            {
                "messages": [
                    {"role": "user", "content": "<image>Segment the green box."},
                    {"role": "assistant", "content": "ok"},
                ],
                "images": [str(img)],
                "text4seg": {
                    "id": f"s{i}", "task": "res", "labels": ["green box"], "grid": [16, 16], "scheme": "rrle",
                    "width": W, "height": H, "source": {},
                    "gt": {"masks": [mask_to_rle(gt)], "label_map": "", "classes": [], "ignore": [],
                           "boxes": []},
                },
            }
        )  # fmt: skip
        answer = "Sure.\n" + wrap(encode(mask_to_grid(pred, 16, labels="green box")))
        refined = gt if i == 3 else None
        preds.append(
            {
                "id": f"s{i}", "turn": 0, "image": str(img), "query": "Segment the green box.",
                "labels": ["green box"],
                "answer": answer, "scheme": "rrle", "grid": [16, 16], "width": W, "height": H,
                "repairs": [], "refined": None if refined is None else mask_to_rle(refined),
                "refined_labels": None if refined is None else {"green box": mask_to_rle(refined)},
                "num_tokens": 40,
            }
        )  # fmt: skip
    gt_path, pred_path = tmp_path / "built.jsonl", tmp_path / "results.jsonl"
    write_jsonl(gt_rows, gt_path)
    write_jsonl(preds, pred_path)
    report = tmp_path / "report.html"
    argv = [
        "evaluate",
        "--pred",
        str(pred_path),
        "--gt",
        str(gt_path),
        "--report",
        str(report),
        "--no-progress",
    ]
    assert main(argv) == 0
    return {"report": report, "per_sample": list(read_jsonl(tmp_path / "per_sample.jsonl")), "tmp": tmp_path}


def test_report_is_one_self_contained_page(evaluated):
    page = evaluated["report"].read_text(encoding="utf-8")
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(href|src)="(https?:|/|\.)', page)  # nothing fetched from elsewhere
    metrics = json.loads(html.unescape(re.search(r'id="metrics">(.*?)</script>', page).group(1)))
    assert metrics["n"] == 6 and metrics["referring"]["refined"] is not None


def test_gallery_is_sorted_worst_first_by_the_best_available_iou(evaluated):
    page = evaluated["report"].read_text(encoding="utf-8")
    ids = re.findall(r'<div class="hd">#\d+ (s\d) turn', page)
    rows = {r["id"]: r for r in evaluated["per_sample"]}

    def score(sid):
        r = rows[sid]
        return (r.get("refined") or r["coarse"])["iou"]

    assert sorted(ids) == [f"s{i}" for i in range(6)]
    assert [score(s) for s in ids] == sorted(score(s) for s in ids)
    assert ids[-1] in ("s0", "s3")  # s0 is exact; s3's refined mask is the ground truth


def test_histogram_counts_equal_numpys(evaluated):
    ious = [r["coarse"]["iou"] for r in evaluated["per_sample"]]
    ref, _ = np.histogram(ious, bins=[k / 10 for k in range(11)])  # edges k/10; numpy closes the last bin
    assert iou_histogram(ious) == ref.tolist()
    page = evaluated["report"].read_text(encoding="utf-8")
    raw_bars = [int(c) for c in re.findall(r"<title>raw \[[0-9.]+, [0-9.]+\): (\d+)</title>", page)]
    assert raw_bars == ref.tolist()


@pytest.mark.slow
def test_report_screenshot_in_headless_chromium(evaluated):
    out = shots_dir(evaluated["tmp"]) / "report.png"
    screenshot(evaluated["report"].as_uri(), out, evaluated["tmp"] / "profile", size=(1280, 1700))
    im = np.asarray(Image.open(out).convert("RGB"))
    assert im.shape[1] == 1280 and im.std() > 10  # a rendered page, not a blank one
