"""The fast paths of ``text4seg evaluate`` (issue 31 item 2) refuse what the slow ones refused, with the
same one line naming the file, line, id and field: the reused strict JSON decoder (a line it cannot read
goes to ``parse_line``), the cached grid verdict, and the label mask equal to the checked ``refined``
union (not checked twice, never trusted without the union's own check). Run through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.hostile import cli, one_line_error, row, write_jsonl

from text4seg.cli import main
from text4seg.data.rle import mask_to_rle

FULL = mask_to_rle(np.ones((32, 48), bool))  # the rows' ground truth: the whole 32x48 image
OVER = {"size": [32, 48], "counts": "PP3"}  # runs of 64x48 pixels: pycocotools would write past the mask


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A 32x48 image, a built ground truth (ids a, b; grid 4x4, rrle) and its decoded results."""
    d = tmp_path_factory.mktemp("fastpaths")
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(d / "img.png")
    write_jsonl(d / "gt.jsonl", [row("a", str(d / "img.png")), row("b", str(d / "img.png"))])
    assert main(["decode", str(d / "gt.jsonl"), "--out", str(d / "dec"), "--no-progress"]) == 0
    return d


def _records(ws: Path) -> list[dict]:
    return [json.loads(x) for x in (ws / "dec" / "decoded.jsonl").read_text().splitlines()]


def _evaluate(ws: Path, tmp_path: Path, pred_lines: list, gt_lines: list | None = None):
    pred = write_jsonl(tmp_path / "res.jsonl", pred_lines)
    gt = write_jsonl(tmp_path / "gt.jsonl", gt_lines) if gt_lines is not None else ws / "gt.jsonl"
    proc = cli(["evaluate", "--pred", pred, "--gt", gt, "--out", tmp_path / "ev", "--no-progress"], tmp_path)
    return proc, pred, gt


def test_a_label_mask_equal_to_the_checked_refined_union_is_scored(ws, tmp_path):
    recs = _records(ws)
    recs[0].update(refined=FULL, refined_labels={"box": dict(FULL)})
    proc, _, _ = _evaluate(ws, tmp_path, recs)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    per = {
        r["id"]: r for r in map(json.loads, (tmp_path / "ev" / "per_sample.jsonl").read_text().splitlines())
    }
    assert per["a"]["refined"]["iou"] == 1.0 and "refined" not in per["b"]


@pytest.mark.parametrize(
    "refined,labels,field",
    [
        (FULL, {"box": FULL, "lid": OVER}, "refined_labels['lid'].counts"),  # another label: checked
        (OVER, {"box": OVER}, "refined.counts"),  # the union equal to its label: the union's check refuses
        (None, {"box": OVER}, "refined_labels['box'].counts"),  # no union: every label checked
    ],
    ids=["other_label_overflow", "union_and_label_overflow", "no_union_label_overflow"],
)
def test_a_label_mask_not_vouched_for_by_a_checked_union_is_refused(ws, tmp_path, refined, labels, field):
    recs = _records(ws)
    recs[0].update(refined=refined, refined_labels=labels)
    proc, pred, _ = _evaluate(ws, tmp_path, recs)
    one_line_error(proc, 2, f"{pred}:1", "'a'", field)
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize(
    "grid", [[0, 4], [4, 10**9], [True, 4], [4.0, 4]], ids=["zero", "huge", "bool", "float"]
)
def test_a_bad_grid_pair_is_refused_naming_the_field(ws, tmp_path, grid):
    recs = _records(ws)
    recs[0]["grid"] = grid
    proc, pred, _ = _evaluate(ws, tmp_path, recs)
    one_line_error(proc, 2, f"{pred}:1", "'a'", "grid")


BAD_LINES = {
    "nan": lambda line: line.replace("{", '{"x": NaN, ', 1),
    "bom": lambda line: "\ufeff" + line,
    "list": lambda line: f"[{line}]",
    "deep": lambda line: "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
@pytest.mark.parametrize("side", ["pred", "gt"])
def test_a_line_the_reused_decoder_cannot_read_gets_parse_lines_one_line_error(ws, tmp_path, kind, side):
    pred_lines = (ws / "dec" / "decoded.jsonl").read_text().splitlines()
    gt_lines = (ws / "gt.jsonl").read_text().splitlines()
    target = pred_lines if side == "pred" else gt_lines
    target[0] = BAD_LINES[kind](target[0])
    proc, pred, gt = _evaluate(ws, tmp_path, pred_lines, gt_lines)
    one_line_error(proc, 2, f"{pred if side == 'pred' else gt}:1")
    assert not (tmp_path / "ev").exists()


def test_a_line_that_is_not_utf8_is_refused_naming_the_byte(ws, tmp_path):
    pred_lines = (ws / "dec" / "decoded.jsonl").read_text().splitlines()
    pred = tmp_path / "res.jsonl"
    pred.write_bytes(pred_lines[0].replace('"turn"', '"t\xffrn"').encode("latin-1") + b"\n")
    proc = cli(["evaluate", "--pred", pred, "--gt", ws / "gt.jsonl", "--out", tmp_path / "ev"], tmp_path)
    one_line_error(proc, 2, f"{pred}:1", "not UTF-8")
