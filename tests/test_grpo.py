"""GRPO through ms-swift: the recipes parse with ms-swift's own rlhf parser, the reward plugin registers
our rewards, and a real ``swift rlhf --rlhf_type grpo`` run on CPU logs rewards computed by our codec."""

import importlib.util
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from text4seg.descriptors import encode, wrap
from text4seg.training.recipe_file import load_recipe
from text4seg.training.recipes import parse_swift_args, resolve_plugins, unknown_arguments
from text4seg.training.rewards import DEFAULT_WEIGHTS, ROW_REWARDS, rollout_regex, score_rows

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
GRPO_RECIPES = sorted(RECIPES.glob("grpo_*.yaml"))


def test_there_are_grpo_recipes_for_both_backbones_and_tasks():
    names = {p.stem for p in GRPO_RECIPES}
    for backbone in ("qwen2_5_vl_7b", "qwen3_vl_8b"):
        for task in ("res", "gres"):
            assert f"grpo_{backbone}_{task}" in names


@pytest.mark.parametrize("path", GRPO_RECIPES, ids=lambda p: p.stem)
def test_grpo_recipe_parses_with_ms_swift_rlhf_parser(path):
    recipe = resolve_plugins(load_recipe(path), path)
    assert unknown_arguments(recipe, "rlhf") == []
    ns = parse_swift_args(recipe, "rlhf")
    assert ns.rlhf_type == "grpo"
    assert set(ns.reward_funcs) <= set(ROW_REWARDS)
    assert len(ns.reward_weights) == len(ns.reward_funcs)
    # every recipe uses the documented weights (text4seg.training.rewards.DEFAULT_WEIGHTS)
    assert dict(zip(ns.reward_funcs, ns.reward_weights, strict=True)) == {
        k: DEFAULT_WEIGHTS[k] for k in ns.reward_funcs
    }
    assert Path(recipe["external_plugins"]).name == "text4seg_rewards.py"
    assert Path(recipe["external_plugins"]).exists()


@pytest.mark.parametrize("path", [p for p in GRPO_RECIPES if p.stem != "grpo_demo"], ids=lambda p: p.stem)
def test_rollout_regex_of_recipe_is_the_schemes_and_accepts_built_answers(path):
    regex = load_recipe(path)["structured_outputs_regex"]
    assert regex == rollout_regex("rrle", 16)
    g = np.full((16, 16), "others", dtype=object)
    g[4:9, 2:12] = "the man on the left"
    for grid in (g, np.full((16, 16), "others")):
        assert re.fullmatch(regex, "Sure, here is the mask:\n" + wrap(encode(grid, "rrle")))
    assert not re.fullmatch(regex, wrap("others *16\n" * 3))  # 3 rows, not 16


def _plugin():
    spec = importlib.util.spec_from_file_location("text4seg_rewards_plugin", RECIPES / "text4seg_rewards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plugin_registers_every_reward_under_its_name():
    from swift.rewards import orms

    from text4seg.data.rle import mask_to_rle

    _plugin()
    mask = np.zeros((8, 8), bool)
    mask[:4, :4] = True
    meta = {
        "id": "a",
        "labels": ["dog"],
        "grid": [4, 4],
        "scheme": "rrle",
        "gt": {"masks": [mask_to_rle(mask)]},
    }
    empty = wrap(encode(np.full((4, 4), "others"), "rrle"))
    for name in ROW_REWARDS:
        reward = orms[name]()
        texts = [empty, "no", wrap("dog *2| others *2\n dog *2| others *2\n others *4\n others *4\n")]
        got = reward(completions=texts, text4seg=[meta] * 3)
        assert got == score_rows(name, texts, [meta] * 3)
        assert got[2] == 1.0 and got[1] == 0.0


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory):
    """Two GRPO steps of the demo's tiny model (random weights) on one repeated row, on CPU."""
    from text4seg.data.jsonl import read_jsonl
    from text4seg.data.records import write_jsonl
    from text4seg.demo import QUICK
    from text4seg.demo.data import all_labels, build_splits, tokenizer_corpus
    from text4seg.demo.model import make_demo_model
    from text4seg.demo.rl import grpo_recipe, suppress_image_token
    from text4seg.demo.train import train

    out = tmp_path_factory.mktemp("grpo")
    cfg = replace(QUICK, scheme="compact", num_train=8, num_val=1, num_test=1, rl_steps=2)
    paths = build_splits(out / "data", cfg)
    model = make_demo_model(out / "model", all_labels(paths.values()), tokenizer_corpus(paths["train"]), cfg)
    suppress_image_token(model)
    row = next(read_jsonl(paths["train"]))
    write_jsonl([row] * 4, out / "rl.jsonl")  # one row: every logged completion has the same ground truth
    recipe = grpo_recipe(cfg, model, out / "rl.jsonl", out / "train", "cpu")
    recipe.update(max_completion_length=24, beta=0.0)
    result = train(recipe, log=lambda *_: None)
    return out / "train", row, result


