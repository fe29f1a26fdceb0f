"""The demo's reinforcement stage (``text4seg demo --rl``): GRPO with mask rewards after SFT, measured
against a matched-compute control.

Sequence (:func:`run_rl`), all on the demo's own data and held-out ``test`` split:

1. **before**: greedy prediction of ``test`` with the SFT checkpoint (label bias 0);
2. **RL**: ``swift rlhf --rlhf_type grpo`` (recipe ``recipes/grpo_demo.yaml``, rewards of
   :mod:`text4seg.training.rewards` through ``recipes/text4seg_rewards.py``) from that checkpoint, on
   ``cfg.rl_rows`` training rows of which a quarter are absent targets (:func:`rl_rows`);
3. **control**: the same SFT (``cfg.recipe`` on the SFT's own training rows) continued from the same
   checkpoint for the same wall time as step 2, at the RL learning rate; the run saves a checkpoint every
   few steps and is stopped when the RL run's seconds are spent (:func:`text4seg.demo.train.train`).
   The whole training set, not the RL rows: on the 800 RL rows (then half absent targets) continued SFT
   got worse (measured: compact cIoU 0.389 -> 0.338 in 142 s), a control that would flatter RL;
4. **after**: greedy prediction of ``test`` with both; ``rl_reward.png`` plots the mean reward per step.

Every score is the plain greedy decode with no label bias (the demo's tuned bias is a decoding knob of the
SFT model; RL should need none). Returns the ``rl`` block of ``metrics.json``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from statistics import fmean
from typing import Any

from text4seg.data.jsonl import read_jsonl
from text4seg.data.records import write_jsonl
from text4seg.demo.config import DemoConfig
from text4seg.demo.evaluate import predict_and_score, prepare_for_inference
from text4seg.demo.report import referring
from text4seg.demo.train import train


def suppress_image_token(model_dir: Path) -> None:
    """Forbid generating the ``<image>`` placeholder (``suppress_tokens`` in ``generation_config.json``).

    A sampled ``<image>`` in a GRPO completion makes the policy's forward pass find more image tokens than
    images (transformers' LLaVA raises); an under-trained model samples it now and then."""
    config = json.loads((model_dir / "config.json").read_text())
    token = config.get("image_token_id", config.get("image_token_index"))
    path = model_dir / "generation_config.json"
    gen = json.loads(path.read_text()) if path.exists() else {}
    if token is None or token in (gen.get("suppress_tokens") or []):
        return
    gen["suppress_tokens"] = [*(gen.get("suppress_tokens") or []), int(token)]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(gen, indent=2))
    tmp.replace(path)


def is_absent(row: dict) -> bool:
    """True for a row whose target is absent (its answer decodes to an all-background grid)."""
    from text4seg.descriptors import decode

    meta = row["text4seg"]
    return decode(row["messages"][-1]["content"], tuple(meta["grid"]), meta["scheme"]).is_empty


def rl_rows(train_jsonl: Path, n: int, seed: int, absent_fraction: float = 0.5) -> list[dict]:
    """``n`` training rows, ``round(n * absent_fraction)`` of them absent targets, shuffled by ``seed``.

    The fraction is a lever on the policy's empty answers (measured on the demo's ``rrle`` start,
    ``docs/demo.md``): at 0.5 the policy drifted to empty answers (every answer empty by step 100 at lr
    5e-4), at 0.25 it kept writing masks; the default is 0.25, the synthetic data's own rate."""
    rows = list(read_jsonl(train_jsonl))
    absent = [r for r in rows if is_absent(r)]
    present = [r for r in rows if not is_absent(r)]
    k = round(n * absent_fraction)
    if k > len(absent) or n - k > len(present):
        raise ValueError(
            f"{train_jsonl}: {n} RL rows with {k} absent need {k} absent and {n - k} present rows; "
            f"the file has {len(absent)} and {len(present)}"
        )
    rng = random.Random(seed)
    out = rng.sample(absent, k) + rng.sample(present, n - k)
    rng.shuffle(out)
    return out


