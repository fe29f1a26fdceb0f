"""``run_demo(out, cfg)``: data -> model -> ``swift sft`` -> label-bias sweep on val -> held-out test ->
``metrics.json``. Each stage is a module of :mod:`text4seg.demo`; this one only sequences them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from text4seg.data.jsonl import read_jsonl
from text4seg.data.records import write_jsonl
from text4seg.demo.config import FULL, DemoConfig
from text4seg.demo.data import SPLITS, all_labels, build_splits, tokenizer_corpus
from text4seg.demo.evaluate import (
    baseline_ciou,
    predict_and_score,
    prepare_for_inference,
    qwen_tokens_per_answer,
    write_trained_with,
)
from text4seg.demo.model import make_demo_model
from text4seg.demo.report import copy_overlays, plot_loss, referring, summary_metrics, write_metrics
from text4seg.demo.train import demo_recipe, demo_steps, reuse_training, train


def _sweep(ckpt, val_path, out, cfg, mode, biases, stages, log, progress) -> list[dict]:
    """Predict ``val_path`` once per label bias; one row of scores per bias."""
    sweep = []
    for bias in biases:
        t = time.perf_counter()
        m = predict_and_score(
            ckpt, val_path, out / f"val_{mode}_bias{bias:g}", cfg, mode == "constrained", bias, progress
        )
        stages[f"predict_val_{mode}_bias{bias:g}_s"] = time.perf_counter() - t
        r = referring(m)
        sweep.append({"bias": bias, "parse_valid": m.get("parse_valid"), "n": m.get("n"), **r})
        log(
            f"  val ({mode}, n={m.get('n')}), label bias {bias:g}: cIoU {r.get('ciou', 0):.3f}  "
            f"gIoU {r.get('giou', 0):.3f}  N-acc {r.get('n_acc')}  T-acc {r.get('t_acc')}  "
            f"parse_valid {m.get('parse_valid')}"
        )
    return sweep


def run_demo(
    out: str | os.PathLike,
    cfg: DemoConfig = FULL,
    log: Callable[[str], Any] = print,
    reuse: bool = False,
    progress: bool = False,
    rl: bool = False,
) -> dict[str, Any]:
    """The whole demo into ``out``; returns (and writes to ``out/metrics.json``) the summary metrics.

    ``reuse``: when ``out`` already holds the trained checkpoint of this configuration, skip data, model
    and training and evaluate it again. ``progress``: progress bars while predicting. ``rl``: then the
    reinforcement stage (:func:`text4seg.demo.rl.run_rl`: GRPO from the SFT checkpoint and a
    matched-compute SFT control) into ``out/rl``; its scores are the ``rl`` block of the metrics.
    """
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    stages: dict[str, float] = {}
    paths = {s: out / "data" / f"{s}.jsonl" for s in SPLITS}

    trained = reuse_training(out / "train", demo_steps(cfg)) if reuse else None
    if trained is not None:  # evaluate an earlier run of the same configuration again
        log(f"reusing {trained['checkpoint']} (trained in {trained['train_seconds'] or 0:.0f} s)")
    else:
        t = time.perf_counter()
        paths = build_splits(out / "data", cfg)
        stages["data_s"] = time.perf_counter() - t
        counts = ", ".join(f"{k} {sum(1 for _ in read_jsonl(p))}" for k, p in paths.items())
        log(f"data: {counts} rows -> {out / 'data'}")
        t = time.perf_counter()
        labels = all_labels(paths.values())
        model_dir = make_demo_model(out / "model_init", labels, tokenizer_corpus(paths["train"]), cfg)
        stages["model_s"] = time.perf_counter() - t
        trained = train(demo_recipe(cfg, model_dir, paths["train"], out / "train", device), log)
    stages["train_s"] = trained["train_seconds"]
    plot_loss(trained["log"], out / "loss.png")
    ckpt = trained["checkpoint"]
    prepare_for_inference(ckpt)

    # the decoding knob (label bias), tuned on the validation split only, per decoding mode
    val_c = out / "data" / "val_constrained_subset.jsonl"
    write_jsonl(list(read_jsonl(paths["val"]))[: cfg.constrained_val], val_c)
    sweeps, chosen = {}, {}
    for mode, biases, val_path in (
        ("greedy", cfg.biases, paths["val"]),
        ("constrained", cfg.constrained_biases, val_c),
    ):
        sweeps[mode] = _sweep(ckpt, val_path, out / "pred", cfg, mode, biases, stages, log, progress)
        chosen[mode] = max(sweeps[mode], key=lambda r: (r.get("giou") or 0.0, -r["bias"]))
    # the checkpoint records what it answers and the chosen biases: predict/app reproduce the test scores
    trained_file = write_trained_with(ckpt, paths["train"], {m: chosen[m]["bias"] for m in chosen})
    log(f"trained with: {trained_file} (label bias {chosen['greedy']['bias']:g})")
    results = {}
    for mode in ("greedy", "constrained"):
        key = f"test_{mode}"
        t = time.perf_counter()
        results[key] = predict_and_score(
            ckpt,
            paths["test"],
            out / "pred" / key,
            cfg,
            mode == "constrained",
            chosen[mode]["bias"],
            progress,
        )
        stages[f"predict_{key}_s"] = time.perf_counter() - t
    extra = {
        "tokens_per_answer": qwen_tokens_per_answer(paths["test"]),
        "stage_seconds": stages,
        "device": device,
    }
    base = baseline_ciou(paths["train"], paths["test"], cfg.grid)
    metrics = summary_metrics(results, chosen, sweeps, base, trained, extra, cfg)
    copy_overlays(out / "pred" / "test_greedy" / "overlays", out / "overlays", cfg.overlays)
    if rl:
        from text4seg.demo.rl import run_rl

        write_metrics(metrics, out / "metrics.json")  # the SFT results stay even if RL is interrupted
        metrics["rl"] = run_rl(out / "rl", cfg, ckpt, paths["train"], paths["test"], device, log, progress)
    write_metrics(metrics, out / "metrics.json")
    return metrics
