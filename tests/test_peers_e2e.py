"""The peers' tasks through the real ms-swift path, offline, on CPU: a mixed file (``text4seg mix``) of
multi-expression (gRefCOCO) and interactive (COCO) rows trains a tiny LLaVA for a few LoRA steps, then
``text4seg predict`` answers one multi-expression query and one interactive query and ``text4seg
evaluate`` scores them in its ``peers`` block. Checks the plumbing, not the quality."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("swift")
pytest.importorskip("transformers")

from support.fakes import make_grefcoco  # noqa: E402
from support.offline import offline_env  # noqa: E402
from support.peers import make_coco_instances  # noqa: E402
from test_sft_e2e import _recipe  # noqa: E402

from data_builders import build_jsonl  # noqa: E402
from text4seg.cli import main  # noqa: E402
from text4seg.demo.model import make_tiny_llava  # noqa: E402

STEPS = 3


@pytest.mark.slow
def test_mixed_peer_tasks_train_and_predict_through_the_cli(tmp_path: Path, monkeypatch):
    import subprocess

    env = offline_env(tmp_path)
    make_grefcoco(tmp_path / "g", n_images=6)
    make_coco_instances(tmp_path / "c", split="train2017", n_images=2)
    multi, inter = tmp_path / "multi.jsonl", tmp_path / "inter.jsonl"
    build_jsonl("grefcoco-multi", multi, root=tmp_path / "g", split="train", skip_bad=True, with_gt=True)
    build_jsonl(
        "coco-interactive",
        inter,
        root=tmp_path / "c",
        split="train2017",
        with_gt=True,
        options={"kinds": "point,box"},
    )
    mixed = tmp_path / "mixed.jsonl"
    assert main(["mix", f"{multi}:1", f"{inter}:1", "--out", str(mixed), "--total", "8"]) == 0
    rows = [json.loads(x) for x in mixed.read_text().splitlines()]
    assert {r["text4seg"]["task"] for r in rows} == {"multi", "interactive"}
    corpus = [m["content"] for r in rows for m in r["messages"]]
    model = make_tiny_llava(tmp_path / "tiny", seed=0, corpus=corpus)
    recipe = _recipe(tmp_path, model, mixed)
    recipe.write_text(
        recipe.read_text()
        .replace("max_steps: 20", f"max_steps: {STEPS}")
        .replace("save_steps: 20", f"save_steps: {STEPS}")
    )
    cmd = [sys.executable, "-m", "text4seg.cli", "train", str(recipe)]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "MODELSCOPE_CACHE", "HF_HOME"):
        monkeypatch.setenv(k, env[k])
    from text4seg.checkpoints.align import register_swift_templates

    register_swift_templates()
    queries = tmp_path / "queries.jsonl"
    pick = [next(r for r in rows if r["text4seg"]["task"] == t) for t in ("multi", "interactive")]
    queries.write_text("".join(json.dumps(r) + "\n" for r in pick))
    out = tmp_path / "pred"
    argv = [
        "predict",
        "--model",
        str(model),
        "--adapters",
        str(tmp_path / "out" / f"checkpoint-{STEPS}"),
        "--model-type",
        "llava1_5_hf",
        "--template",
        "text4seg_llava1_5_hf",
        "--jsonl",
        str(queries),
        "--out",
        str(out),
        "--max-new-tokens",
        "24",
        "--no-overlays",
        "--no-progress",
    ]
    assert main(argv) == 0
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [r["text4seg"]["id"] for r in pick]
    assert all(isinstance(r["answer"], str) and r["num_tokens"] <= 24 for r in records)
    ev = [
        "evaluate",
        "--pred",
        str(out / "results.jsonl"),
        "--gt",
        str(queries),
        "--out",
        str(tmp_path / "ev"),
    ]
    assert main(ev) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["peers"]["multi"]["n"] == len(pick[0]["text4seg"]["labels"])
    assert metrics["peers"]["interactive"]["coarse"]["all"]["n"] == 1
