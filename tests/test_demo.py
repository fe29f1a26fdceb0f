"""``text4seg demo --quick``: the whole path (builder -> swift sft -> predict -> evaluate) runs in-process.

Learning is not asserted here (a few training steps); the full demo's numbers are in docs/demo.md.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("swift")
pytest.importorskip("torch")

KEYS = (
    "ciou", "giou", "n_acc", "t_acc", "parse_valid", "parse_valid_constrained", "baseline_ciou",
    "tokens_per_answer", "train_seconds",
)  # fmt: skip


@pytest.mark.slow
def test_demo_quick_runs_the_whole_path(tmp_path, monkeypatch, capsys):
    from text4seg.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "loss" in printed and "cIoU" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    for key in KEYS:
        assert key in metrics, key
    assert metrics["train_seconds"] > 0
    assert 0.0 <= metrics["parse_valid"] <= 1.0
    assert metrics["parse_valid_constrained"] == 1.0  # the grammar guarantees it, trained or not
    assert 0.0 <= metrics["baseline_ciou"] <= 1.0
    assert metrics["tokens_per_answer"] > 0
    assert (out / "loss.png").stat().st_size > 0
    assert list((out / "overlays").glob("*.png"))
    assert (out / "train").glob("checkpoint-*")
    for split in ("test_greedy", "test_constrained"):
        rows = (out / "pred" / split / "results.jsonl").read_text().splitlines()
        assert len(rows) == metrics["n_test"]


def test_demo_rejects_a_bad_scheme(tmp_path, capsys):
    from text4seg.cli import main

    assert main(["demo", "--quick", "--scheme", "nope", "--out", str(tmp_path)]) == 2
    assert "'nope'" in capsys.readouterr().err
