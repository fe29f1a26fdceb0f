"""Every shipped recipe family runs as written: the real recipe file through ``swift sft``, export, predict.

Per family (Qwen2.5-VL, Qwen3-VL, InternVL3-hf, LLaVA-1.5-hf) the real ``recipes/<family>_res.yaml`` is
run with only what a CPU run must change overridden (model path -> a tiny random model of the
architecture with the released image settings and the real Qwen tokenizer where the family uses it;
dataset; max_steps 2; deepspeed off; batch 2; output dir; one process), on synthetic-builder data at
640x480 and 480x640. Checks: no row is over ``max_length`` (text4seg.training.lengths, with the recipe's
own template) and ms-swift trained on every row; LoRA wraps exactly the connector and the LLM linear
layers (vision tower frozen, as the headers say); ``text4seg export`` merges; predict on the merged model
works once :func:`text4seg.checkpoints.settings.prepare_engine` ran, and sees as many image tokens as
training did. Run with ``-s`` to see the measured numbers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("swift")
pytest.importorskip("transformers")

from support import tiny_families  # noqa: E402
from support.fakes import make_refer  # noqa: E402
from support.offline import offline_env  # noqa: E402

from data_builders import build_jsonl  # noqa: E402
from text4seg.training import recipes as train  # noqa: E402
from text4seg.training.recipe_file import load_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZES = ("640x480", "480x640")
# family: (recipe, factory, vision-tower prefixes (frozen), connector prefixes, image token id key)
FAMILIES = {
    "qwen2_5_vl": (
        "qwen2_5_vl_7b_res",
        "make_tiny_qwen2_5_vl_released",
        ("visual.blocks", "visual.patch_embed"),
        ("visual.merger",),
    ),
    "qwen3_vl": (
        "qwen3_vl_8b_res",
        "make_tiny_qwen3_vl",
        ("visual.blocks", "visual.patch_embed", "visual.pos_embed"),
        ("visual.merger", "visual.deepstack_merger_list"),
    ),
    "internvl": ("internvl3_8b_res", "make_tiny_internvl3", ("vision_tower",), ("multi_modal_projector",)),
    "llava1_5_hf": (
        "llava1_5_7b_res",
        "make_tiny_llava_released",
        ("vision_tower",),
        ("multi_modal_projector",),
    ),
}
LLM_PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

PREDICT = r"""
import json, sys
from pathlib import Path
merged, data, out, probe = sys.argv[1:5]
result = {}
from swift import TransformersEngine
if "text4seg_" in json.loads((Path(merged) / "args.json").read_text())["template"]:
    try:  # what `text4seg predict` did before prepare_engine: ms-swift builds the template from args.json
        TransformersEngine(merged)
    except ValueError as exc:
        result["without_prepare"] = str(exc)[:200]
from text4seg.cli import main  # the command users run: it must prepare the checkpoint itself
result["cli_rc"] = main(["predict", "--model", merged, "--jsonl", data, "--out", out, "--limit", "2",
                         "--batch-size", "2", "--max-new-tokens", "24", "--no-overlays", "--quiet"])
