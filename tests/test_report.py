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
from text4seg.data.jsonl import read_jsonl
from text4seg.data.records import write_jsonl
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


def _write_rows(tmp_path, n: int, empty: tuple[int, ...] = ()):
    """``n`` referring samples (prediction shifted by i % 7 cells: IoU from 1 down), ``empty`` ones
    with no target and answered "no target"; returns (gt path, results path)."""
    gt_rows, preds = [], []
    img = tmp_path / "img.png"
    Image.fromarray(np.full((H, W, 3), 150, np.uint8)).save(img)
    for i in range(n):
        gt = np.zeros((H, W), bool)
        pred = np.zeros((H, W), bool)
        if i not in empty:
            gt[16:48, 24:72] = True
            pred[16:48, 24 + 4 * (i % 7) : 72 + 4 * (i % 7)] = True
        stored = {"masks": [mask_to_rle(gt)], "label_map": "", "classes": [], "ignore": [], "boxes": []}
        meta = {"id": f"s{i:02d}", "task": "res", "labels": ["box"], "grid": [16, 16], "scheme": "rrle",
                "width": W, "height": H, "source": {}, "gt": stored}  # fmt: skip
        msgs = [
            {"role": "user", "content": "<image>Segment the box."},
            {"role": "assistant", "content": "ok"},
        ]
        gt_rows.append({"messages": msgs, "images": [str(img)], "text4seg": meta})
        preds.append({"id": f"s{i:02d}", "turn": 0, "image": str(img), "query": "Segment the box.",
                      "labels": ["box"], "answer": wrap(encode(mask_to_grid(pred, 16, labels="box"))),
                      "scheme": "rrle", "grid": [16, 16], "width": W, "height": H, "repairs": [],
                      "refined": None, "refined_labels": None, "num_tokens": 40})  # fmt: skip
    write_jsonl(gt_rows, tmp_path / "built.jsonl")
    write_jsonl(preds, tmp_path / "results.jsonl")
    return tmp_path / "built.jsonl", tmp_path / "results.jsonl"


def test_a_large_gallery_shows_the_worst_the_best_and_a_random_draw(tmp_path):
    from text4seg.evaluation.report import write_report

    gt, res = _write_rows(tmp_path, 30)
    assert main(
        ["evaluate", "--pred", str(res), "--gt", str(gt), "--out", str(tmp_path / "ev"), "--no-progress"]
    ) in (0, 1)
    rows = list(read_jsonl(tmp_path / "ev" / "per_sample.jsonl"))
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    page = write_report(tmp_path / "r.html", res, gt, metrics, rows, max_gallery=9).read_text()
    heads = re.findall(r"<h3>(.*?)</h3>", page)
    assert heads == ["the 3 worst", "the 3 best", "3 drawn at random from the other 24"]
    ranks = [int(r) for r in re.findall(r'data-rank="(\d+)"', page)]
    assert ranks[:3] == [1, 2, 3] and ranks[3:6] == [30, 29, 28]
    assert len(set(ranks)) == 9 and all(3 < r < 28 for r in ranks[6:])  # no card twice
    again = write_report(tmp_path / "r2.html", res, gt, metrics, rows, max_gallery=9).read_text()
    assert re.findall(r'data-rank="(\d+)"', again) == re.findall(r'data-rank="(\d+)"', page)  # seeded


def test_correct_empty_answers_are_counted_apart_from_real_hits(tmp_path):
    gt, res = _write_rows(tmp_path, 10, empty=(2, 5, 8))
    report = tmp_path / "r.html"
    argv = ["evaluate", "--pred", str(res), "--gt", str(gt), "--report", str(report), "--no-progress"]
    assert main(argv) in (0, 1)
    rows = list(read_jsonl(tmp_path / "per_sample.jsonl"))
    page = report.read_text()
    raw_bars = [int(c) for c in re.findall(r"<title>raw \[[0-9.]+, [0-9.]+\): (\d+)</title>", page)]
    targeted = [r["coarse"]["iou"] for r in rows if not r["coarse"]["gt_empty"]]
    assert raw_bars == iou_histogram(targeted) and sum(raw_bars) == 7
    assert re.search(r"<title>raw correct empty answers \(no target, answered none\): 3</title>", page)


def test_metric_names_are_readable_with_the_raw_key_in_small_print_and_tooltip(evaluated):
    page = evaluated["report"].read_text(encoding="utf-8")
    assert '<td title="ciou">cumulative IoU (cIoU) <small class="k">ciou</small></td>' in page
    assert '<td title="pr@0.5">precision at IoU 0.5 <small class="k">pr@0.5</small></td>' in page
    assert "no-target accuracy (N-acc)" in page
