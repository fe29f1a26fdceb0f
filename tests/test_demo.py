"""``text4seg demo --quick``: the whole path (builder -> swift sft -> predict -> evaluate) runs in-process.

Learning is not asserted here (a few training steps); the full demo's numbers are in docs/demo.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("swift")
pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
KEYS = (
    "ciou",
    "giou",
    "n_acc",
    "t_acc",
    "parse_valid",
    "parse_valid_constrained",
    "baseline_ciou",
    "tokens_per_answer",
    "train_seconds",
)


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    """The package built as a wheel and installed (no dependencies) into a folder of its own: the folder
    goes first on PYTHONPATH, so the demo runs from the installed files, not from this checkout."""
    root = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", root, REPO], check=True)
    (whl,) = root.glob("text4seg-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", root / "site", whl], check=True)
    return root / "site"


@pytest.mark.slow
def test_demo_quick_runs_the_whole_path_from_an_installed_wheel(tmp_path, wheel_site):
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(wheel_site), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.update(HF_HOME=str(tmp_path / "hf"), MODELSCOPE_CACHE=str(tmp_path / "ms"))
    code = (
        "import sys, text4seg; from text4seg.cli import main; print('from', text4seg.__file__); "
        "sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "demo", "--quick", "--out", out],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"from {wheel_site / 'text4seg' / '__init__.py'}" in proc.stdout
    printed = proc.stdout
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
    overlays = sorted((out / "overlays").glob("*.png"))
    assert overlays
    # quiet by default: the demo's own lines, none of ms-swift's INFO lines, trust notes or torch warnings
    for noise in ("[INFO:swift]", "trust_remote_code", "FutureWarning", "UserWarning"):
        assert noise not in proc.stdout + proc.stderr, noise
    assert len(printed.splitlines()) <= 32, printed  # measured 27 on stdout (the bars go to stderr)
    from text4seg.data.overlay import GT_COLOUR

    yellow = [(np.asarray(Image.open(p).convert("RGB")) == GT_COLOUR).all(-1).sum() for p in overlays]
    assert min(yellow) > 0  # every held-out overlay outlines its ground truth (or frames a no-target one)
    ckpt = out / "train" / "checkpoint-4"  # QUICK trains 4 steps; the checkpoint is what gets evaluated
    assert (ckpt / "model.safetensors").stat().st_size > 0 and (ckpt / "config.json").is_file()
    for split in ("test_greedy", "test_constrained"):
        rows = (out / "pred" / split / "results.jsonl").read_text().splitlines()
        assert len(rows) == metrics["n_test"]


@pytest.mark.slow
def test_demo_quick_rl_reports_before_after_and_a_matched_compute_control(tmp_path, monkeypatch):
    from text4seg.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--rl", "--scheme", "compact", "--out", str(out), "--quiet"]) == 0
    rl = json.loads((out / "metrics.json").read_text())["rl"]
    assert rl["steps"] == 2 and len(rl["mean_reward_per_step"]) == 2 and rl["seconds"] > 0
    for key in ("ciou", "n_acc", "t_acc", "parse_valid"):
        assert f"{key}_before" in rl and f"{key}_after" in rl
    control = rl["control"]
    assert 0.0 <= control["ciou"] <= 1.0
    # stopped at the first 2-second poll past the GRPO run's seconds
    assert rl["seconds"] <= control["seconds"] <= rl["seconds"] + 5
    assert rl["ciou_gain_over_control"] == pytest.approx((rl["ciou_after"] or 0) - (control["ciou"] or 0))
    # the control continues the SFT on the SFT's own training rows, not on the RL subset
    assert Path(control["dataset"]) == out / "data" / "train.jsonl"
    assert (out / "rl_reward.png").stat().st_size > 0


@pytest.mark.parametrize(
    "argv", [["--scheme", "nope"], ["--from-scratch"]], ids=["bad-scheme", "from-scratch"]
)
def test_demo_rejects_unknown_schemes_and_flags_before_any_work(tmp_path, capsys, argv):
    from text4seg.cli import main

    assert main(["demo", "--quick", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: " in err[0] and argv[-1] in err[0]
    assert not (tmp_path / "out").exists()


def test_demo_recipe_is_the_recipe_file_with_the_runs_values_filled_in(tmp_path):
    from text4seg.demo.config import FULL, QUICK
    from text4seg.demo.train import demo_recipe, demo_steps
    from text4seg.training.recipe_file import load_recipe

    base = load_recipe(FULL.recipe)
    full = demo_recipe(FULL, tmp_path / "m", tmp_path / "t.jsonl", tmp_path / "o", "cpu")
    assert full["model"] == str(tmp_path / "m") and full["dataset"] == str(tmp_path / "t.jsonl")
    assert full["output_dir"] == str(tmp_path / "o") and full["use_cpu"] is True
    run_keys = ("model", "dataset", "output_dir", "use_cpu")
    assert {k: v for k, v in full.items() if k not in run_keys} == {
        k: v for k, v in base.items() if k not in run_keys
    }
    assert demo_steps(FULL) == base["max_steps"] == 2000
    quick = demo_recipe(QUICK, tmp_path / "m", tmp_path / "t.jsonl", tmp_path / "o", "cuda")
    assert quick["max_steps"] == demo_steps(QUICK) == 4 and quick["per_device_train_batch_size"] == 4
    assert quick["use_cpu"] is False
    # the GRPO stage: the config's default steps are the recipe's own (one number, not two that drift)
    assert load_recipe(FULL.rl_recipe)["max_steps"] == FULL.rl_steps