def grpo_recipe(cfg: DemoConfig, model: Path, data: Path, out: Path, device: str) -> dict[str, Any]:
    """The ``swift rlhf`` arguments: ``cfg.rl_recipe`` with the run's paths, device, seed and steps."""
    from text4seg.training.recipe_file import load_recipe
    from text4seg.training.recipes import apply_overrides, resolve_plugins

    path = Path(cfg.rl_recipe)
    overrides: dict[str, Any] = {
        "model": str(model),
        "dataset": str(data),
        "output_dir": str(out),
        "use_cpu": device == "cpu",
        "seed": cfg.seed,
        "max_steps": cfg.rl_steps,
    }
    recipe = apply_overrides(load_recipe(path), {**overrides, **cfg.rl_overrides})
    return resolve_plugins(recipe, path)


def control_recipe(
    cfg: DemoConfig, model: Path, data: Path, out: Path, device: str, learning_rate: float
) -> dict[str, Any]:
    """The control's ``swift sft`` arguments: the demo recipe from ``model`` at a constant
    ``learning_rate``, a checkpoint every 5 steps, and steps enough never to end before it is stopped."""
    from text4seg.training.recipe_file import load_recipe
    from text4seg.training.recipes import apply_overrides

    overrides = {
        "model": str(model),
        "dataset": str(data),
        "output_dir": str(out),
        "use_cpu": device == "cpu",
        "seed": cfg.seed,
        "max_steps": 100_000,
        "learning_rate": learning_rate,
        "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0,
        "save_steps": 5,
        "save_total_limit": 2,
        **cfg.swift_overrides,
    }
    return apply_overrides(load_recipe(cfg.recipe), overrides)


def reward_history(history: list[dict]) -> list[dict]:
    """``[{"step", "reward", "reward_std", "frac_reward_zero_std", "rewards/...": mean}]`` of a GRPO log."""
    out = []
    for rec in history:
        if "reward" not in rec:
            continue
        row = {"step": int(str(rec["global_step/max_steps"]).split("/")[0]), "reward": rec["reward"]}
        for k, v in rec.items():
            if k in ("reward_std", "frac_reward_zero_std") or (
                k.startswith("rewards/") and k.endswith("/mean")
            ):
                row[k] = v
        out.append(row)
    return out


def term_label(name: str, weights: dict[str, float] | None) -> str:
    """Legend text of one reward term: ``name``, with its weight when known (weight 0: logged only)."""
    w = (weights or {}).get(name)
    if w is None:
        return name
    return f"{name} (weight {w:g}{', logged only' if w == 0 else ''})"