result["records"] = [json.loads(line) for line in (Path(out) / "results.jsonl").read_text().splitlines()]
from text4seg.inference.predict import Predictor
from text4seg.checkpoints.settings import prepare_engine
result["prepared"] = prepare_engine(merged)  # what predict applied (idempotent)
p = Predictor(merged, batch_size=2, max_new_tokens=24)
cfg = json.loads((Path(merged) / "config.json").read_text())
image_id = cfg.get("image_token_id", cfg.get("image_token_index"))
p.engine.template.set_mode("transformers")
row = {"messages": [{"role": "user", "content": "<image>Segment it."}], "images": [probe]}
result["probe_image_tokens"] = p.engine.template.encode(row)["input_ids"].count(image_id)
print("RESULT " + json.dumps(result))
"""


def _env(tmp: Path) -> dict[str, str]:
    """Offline, single process, this checkout first on the path; no pixel bounds from the caller."""
    path = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    return offline_env(tmp, unset=("MAX_PIXELS", "MIN_PIXELS"), PYTHONPATH=path)


def _data(tmp: Path) -> list[Path]:
    files = []
    for size in SIZES:
        out = tmp / f"synthetic_{size}.jsonl"
        options = {"image_size": size, "semantic_rate": 0, "turns": 1}
        build_jsonl(
            "synthetic", out, root=tmp / f"img_{size}", split="train", limit=2, options=options, stats=False
        )
        files.append(out)
    return files


def cpu_overrides(model: Path, data: list[Path], out: Path) -> dict:
    """What a 2-step CPU run must change in a real recipe; everything else stays as shipped."""
    return {
        "model": str(model),
        "check_model": False,
        "dataset": [str(p) for p in data],
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "deepspeed": None,
        "ENV.NPROC_PER_NODE": None,
        "use_cpu": True,
        "dataset_num_proc": 1,
        "dataloader_num_workers": 0,
        "save_steps": 2,
        "logging_steps": 1,
        "report_to": "none",
        "output_dir": str(out),
    }


def _lora_modules(ckpt: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(ckpt / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    return {
        re.sub(r"\.lora_[AB]\..*$", "", k).removeprefix("base_model.model.") for k in keys if ".lora_" in k
    }


def _probe_image(tmp: Path, family: str) -> Path:
    """An image above the Qwen budget (1024x768) so the pixel cap decides its tokens; 640x480 otherwise."""
    from PIL import Image

    path = tmp / "probe.png"
    Image.new("RGB", (1024, 768) if family.startswith("qwen") else (640, 480), (90, 20, 200)).save(path)
    return path


def _predict(tmp: Path, merged: Path, data: Path, probe: Path) -> dict:
    script = tmp / "predict_probe.py"
    script.write_text(PREDICT)
    args = [sys.executable, str(script), str(merged), str(data), str(tmp / "pred"), str(probe)]
    proc = subprocess.run(args, env=_env(tmp), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_real_recipe_trains_exports_and_predicts_on_real_image_sizes(family, tmp_path, capsys):
    t0 = time.perf_counter()
    recipe_name, factory, vision, connector = FAMILIES[family]
    recipe_path = REPO / "recipes" / f"{recipe_name}.yaml"
    data = _data(tmp_path)
    model = getattr(tiny_families, factory)(tmp_path / "model")
    out = tmp_path / "out"
    recipe = load_recipe(recipe_path)
    recipe = train.resolve_plugins(
        train.apply_overrides(recipe, cpu_overrides(model, data, out)), recipe_path
    )

    # 1. every row fits: encoded with the recipe's own template and processor settings (fresh process)
    probe = _probe_image(tmp_path, family)
    report = _lengths_in_subprocess(recipe, tmp_path, probe)
    assert report["over"] == [] and report["rows_checked"] == report["rows_total"] == 4, report
    assert report["refer_over"] == 0 and report["refer_rows"] > 0, report

    # 2. swift sft on the real recipe (+ CPU overrides), as `text4seg train` builds the command
    argv, env = train.swift_command(recipe, swift=train.swift_executable())
    proc = subprocess.run(
        argv, env={**_env(tmp_path), **env}, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    rows = re.findall(r"train_dataset: Dataset\(\{\s*features: \[[^\]]*\],\s*num_rows: (\d+)", log)
    assert rows and int(rows[-1]) == 4, "ms-swift dropped rows: " + str(rows)
    ckpt = out / "checkpoint-2"
    adapter = json.loads((ckpt / "adapter_config.json").read_text())
    wrapped = _lora_modules(ckpt)
    assert wrapped and not any(v in m for v in vision for m in wrapped), sorted(wrapped)  # frozen ViT
    assert any(connector[0] in m for m in wrapped), f"connector not wrapped: {sorted(wrapped)}"
    assert {m.rsplit(".", 1)[-1] for m in wrapped if "language_model" in m} == LLM_PROJECTIONS
    assert adapter["r"] == recipe["lora_rank"] and adapter["lora_alpha"] == recipe["lora_alpha"]
    train_s = time.perf_counter() - t0

    # 3. export (swift export --merge_lora) through the CLI
    merged = tmp_path / "merged"
    proc = subprocess.run(
        [sys.executable, "-m", "text4seg.cli", "export", str(ckpt), "--out", str(merged)],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    # 4. `text4seg predict` on the merged model (it prepares the checkpoint); the probe image gets the
    # training token count
    result = _predict(tmp_path, merged, data[0], probe)
    assert result["probe_image_tokens"] == report["probe_tokens"], (result, report)
    assert result["cli_rc"] == 0, result
    assert len(result["records"]) == 2 and all(isinstance(r["answer"], str) for r in result["records"])
    if family == "llava1_5_hf":  # the failure prepare_engine fixes: args.json names the plugin template
        assert "text4seg_llava1_5_hf" in result["without_prepare"], result
        assert result["prepared"]["registered"]
    if family.startswith("qwen"):  # the pixel budget travelled with the checkpoint
        assert result["prepared"]["env"] == {"MAX_PIXELS": str(recipe["max_pixels"])}
    wall = time.perf_counter() - t0
    with capsys.disabled():
        modules = sorted({m.rsplit(".", 1)[-1] for m in wrapped})
        parents = sorted({m.split(".layers.")[0] for m in wrapped})
        print(
            f"\nFAMILY {family}: image tokens {report['image_tokens']}, longest row {report['longest']} "
            f"(refCOCO-like {report['refer_longest']}) / "
            f"max_length {recipe['max_length']}, LoRA wraps {modules} in {parents}, probe tokens train/infer "
            f"{report['probe_tokens']}/{result['probe_image_tokens']}, train {train_s:.0f}s, wall {wall:.0f}s"
        )


LENGTHS = r"""
import json, sys
from collections import Counter
from text4seg.training import lengths
recipe = json.loads(sys.argv[1])
template = lengths.build_template(recipe)
report = lengths.check_lengths(recipe, template=template, sample=None)
cfg = json.load(open(recipe["model"] + "/config.json"))
image_id = cfg.get("image_token_id", cfg.get("image_token_index"))
tokens = {}
for path in recipe["dataset"]:
    row = json.loads(open(path).readline())
    enc = template.encode({"messages": row["messages"], "images": row["images"]})
    tokens[path.rsplit("_", 1)[-1].split(".")[0]] = enc["input_ids"].count(image_id)
