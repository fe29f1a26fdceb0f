"""The demo's data: the project's synthetic builder, then one fixed question and answer sentence per row.

Fixed prompts put every answer cell at the same token distance from its image patch (see
:mod:`text4seg.demo`). A row keeps its descriptors; only the words around them change::

    user:      "<image>Segment the red circle."
    assistant: "Here is the mask.\\n<seg>...</seg>"
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from text4seg.data.jsonl import read_jsonl
from text4seg.data.records import write_jsonl
from text4seg.demo.config import FIXED_ANSWER, FIXED_QUESTION, DemoConfig

SPLITS = ("train", "val", "test")


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
    for split in SPLITS:
        raw = data_dir / f"{split}_raw.jsonl"
        build_jsonl(
            "synthetic",
            raw,
            split=split,
            grid=cfg.grid,
            scheme=cfg.scheme,
            seed=cfg.seed,
            with_gt=True,
            root=data_dir / "images",
            stats=False,
            options=cfg.builder_options(split),
        )
        rows = list(read_jsonl(raw))
        if cfg.fixed_prompts:
            rows = [fix_prompts(r) for r in rows]
        paths[split] = data_dir / f"{split}.jsonl"
        write_jsonl(rows, paths[split])
    return paths


def all_labels(paths: Iterable[Path]) -> list[str]:
    """Sorted distinct target labels over the given JSONL files."""
    labels: set[str] = set()
    for p in paths:
        for row in read_jsonl(p):
            labels.update(row["text4seg"]["labels"])
    return sorted(labels)


def tokenizer_corpus(train_jsonl: Path, rows: int = 2000) -> list[str]:
    """The texts the demo's tokenizer is trained on: every message of the first ``rows`` training rows."""
    return [m["content"] for r in list(read_jsonl(train_jsonl))[:rows] for m in r["messages"]]