def plot_rewards(rewards: list[dict], path: Path, weights: dict[str, float] | None = None) -> None:
    """PNG of the mean reward per GRPO step (and each reward term's mean, when logged).

    ``weights``: ``{reward name: weight}`` of the run (the recipe's ``reward_funcs`` / ``reward_weights``);
    each term's legend entry then names its weight, and a term of weight 0 is marked as logged only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rewards]
    total = [r["reward"] for r in rewards]
    w = max(1, min(10, len(total) // 5))  # a rolling mean: one step's 4 prompts are a noisy sample
    smooth = [fmean(total[max(0, i - w + 1) : i + 1]) for i in range(len(total))]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, total, label="total (weighted)", lw=0.8, alpha=0.35, color="C0")
    ax.plot(steps, smooth, label=f"total, mean of {w} steps", lw=2.0, color="C0")
    for key in sorted({k for r in rewards for k in r if k.startswith("rewards/")}):
        label = term_label(key.split("/")[1], weights)
        ax.plot(steps, [r.get(key) for r in rewards], label=label, lw=0.8, alpha=0.8)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("text4seg demo: GRPO with mask rewards")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _scores(ckpt: Path, test: Path, out: Path, cfg: DemoConfig, progress: bool) -> dict[str, Any]:
    prepare_for_inference(ckpt)
    m = predict_and_score(ckpt, test, out, cfg, False, 0.0, progress)
    r = referring(m)
    return {
        "ciou": r.get("ciou"),
        "giou": r.get("giou"),
        "n_acc": r.get("n_acc"),
        "t_acc": r.get("t_acc"),
        "parse_valid": m.get("parse_valid"),
    }


def run_rl(
    out: Path,
    cfg: DemoConfig,
    sft_ckpt: Path,
    train_jsonl: Path,
    test_jsonl: Path,
    device: str = "cpu",
    log: Callable[[str], Any] = print,
    progress: bool = False,
    control: bool = True,
) -> dict[str, Any]:
    """Steps 1-4 of the module docstring into ``out`` (``OUT/rl``); returns the ``rl`` metrics block."""
    import os

    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    before = _scores(sft_ckpt, test_jsonl, out / "pred_before", cfg, progress)
    log(f"RL: before (SFT {sft_ckpt.name}): {before}")
    data = out / "data.jsonl"
    write_jsonl(rl_rows(train_jsonl, cfg.rl_rows, cfg.seed, cfg.rl_absent_fraction), data)
    suppress_image_token(sft_ckpt)
    recipe = grpo_recipe(cfg, sft_ckpt, data, out / "train", device)
    grpo = train(recipe, log, title=f"GRPO ({cfg.rl_steps} steps, mask rewards)")
    rewards = reward_history(grpo["log"])
    funcs, ws = recipe.get("reward_funcs") or [], recipe.get("reward_weights") or []
    plot_rewards(rewards, out.parent / "rl_reward.png", dict(zip(funcs, ws, strict=False)))
    after = _scores(grpo["checkpoint"], test_jsonl, out / "pred_after", cfg, progress)
    log(f"RL: after {grpo['train_seconds']:.0f} s of GRPO: {after}")
    result: dict[str, Any] = {
        "ciou_before": before["ciou"],
        "ciou_after": after["ciou"],
        "giou_before": before["giou"],
        "giou_after": after["giou"],
        "n_acc_before": before["n_acc"],
        "n_acc_after": after["n_acc"],
        "t_acc_before": before["t_acc"],
        "t_acc_after": after["t_acc"],
        "parse_valid_before": before["parse_valid"],
        "parse_valid_after": after["parse_valid"],
        "steps": len(rewards),
        "seconds": grpo["train_seconds"],
        "rows": cfg.rl_rows,
        "absent_fraction": cfg.rl_absent_fraction,
        "mean_reward_per_step": [r["reward"] for r in rewards],
        "reward_log": rewards,
        "sft_checkpoint": str(sft_ckpt),
        "load_average": list(os.getloadavg()),
    }
    if control:
        lr = float(recipe.get("learning_rate", 5e-4))
        ctl_recipe = control_recipe(cfg, sft_ckpt, train_jsonl, out / "control", device, lr)
        try:
            ctl = train(
                ctl_recipe,
                log,
                title=f"control: the same SFT continued for {grpo['train_seconds']:.0f} s",
                max_seconds=grpo["train_seconds"],
            )
        except RuntimeError as exc:  # stopped before its first checkpoint: the control is the SFT model
            if "wrote no checkpoint" not in str(exc):
                raise
            log(f"control: no checkpoint within {grpo['train_seconds']:.0f} s; it is the SFT checkpoint")
            ctl = {"checkpoint": sft_ckpt, "train_seconds": grpo["train_seconds"]}
        ctl_scores = _scores(ctl["checkpoint"], test_jsonl, out / "pred_control", cfg, progress)
        log(f"RL: control ({ctl['checkpoint'].name}, {ctl['train_seconds']:.0f} s of SFT): {ctl_scores}")
        result["control"] = {
            **ctl_scores,
            "steps": 0 if ctl["checkpoint"] == sft_ckpt else int(ctl["checkpoint"].name.split("-")[1]),
            "seconds": ctl["train_seconds"],
            "learning_rate": lr,
            "dataset": str(train_jsonl),
        }
        result["ciou_gain_over_control"] = (after["ciou"] or 0.0) - (ctl_scores["ciou"] or 0.0)
    result["stage_seconds"] = time.perf_counter() - t
    (out / "rl_metrics.json").write_text(json.dumps(result, indent=2, default=str))
    return result