probe = {"messages": [{"role": "user", "content": "<image>x"}, {"role": "assistant", "content": "y"}],
         "images": [sys.argv[2]]}
probe_tokens = template.encode(probe)["input_ids"].count(image_id)
over = [[r.file, r.line, r.length] for r in report.over]
refer = lengths.check_lengths({**recipe, "dataset": [sys.argv[3]]}, template=template, sample=None)
print("RESULT " + json.dumps({"probe_tokens": probe_tokens, "over": over, "refer_over": len(refer.over),
      "refer_longest": refer.longest.length, "refer_rows": refer.rows_total,
      "rows_checked": report.rows_checked, "rows_total": report.rows_total,
      "longest": report.longest.length, "image_tokens": tokens, "summary": report.summary()}))
"""


def _lengths_in_subprocess(recipe: dict, tmp: Path, probe: Path) -> dict:
    """check_lengths on the recipe's data and on refCOCO-like rows (``make_refer``: COCO image sizes,
    built by the refcoco builder), image tokens per data size and of ``probe``, in a fresh process
    (qwen-vl-utils reads MAX_PIXELS once per process)."""
    make_refer(tmp / "refer", "refcoco", n_images=4, splits=("train",))
    refer = tmp / "refcoco_train.jsonl"
    build_jsonl("refcoco", refer, root=tmp / "refer", split="train", stats=False)
    script = tmp / "lengths_probe.py"
    script.write_text(LENGTHS)
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(recipe), str(probe), str(refer)],
        env=_env(tmp),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULT ", 1)[1].splitlines()[0])
