"""The real ms-swift path, offline, on CPU: ``text4seg train`` (-> ``swift sft``, LoRA) on a tiny LLaVA-HF
with JSONL from our synthetic builder, then ``text4seg export`` (-> ``swift export --merge_lora true``), then
inference on the merged model through ``text4seg.inference.predict``. About 1-3 minutes on 2 cores."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("swift")
pytest.importorskip("transformers")

from support.offline import offline_env  # noqa: E402

from data_builders import build_jsonl  # noqa: E402
from text4seg.demo.model import make_tiny_llava  # noqa: E402

STEPS = 20
SYNTH = {"image_size": "96x64", "semantic_rate": 0, "turns": 1}  # wide: a centre crop would cut
PLUGIN = Path(__file__).resolve().parents[1] / "recipes" / "text4seg_plugin.py"
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def _recipe(tmp: Path, model: Path, data: Path) -> Path:
    """A CPU recipe, flat like recipes/*.yaml (fast levers: bf16 autocast, no gradient checkpointing)."""
    text = f"""# tiny CPU recipe of the offline end-to-end test
model: {model}
model_type: llava1_5_hf
template: text4seg_llava1_5_hf
external_plugins: {PLUGIN}
check_model: false
dataset:
  - {data}
split_dataset_ratio: 0
tuner_type: lora
target_modules: all-linear
lora_rank: 16
lora_alpha: 32
lora_dropout: 0.0
freeze_vit: true
freeze_aligner: false
max_steps: {STEPS}
per_device_train_batch_size: 4
gradient_accumulation_steps: 1
learning_rate: 5.0e-3
warmup_ratio: 0.0
lr_scheduler_type: linear
use_cpu: true
bf16: true
fp16: false
gradient_checkpointing: false
dataloader_num_workers: 0
dataset_num_proc: 1
logging_steps: 1
save_steps: {STEPS}
output_dir: {tmp / "out"}
add_version: false
report_to: none
seed: 0
"""
    path = tmp / "tiny_llava_cpu.yaml"
    path.write_text(text)
    return path


def _centre_crop_like_the_release(model: Path) -> None:
    """Give the tiny model the released LLaVA-1.5 processor behaviour: short side -> 64, centre crop 64."""
    for name in PROCESSOR_FILES:
        cfg = json.loads((model / name).read_text())
        ip = cfg.get("image_processor", cfg)
        ip.update({"size": {"shortest_edge": 64}, "do_center_crop": True})
        (model / name).write_text(json.dumps(cfg))


def _crops(model: Path) -> list[bool]:
    out = []
    for name in PROCESSOR_FILES:
        cfg = json.loads((model / name).read_text())
        out.append(bool(cfg.get("image_processor", cfg).get("do_center_crop")))
    return out


def _logged_ids(log: str, tag: str) -> list[int]:
    m = re.search(rf"\[{tag}\] (\[[-\d, ]+\])", log)
    assert m, f"ms-swift did not log {tag}"
    return json.loads(m.group(1))


@pytest.mark.slow
def test_swift_lora_sft_trains_merges_and_predicts_offline(tmp_path: Path, monkeypatch):
    t0 = time.perf_counter()
    env = offline_env(tmp_path)
    train_jsonl, val_jsonl = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    build_jsonl(
        "synthetic", train_jsonl, root=tmp_path / "img", split="train", limit=64, options=SYNTH, stats=False
    )
    build_jsonl(
        "synthetic", val_jsonl, root=tmp_path / "img_val", split="val", limit=4, options=SYNTH, stats=False
    )
    rows = [json.loads(line) for line in train_jsonl.read_text().splitlines()]
    assert all("text4seg" in r for r in rows)  # our metadata key rides along; ms-swift must ignore it
    corpus = [m["content"] for r in rows for m in r["messages"]]
    model = make_tiny_llava(tmp_path / "tiny_llava", seed=0, corpus=corpus)
    _centre_crop_like_the_release(model)

    marks = {"setup": time.perf_counter() - t0}
    # 1. text4seg train -> validates the data, prints the swift command, runs swift sft
    recipe = _recipe(tmp_path, model, train_jsonl)  # --verbose: ms-swift logs the INPUT_IDS checked below
    cmd = [sys.executable, "-m", "text4seg.cli", "train", str(recipe), "--verbose"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    (tmp_path / "train.log").write_text(log)
    assert proc.returncode == 0, log[-3000:]
    assert f"data ok: {train_jsonl} (64 rows)" in proc.stdout
    printed = [ln for ln in proc.stdout.splitlines() if " sft --model " in ln]
    assert printed and printed[0].split()[0].endswith("swift")

    marks["train"] = time.perf_counter() - t0
    # 2. the loss went down (the trainer's own per-step log)
    losses = [
        json.loads(line).get("loss") for line in (tmp_path / "out" / "logging.jsonl").read_text().splitlines()
    ]
    losses = [x for x in losses if x is not None]
    assert len(losses) >= STEPS - 1
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.3, losses

    # 3. only the assistant turn is trained: the labels ms-swift built for its logged first sample
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    input_ids, labels = _logged_ids(log, "INPUT_IDS"), _logged_ids(log, "LABELS_IDS")
    assert len(input_ids) == len(labels)
    k = next(i for i, v in enumerate(labels) if v != -100)
    assert all(v == -100 for v in labels[:k]) and labels[k:] == input_ids[k:]
    prompt, target = tok.decode(input_ids[:k]), tok.decode(labels[k:])
    assert prompt.startswith("<s>USER: ") and prompt.endswith("ASSISTANT:") and "<image>" in prompt
    answers = {r["messages"][1]["content"]: r["messages"][0]["content"] for r in rows}
    assert target.endswith("</s>") and target[: -len("</s>")] in answers
    query = answers[target[: -len("</s>")]].replace("<image>", "")
    assert query in prompt  # the question (and the image) are in the masked part: not trained

    # 4. text4seg export -> swift export --merge_lora true
    ckpt = tmp_path / "out" / f"checkpoint-{STEPS}"
    merged = tmp_path / "merged"
    cmd = [sys.executable, "-m", "text4seg.cli", "export", str(ckpt), "--out", str(merged)]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert f"--adapters {ckpt} --merge_lora true --output_dir {merged}" in proc.stdout
    assert (merged / "model.safetensors").read_bytes() != (model / "model.safetensors").read_bytes()
    assert _crops(model) == [True, True] and _crops(merged) == [False, False]  # the merged model sees it all
    from transformers import AutoImageProcessor

    assert not AutoImageProcessor.from_pretrained(merged).do_center_crop

    marks["export"] = time.perf_counter() - t0
    # 5. inference on the merged model through the project's entry point
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "MODELSCOPE_CACHE", "HF_HOME"):
        monkeypatch.setenv(k, env[k])
    from text4seg.checkpoints.align import register_swift_templates
    from text4seg.inference.run import predict_jsonl

    register_swift_templates()  # merged/args.json names text4seg_llava1_5_hf

    results = predict_jsonl(
        merged,
        val_jsonl,
        tmp_path / "pred",
        model_type="llava1_5_hf",
        batch_size=4,
        overlays=False,
        max_new_tokens=96,  # a few rows show the trained format; the full 320-token budget triples the time
        progress=False,
    )
    records = [json.loads(line) for line in Path(results).read_text().splitlines()]
    assert len(records) == 4
    assert all(isinstance(r["answer"], str) and "parse_valid" in r for r in records)
    assert any("others *" in r["answer"] for r in records)  # the trained answer format shows up
    wall = time.perf_counter() - t0
    marks["predict"] = wall
    print(f"\nE2E: loss first3={first:.3f} last3={last:.3f} ({len(losses)} steps), wall {wall:.0f} s")
    print("E2E elapsed at the end of each phase (s):", {k: round(v) for k, v in marks.items()})
    print("E2E answer[0]:", records[0]["answer"][:120].replace("\n", "|"))
