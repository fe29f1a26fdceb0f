"""Answer-length statistics of built JSONL files: characters and Qwen2 tokens (mean/p50/p95/max).

``answer_stats(answers)`` summarises a list of answers; :class:`AnswerCollector` does the same in
bounded memory while a builder streams its answers; ``file_stats(path)`` reads every assistant message of
a JSONL file. Worked example: the answers ``["one", "two two", "three three three"]`` give::

    {"answers": 3, "chars": {"mean": 9.0, "p50": 7.0, "p95": 16.0, "max": 17},
     "tokens": {"mean": 2.0, "p50": 2.0, "p95": 2.9, "max": 3}, "tokenized": 3}
"""

from __future__ import annotations

import os
from collections.abc import Sequence

MAX_TOKENIZED = 20_000  # answers tokenised at most (evenly spaced subset beyond that)


def _summary(values: Sequence[int]) -> dict:
    import numpy as np

    if not values:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0}
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": round(float(a.mean()), 1),
        "p50": round(float(np.percentile(a, 50)), 1),
        "p95": round(float(np.percentile(a, 95)), 1),
        "max": int(a.max()),
    }


def answer_stats(answers: Sequence[str], max_tokenized: int = MAX_TOKENIZED, tokens: bool = True) -> dict:
    """``{"answers": n, "chars": {mean,p50,p95,max}, "tokens": {...}, "tokenized": k}``.

    Tokens use the real Qwen2 tokenizer on at most ``max_tokenized`` answers (an evenly spaced,
    deterministic subset); ``tokenized`` says how many.
    """
    c = AnswerCollector(max_tokenized)
    for a in answers:
        c.add(a)
    return c.stats(tokens)


class AnswerCollector:
    """Collects answer lengths for :func:`answer_stats` in bounded memory.

    Keeps every answer's character count, but only an evenly spaced subset of at most
    ``2 * max_tokenized`` answers for tokenising (the stride doubles as the stream grows; deterministic).
    """

    def __init__(self, max_tokenized: int = MAX_TOKENIZED):
        self.max_tokenized = max(1, max_tokenized)
        self.chars: list[int] = []
        self.kept: list[str] = []
        self.stride = 1

    def add(self, answer: str) -> None:
        if len(self.chars) % self.stride == 0:
            self.kept.append(answer)
            if len(self.kept) > 2 * self.max_tokenized:
                self.kept = self.kept[::2]
                self.stride *= 2
        self.chars.append(len(answer))

    def stats(self, tokens: bool = True) -> dict:
        out = {"answers": len(self.chars), "chars": _summary(self.chars)}
        if tokens:
            from text4seg.data.tokens import count_many

            step = max(1, -(-len(self.kept) // self.max_tokenized))
            subset = self.kept[::step]
            out["tokens"] = _summary(count_many(subset))
            out["tokenized"] = len(subset)
        return out


def file_answers(path: str) -> list[str]:
    """Every assistant message of every row of a JSONL file."""
    from text4seg.data.records import read_jsonl

    try:
        rows = list(read_jsonl(path))
    except FileNotFoundError:
        raise OSError(f"no such file: {path}") from None
    answers = []
    for n, row in enumerate(rows, 1):
        msgs = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(msgs, list):
            raise ValueError(f"{path}:{n}: row has no 'messages' list")
        answers.extend(
            m.get("content", "") for m in msgs if isinstance(m, dict) and m.get("role") == "assistant"
        )
    return answers


def format_stats(stats: dict) -> str:
    """The statistics as aligned text lines (what ``text4seg stats`` prints)."""
    lines = [f"answers: {stats['answers']}"]
    for key in ("chars", "tokens"):
        if key in stats:
            s = stats[key]
            extra = f" (Qwen2 tokenizer, {stats['tokenized']} answers)" if key == "tokens" else ""
            lines.append(f"{key:>7}: mean {s['mean']}  p50 {s['p50']}  p95 {s['p95']}  max {s['max']}{extra}")
    if "tasks" in stats:
        t = stats["targets_per_sample"]
        lines.append(f"  tasks: {', '.join(f'{k} {v}' for k, v in stats['tasks'].items())}")
        lines.append(
            f"targets: {t['mean']} per sample (max {t['max']}), {stats['empty_targets']} no-target samples"
        )
    return "\n".join(lines)


def file_stats(path: str, max_tokenized: int = MAX_TOKENIZED, tokens: bool = True) -> dict:
    """:func:`answer_stats` of every assistant message of a JSONL file (one-line error on a bad row), plus
    the :func:`target_summary` of built rows (tasks, targets per sample, no-target samples)."""
    stats = answer_stats(file_answers(path), max_tokenized, tokens)
    stats.update({k: v for k, v in target_summary(path).items() if k != "samples"})
    return stats


def target_summary(path: str | os.PathLike) -> dict:
    """Stream a built JSONL: ``samples``, ``tasks`` (count per task), ``targets_per_sample`` (mean and
    max of ``len(text4seg.labels)``), ``empty_targets`` (samples whose labels are ``[]``: no-target
    questions, which are intended; the build report's ``targets`` counts the unintended ones)."""
    from text4seg.data.records import read_jsonl

    n = empty = total = most = 0
    tasks: dict[str, int] = {}
    for row in read_jsonl(path):
        meta = row.get("text4seg") or {}
        k = len(meta.get("labels") or [])
        n += 1
        total += k
        most = max(most, k)
        empty += k == 0
        t = str(meta.get("task", ""))
        tasks[t] = tasks.get(t, 0) + 1
    return {
        "samples": n,
        "tasks": dict(sorted(tasks.items())),
        "targets_per_sample": {"mean": round(total / n, 3) if n else 0.0, "max": most},
        "empty_targets": empty,
    }
