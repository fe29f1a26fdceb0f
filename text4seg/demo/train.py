"""The demo's training: ``recipes/demo.yaml`` plus the run's overrides, run by ``swift sft`` with a live
loss read-out (ms-swift's ``logging.jsonl``, polled every 2 s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from text4seg.demo.config import DemoConfig


def demo_recipe(cfg: DemoConfig, model: Path, train_jsonl: Path, out: Path, device: str) -> dict[str, Any]:
    """The ``swift sft`` arguments of a run: ``cfg.recipe`` with paths, device, seed and steps filled in."""
    from text4seg.training.recipe_file import load_recipe
    from text4seg.training.recipes import apply_overrides

    overrides: dict[str, Any] = {
        "model": str(model),
        "dataset": str(train_jsonl),
        "output_dir": str(out),
        "use_cpu": device == "cpu",
        "seed": cfg.seed,
    }
    if cfg.steps is not None:
        overrides["max_steps"] = cfg.steps
    return apply_overrides(load_recipe(cfg.recipe), {**overrides, **cfg.swift_overrides})


def demo_steps(cfg: DemoConfig) -> int:
    """The number of training steps of a run of ``cfg`` (``cfg.steps`` or the recipe's ``max_steps``)."""
    from text4seg.training.recipe_file import load_recipe

    if cfg.steps is not None:
        return cfg.steps
    steps = {**load_recipe(cfg.recipe), **cfg.swift_overrides}.get("max_steps")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"recipe {cfg.recipe!r}: max_steps must be a positive integer, got {steps!r}")
    return steps


def offline_env(cache: Path) -> dict[str, str]:
    """Environment for ms-swift with no network: offline hubs, caches under ``cache``."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        MODELSCOPE_CACHE=str(cache / "modelscope"),
        HF_HOME=str(cache / "hf"),
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def _loss_line(rec: dict) -> str:
    if "reward" in rec:  # swift rlhf (GRPO)
        return (
            f"  step {rec['global_step/max_steps']:>9}  reward {rec['reward']:.3f}  "
            f"reward_std {rec.get('reward_std', 0):.3f}  {rec.get('elapsed_time', '')}"
        )
    return (
        f"  step {rec['global_step/max_steps']:>9}  loss {rec['loss']:.4f}  "
        f"token_acc {rec.get('token_acc', 0):.3f}  {rec.get('elapsed_time', '')}"
    )


def train(
    recipe: dict[str, Any],
    log: Callable[[str], Any] = print,
    title: str = "",
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Run ``swift sft`` (``swift rlhf`` for a recipe with ``rlhf_type``) on ``recipe``; log the loss (or
    the GRPO reward) live; return ``{"checkpoint", "train_seconds", "log"}``.

    The run writes ``swift_sft.log`` (``swift_rlhf.log``) and ms-swift's ``logging.jsonl`` into
    ``recipe["output_dir"]``. ``max_seconds``: stop the run after that much wall time (the recipe must
    save checkpoints every few steps: the last complete one is returned).
    """
    from text4seg.training.recipes import format_command, swift_command, swift_executable, swift_subcommand

    out = Path(recipe["output_dir"])
    kind = swift_subcommand(recipe)
    argv, env = swift_command(recipe, swift=swift_executable(), subcommand=kind)
    title = title or "training (full fine-tuning: the weights start random)"
    log(f"{title}:\n  " + format_command(argv, env))
    out.mkdir(parents=True, exist_ok=True)
    logging = out / "logging.jsonl"
    history: list[dict] = []
    t0 = time.perf_counter()
    with open(out / f"swift_{kind}.log", "w") as fh:
        proc = subprocess.Popen(  # own session: `swift` runs the trainer in a child process
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**offline_env(out / "cache"), **env},
            start_new_session=max_seconds is not None,
        )
        seen, stopped = 0, False
        while True:
            done = proc.poll() is not None
            if logging.exists():
                for line in logging.read_text().splitlines()[seen:]:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:  # a line being written
                        break
                    seen += 1
                    if "loss" in rec:
                        history.append(rec)
                        log(_loss_line(rec))
            if done:
                break
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                # the time budget is spent: stop the launcher AND its trainer child (its own process
                # group), keep the checkpoints saved so far
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                time.sleep(1)  # let the group's children exit before the checkpoints are listed
                stopped = True
                break
            time.sleep(2)
    seconds = time.perf_counter() - t0
    if proc.returncode and not stopped:
        tail = (out / f"swift_{kind}.log").read_text()[-2000:]
        raise RuntimeError(f"swift {kind} failed with exit code {proc.returncode}; log tail:\n{tail}")
    ckpts = sorted(
        (p for p in out.glob("checkpoint-*") if (p / "trainer_state.json").exists()),  # complete ones
        key=lambda p: int(p.name.split("-")[1]),
    )
    if not ckpts:
        raise RuntimeError(f"swift {kind} wrote no checkpoint under {out}")
    return {"checkpoint": ckpts[-1], "train_seconds": seconds, "log": history}


def reuse_training(out: Path, steps: int) -> dict[str, Any] | None:
    """The result of an earlier :func:`train` into ``out`` that reached ``steps``, or ``None``."""
    ckpt = out / f"checkpoint-{steps}"
    logging = out / "logging.jsonl"
    if not ckpt.exists() or not logging.exists():
        return None
    records = [json.loads(line) for line in logging.read_text().splitlines() if line.strip()]
    runtime = [r["train_runtime"] for r in records if "train_runtime" in r]
    history = [r for r in records if "loss" in r]
    return {"checkpoint": ckpt, "log": history, "train_seconds": runtime[-1] if runtime else None}