@pytest.mark.slow
def test_swift_grpo_logs_the_rewards_of_our_codec_every_step(grpo_run):
    train_dir, row, result = grpo_run
    assert result["checkpoint"].name == "checkpoint-2"
    steps = [r for r in result["log"] if "reward" in r]
    assert len(steps) == 2
    for rec in steps:
        for name in ("text4seg_iou", "text4seg_format", "text4seg_reject"):
            assert f"rewards/{name}/mean" in rec
    # every logged completion's rewards are what our functions give for that text and the row
    tables = [json.loads(line) for line in (train_dir / "completions.jsonl").read_text().splitlines()]
    logged_steps = set()
    for table in tables:
        for name in ("text4seg_iou", "text4seg_format", "text4seg_reject"):
            want = score_rows(name, table["completion"], [row["text4seg"]] * len(table["completion"]))
            assert table[name] == pytest.approx(want)
        logged_steps.update(table["step"])
    assert logged_steps == {"1", "2"}


def test_rl_rows_balance_absent_targets(tmp_path):
    from text4seg.data.records import write_jsonl
    from text4seg.demo.rl import is_absent, rl_rows

    def row(i, empty):
        g = np.full((16, 16), "others", dtype=object)
        if not empty:
            g[i % 16, :3] = "the red circle"
        answer = "Here is the mask.\n" + wrap(encode(g, "compact"))
        meta = {"grid": [16, 16], "scheme": "compact", "id": str(i)}
        return {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}],
            "text4seg": meta,
        }

    rows = [row(i, i % 4 == 0) for i in range(40)]  # 25 % absent, like the demo's data
    write_jsonl(rows, tmp_path / "t.jsonl")
    picked = rl_rows(tmp_path / "t.jsonl", 16, seed=0)
    assert len(picked) == 16 and sum(is_absent(r) for r in picked) == 8
    assert len({r["text4seg"]["id"] for r in picked}) == 16
    with pytest.raises(ValueError, match="12 absent"):
        rl_rows(tmp_path / "t.jsonl", 20, seed=0, absent_fraction=0.6)  # the file has 10


def test_reward_history_and_plot_from_a_grpo_log(tmp_path):
    from text4seg.demo.rl import plot_rewards, reward_history

    log = [
        {
            "loss": 0.1,
            "reward": 0.5,
            "reward_std": 0.2,
            "frac_reward_zero_std": 0.25,
            "rewards/text4seg_iou/mean": 0.3,
            "rewards/text4seg_iou/std": 0.1,
            "global_step/max_steps": "1/2",
        },
        {
            "loss": 0.1,
            "reward": 0.9,
            "reward_std": 0.1,
            "frac_reward_zero_std": 0.5,
            "rewards/text4seg_iou/mean": 0.6,
            "global_step/max_steps": "2/2",
        },
        {"train_runtime": 3.0, "global_step/max_steps": "2/2"},
    ]
    hist = reward_history(log)
    assert [h["step"] for h in hist] == [1, 2] and [h["reward"] for h in hist] == [0.5, 0.9]
    assert "rewards/text4seg_iou/std" not in hist[0] and hist[1]["rewards/text4seg_iou/mean"] == 0.6
    plot_rewards(hist, tmp_path / "r.png", {"text4seg_iou": 1.0, "text4seg_reject": 0.0})
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reward_legend_names_each_terms_weight_and_marks_weight_zero_as_logged_only():
    from text4seg.demo.rl import term_label

    weights = {"text4seg_iou": 1.0, "text4seg_format": 0.5, "text4seg_reject": 0.0}
    assert term_label("text4seg_iou", weights) == "text4seg_iou (weight 1)"
    assert term_label("text4seg_format", weights) == "text4seg_format (weight 0.5)"
    assert term_label("text4seg_reject", weights) == "text4seg_reject (weight 0, logged only)"
    assert term_label("text4seg_iou_pixel", weights) == "text4seg_iou_pixel"  # not in the run's weights
    assert term_label("text4seg_iou", None) == "text4seg_iou"
