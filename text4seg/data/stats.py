"""Answer-length statistics of built JSONL files: characters and Qwen2 tokens (mean/p50/p95/max).

``answer_stats(answers)`` summarises a list of answers; :class:`AnswerCollector` does the same in
bounded memory while a builder streams its answers; ``file_stats(path)`` reads every assistant message of
a JSONL file in one streaming pass (bounded lines, see :func:`text4seg.data.jsonl.iter_lines`); a row of
the wrong shape (``messages`` not a list of objects, an assistant ``content`` that is not text, ``images``
not a path or a list of paths, ``text4seg`` not an object, its ``id`` not a string, ``labels`` not a list,
``task`` not a string) is one ``ValueError`` naming the file, the line
and the field. Worked example: the answers ``["one", "two two", "three three three"]`` give::

    {"answers": 3, "chars": {"mean": 9.0, "p50": 7.0, "p95": 16.0, "max": 17},
     "tokens": {"mean": 2.0, "p50": 2.0, "p95": 2.9, "max": 3}, "tokenized": 3}
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterator, Sequence

from text4seg.data.jsonl import quote

MAX_TOKENIZED = 20_000  # answers tokenised at most (evenly spaced subset beyond that)


def _summary(values: Sequence[int]) -> dict:
    import numpy as np

    if not len(values):
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
        self.chars = array("q")  # 8 bytes per answer, whatever the length
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


def _answer_text(content, where: str) -> str:
    """An assistant message's text: a string, or the ``text`` of a list of OpenAI-style parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(x, dict) for x in content):
        texts = [x.get("text", "") for x in content]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
    raise ValueError(f"{where}.content must be text (a string or a list of text parts), got {quote(content)}")


def row_facts(row: dict, path: str | os.PathLike, n: int) -> tuple[list[str], str, int]:
    """``(answers, task, number of labels)`` of one JSONL row; ``ValueError`` naming ``path:n`` and the
    field when the row has the wrong shape."""
    where = f"{path}:{n}"
    msgs = row.get("messages")
    if not isinstance(msgs, list):
        raise ValueError(f"{where}: row has no 'messages' list (got {quote(msgs)})")
    answers = []
    for k, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise ValueError(f"{where}: messages[{k}] must be an object, got {quote(m)}")
        if m.get("role") == "assistant":
            answers.append(_answer_text(m.get("content", ""), f"{where}: messages[{k}]"))
    images = row.get("images", [])
    if not isinstance(images, str) and not (
        isinstance(images, list) and all(isinstance(x, (str, dict)) for x in images)
    ):
        raise ValueError(f"{where}: 'images' must be a path or a list of paths, got {quote(images)}")
    meta = row.get("text4seg", {})
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: 'text4seg' must be an object, got {quote(meta)}")
    rid = meta.get("id", "")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise ValueError(f"{where}: text4seg.id must be a string, got {quote(rid)}")
    labels = meta.get("labels", [])
    if not isinstance(labels, list):
        raise ValueError(f"{where}: text4seg.labels must be a list, got {quote(labels)}")
    task = meta.get("task", "")
    if not isinstance(task, str):
        raise ValueError(f"{where}: text4seg.task must be a string, got {quote(task)}")
    return answers, task, len(labels)


def _facts(path: str | os.PathLike) -> Iterator[tuple[list[str], str, int]]:
    from text4seg.data.jsonl import iter_jsonl

    rows = 0
    try:
        for n, row in iter_jsonl(path):
            rows += 1
            yield row_facts(row, path, n)
    except FileNotFoundError:
        raise OSError(f"no such file: {path}") from None
    if not rows:
        raise ValueError(f"{path}: no rows (an empty file; a failed build?)")


def file_answers(path: str) -> list[str]:
    """Every assistant message of every row of a JSONL file."""
    return [a for answers, _, _ in _facts(path) for a in answers]


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
    the :func:`target_summary` of built rows (tasks, targets per sample, no-target samples); one streaming
    pass in bounded memory."""
    collector = AnswerCollector(max_tokenized)
    targets = _Targets()
    for answers, task, k in _facts(path):
        for a in answers:
            collector.add(a)
        targets.add(task, k)
    stats = collector.stats(tokens)
    stats.update({k: v for k, v in targets.summary().items() if k != "samples"})
    return stats


class _Targets:
    """Counts of :func:`target_summary`, fed one row at a time."""

    def __init__(self) -> None:
        self.n = self.empty = self.total = self.most = 0
        self.tasks: dict[str, int] = {}

    def add(self, task: str, k: int) -> None:
        self.n += 1
        self.total += k
        self.most = max(self.most, k)
        self.empty += k == 0
        self.tasks[task] = self.tasks.get(task, 0) + 1

    def summary(self) -> dict:
        n = self.n
        return {
            "samples": n,
            "tasks": dict(sorted(self.tasks.items())),
            "targets_per_sample": {"mean": round(self.total / n, 3) if n else 0.0, "max": self.most},
            "empty_targets": self.empty,
        }


def target_summary(path: str | os.PathLike) -> dict:
    """Stream a built JSONL: ``samples``, ``tasks`` (count per task), ``targets_per_sample`` (mean and
    max of ``len(text4seg.labels)``), ``empty_targets`` (samples whose labels are ``[]``: no-target
    questions, which are intended; the build report's ``targets`` counts the unintended ones)."""
    targets = _Targets()
    for _, task, k in _facts(path):
        targets.add(task, k)
    return targets.summary()
