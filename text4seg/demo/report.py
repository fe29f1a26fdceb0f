"""The demo's outputs: ``metrics.json`` (headline keys first), the loss plot, enlarged overlays and the
printed table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from text4seg.data.jsonl import atomic_path
from text4seg.demo.config import DemoConfig


def referring(metrics: dict) -> dict:
    """The coarse referring scores of an ``evaluate`` result (``{}`` when absent)."""
    return (metrics.get("referring") or {}).get("coarse") or {}


def summary_metrics(
    results: dict[str, dict],
    chosen: dict[str, dict],
    sweeps: dict[str, list],
    baseline: dict[str, float],
    trained: dict[str, Any],
    extra: dict[str, Any],
    cfg: DemoConfig,
) -> dict[str, Any]:
    """The demo's ``metrics.json``: held-out greedy scores, constrained scores, the control, the val sweep.

    ``results``: ``evaluate`` results of ``test_greedy`` and ``test_constrained``; ``chosen``: the val
    sweep row chosen per decoding mode (``greedy``, ``constrained``); ``extra``: more keys, appended.
    """
    test, testc = referring(results["test_greedy"]), referring(results["test_constrained"])
    val = chosen["greedy"]
    return {
        "ciou": test.get("ciou"),
        "giou": test.get("giou"),
        "n_acc": test.get("n_acc"),
        "t_acc": test.get("t_acc"),
        "parse_valid": results["test_greedy"].get("parse_valid"),
        "parse_valid_constrained": results["test_constrained"].get("parse_valid"),
        "ciou_constrained": testc.get("ciou"),
        "giou_constrained": testc.get("giou"),
        "n_acc_constrained": testc.get("n_acc"),
        "t_acc_constrained": testc.get("t_acc"),
        **baseline,
        "val_ciou": val.get("ciou"),
        "val_t_acc": val.get("t_acc"),
        "val_n_acc": val.get("n_acc"),
        "label_bias": chosen["greedy"]["bias"],
        "label_bias_constrained": chosen["constrained"]["bias"],
        "val_sweep": sweeps,
        "tokens_per_answer_model": results["test_greedy"].get("tokens_per_answer"),
        "train_seconds": trained["train_seconds"],
        "final_loss": trained["log"][-1]["loss"] if trained["log"] else None,
        "n_test": results["test_greedy"].get("n"),
        **extra,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
    }


def write_metrics(metrics: dict, path: Path) -> None:
    """``metrics`` as indented JSON at ``path`` (through a temporary file)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, default=str))


def plot_loss(history: Sequence[dict], path: Path) -> None:
    """PNG of the training loss against the step (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(str(r["global_step/max_steps"]).split("/")[0]) for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [r["loss"] for r in history], marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.set_title("text4seg demo: tiny VLM, full fine-tuning from random weights")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def copy_overlays(src: Path, dst: Path, limit: int, scale: int = 4) -> list[Path]:
    """Copy up to ``limit`` overlay PNGs from ``src`` to ``dst``, enlarged ``scale`` x (nearest): 64 px is
    too small to look at. Returns the written paths."""
    from PIL import Image

    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for png in sorted(src.glob("*.png"))[:limit]:
        with Image.open(png) as im:
            im.resize((im.width * scale, im.height * scale), Image.NEAREST).save(dst / png.name)
        written.append(dst / png.name)
    return written


def format_summary(m: dict) -> str:
    """A short printed table of the headline metrics."""

    def f(v):
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    rows = [
        ("cIoU (held-out, greedy)", m["ciou"]),
        ("gIoU", m["giou"]),
        ("N-acc (absent targets)", m["n_acc"]),
        ("T-acc", m["t_acc"]),
        ("parse_valid", m["parse_valid"]),
        ("parse_valid (constrained)", m["parse_valid_constrained"]),
        ("cIoU (constrained)", m["ciou_constrained"]),
        ("baseline cIoU (image-blind)", m["baseline_ciou"]),
        ("label bias (tuned on val)", m.get("label_bias")),
        ("Qwen tokens per answer", m["tokens_per_answer"]),
        ("train seconds", m["train_seconds"]),
    ]
    rl = m.get("rl")
    if rl:
        ctl = rl.get("control") or {}
        rows += [
            ("RL cIoU before -> after", f"{f(rl['ciou_before'])} -> {f(rl['ciou_after'])}"),
            ("RL N-acc before -> after", f"{f(rl['n_acc_before'])} -> {f(rl['n_acc_after'])}"),
            ("RL T-acc before -> after", f"{f(rl['t_acc_before'])} -> {f(rl['t_acc_after'])}"),
            ("RL parse_valid after", rl["parse_valid_after"]),
            ("RL steps / seconds", f"{rl['steps']} / {f(rl['seconds'])}"),
            ("control cIoU (same seconds SFT)", ctl.get("ciou")),
            ("control N-acc / T-acc", f"{f(ctl.get('n_acc'))} / {f(ctl.get('t_acc'))}"),
        ]
    return "\n".join(f"  {k:<30} {f(v)}" for k, v in rows)
