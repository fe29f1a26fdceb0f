"""Every recipe in recipes/ parses, names only ms-swift arguments, and resolves in ms-swift's registries."""

from __future__ import annotations

from pathlib import Path

import pytest

from text4seg.training import recipes as train
from text4seg.training.recipe_file import load_recipe

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
DEMO_RECIPE = RECIPES_DIR / "demo.yaml"  # the CPU demo's recipe (text4seg demo), not a paper recipe
RECIPES = sorted(  # SFT recipes; the GRPO ones (grpo_*.yaml) are tested by tests/test_grpo.py
    p for p in RECIPES_DIR.glob("*.yaml") if not p.stem.startswith(("demo", "grpo_"))
)
PLUGIN = RECIPES_DIR / "text4seg_plugin.py"
TASK_EPOCHS = {"res": 5, "gres": 2, "semantic": 1}
PAPER = {  # Text4Seg table 7
    "tuner_type": "lora",
    "target_modules": "all-linear",
    "lora_rank": 64,
    "lora_alpha": 128,
    "lora_dropout": 0.05,
    "freeze_aligner": False,
    "freeze_llm": False,
    "learning_rate": 2e-4,
    "weight_decay": 0.0,
    "adam_beta1": 0.9,
    "adam_beta2": 0.95,
    "max_grad_norm": 1.0,
    "lr_scheduler_type": "linear",
    "warmup_ratio": 0.03,
    "bf16": True,
    "gradient_checkpointing": True,
    "deepspeed": "zero2",
}


def _task(path: Path) -> str:
    return path.stem.rsplit("_", 1)[1]


@pytest.fixture(scope="module")
def swift_registries():
    """ms-swift's model and template registries, with the text4seg plugin imported as `swift sft` would."""
    pytest.importorskip("swift")
    from swift.model import MODEL_MAPPING
    from swift.template import TEMPLATE_MAPPING
    from swift.utils import import_external_file

    import_external_file(str(PLUGIN))
    return MODEL_MAPPING, TEMPLATE_MAPPING


def test_the_required_backbones_and_tasks_have_recipes():
    names = {p.stem for p in RECIPES}
    for backbone in (
        "qwen2_5_vl_3b",
        "qwen2_5_vl_7b",
        "qwen3_vl_8b",
        "internvl3_8b",
        "llava1_5_7b",
        "llava1_5_13b",
    ):
        for task in TASK_EPOCHS:
            assert f"{backbone}_{task}" in names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_with_ms_swift_and_resolves(path: Path, swift_registries):
    model_mapping, template_mapping = swift_registries
    recipe = load_recipe(path)
    assert train.unknown_arguments(recipe, "sft") == []
    ns = train.parse_swift_args(recipe, "sft")  # ms-swift's own parser: types and choices
    assert ns.model == recipe["model"]
    meta = model_mapping[recipe["model_type"]]
    template = recipe["template"]
    assert template in template_mapping
    base_template = "llava1_5_hf" if template == "text4seg_llava1_5_hf" else template
    assert base_template in meta.candidate_templates
    registered = {m.hf_model_id for g in meta.model_groups for m in g.models} | {
        m.ms_model_id for g in meta.model_groups for m in g.models
    }
    if _task(path) == "gres":  # starts from the merged RES model of the same backbone
        res = load_recipe(path.with_name(path.stem[: -len("gres")] + "res.yaml"))
        assert recipe["model"] == f"{res['output_dir']}/merged"
        assert f"--adapters {res['output_dir']}/checkpoint-" in path.read_text()
    else:
        assert recipe["model"] in registered, (
            f"{recipe['model']!r} is not a {recipe['model_type']} model in ms-swift"
        )


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_uses_the_paper_hyper_parameters_and_a_global_batch_of_128(path: Path):
    recipe = load_recipe(path)
    for key, value in PAPER.items():
        assert recipe[key] == value, key
    assert recipe["freeze_vit"] is True
    assert recipe["num_train_epochs"] == {**TASK_EPOCHS, "video": 5}[_task(path)]
    assert train.global_batch(recipe) == 128
    assert recipe["ENV"]["NPROC_PER_NODE"] == 8
    text = path.read_text()
    gb = recipe["per_device_train_batch_size"], recipe["gradient_accumulation_steps"]
    assert f"Global batch 128 = {gb[0]} per GPU x {gb[1]} accumulation x 8 GPUs" in text
    assert f"swift sft recipes/{path.name}" in text  # the one command a user copies
    for word in ("NNODES", "NODE_RANK", "MASTER_ADDR", "Memory, per GPU:", "Time:"):
        assert word in text
    assert all(str(d).endswith(".jsonl") for d in recipe["dataset"])


@pytest.mark.parametrize("path", [p for p in RECIPES if "llava" in p.stem], ids=lambda p: p.stem)
def test_llava_recipes_feed_the_whole_image(path: Path):
    recipe = load_recipe(path)
    assert recipe["template"] == "text4seg_llava1_5_hf"
    assert recipe["external_plugins"] == "recipes/text4seg_plugin.py"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
@pytest.mark.parametrize(("gpus", "nnodes"), [(4, 1), (8, 2), (2, 1)])
def test_changing_gpus_or_nodes_keeps_each_recipes_global_batch_at_128(path: Path, gpus: int, nnodes: int):
    recipe = train.apply_overrides(
        load_recipe(path), train.parse_overrides([f"gpus={gpus}", f"nnodes={nnodes}"])
    )
    assert train.global_batch(recipe) == 128
    assert recipe["per_device_train_batch_size"] == load_recipe(path)["per_device_train_batch_size"]


def test_demo_recipe_parses_with_ms_swift_and_resolves(swift_registries):
    model_mapping, template_mapping = swift_registries
    recipe = load_recipe(DEMO_RECIPE)
    assert train.unknown_arguments(recipe, "sft") == []
    ns = train.parse_swift_args(recipe, "sft")
    assert ns.tuner_type == "full" and ns.max_steps == recipe["max_steps"]
    assert recipe["template"] in model_mapping[recipe["model_type"]].candidate_templates
    assert recipe["template"] in template_mapping
