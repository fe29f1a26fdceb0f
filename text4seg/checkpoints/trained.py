"""What a checkpoint was trained to answer: ``text4seg.json`` beside ms-swift's ``args.json``.

A model fine-tuned on ``full`` answers to "Segment X." questions answers nothing useful when asked
"Can you segment X in this picture?" and decoded as ``rrle``. ``text4seg train`` therefore writes, into
the recipe's ``output_dir`` and every ``checkpoint-*`` folder, the settings its answers need; ``text4seg
export`` copies the file into the merged model; ``predict`` (in-process and ``--api``), ``decode``,
``evaluate``, the demo and ``app`` take their defaults from it. A flag that disagrees with it is a one-line
error unless ``--force-options``.

The file (``TRAINED_NAME``), one JSON object::

    {
      "format": 1,
      "scheme": "full",                       # descriptor scheme of the answers
      "grid": [16, 16],                        # [rows, cols]
      "questions": ["Segment {target}."],      # distinct question templates, the label as {target}
      "question_family": "",                   # or a builder family (its templates are too many to list)
      "answers": ["Here is the mask."],        # distinct answer sentences (the text before <seg>)
      "label_bias": 1.0,                       # a logit bias on label tokens (the demo's, tuned on val)
      "label_bias_constrained": 0.0,           # the same for constrained decoding (None: no bias)
      "tasks": ["res"],                        # the rows' tasks
      "source": "demo-shapes",                 # the datasets / builder the rows came from
      "text4seg_version": "0.1.0"
    }

Read it with :func:`read_trained` (an adapter folder first, then the model, as ms-swift reads
``args.json``); apply a flag with :func:`resolve`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TRAINED_NAME = "text4seg.json"
FORMAT = 1
TARGET = "{target}"
FORCE_FLAG = "--force-options"


@dataclass
class TrainedWith:
    """The settings a checkpoint's answers need (module docstring). ``path``: the file it was read from
    (not written)."""

    scheme: str
    grid: tuple[int, int]
    questions: list[str] = field(default_factory=list)
    question_family: str = ""
    answers: list[str] = field(default_factory=list)
    label_bias: float | None = None
    label_bias_constrained: float | None = None
    tasks: list[str] = field(default_factory=list)
    source: str = ""
    text4seg_version: str = ""
    path: str | None = None

    @property
    def question(self) -> str | None:
        """The first question template (``{target}`` marks the label), None when none is recorded."""
        return self.questions[0] if self.questions else None

    def bias(self, constrained: bool = False) -> float | None:
        """The label bias for greedy (or constrained) decoding, None when none was chosen."""
        return self.label_bias_constrained if constrained else self.label_bias

    def to_json(self) -> dict[str, Any]:
        """The object written to ``text4seg.json``."""
        out = {"format": FORMAT, **asdict(self)}
        out.pop("path")
        out["grid"] = [int(self.grid[0]), int(self.grid[1])]
        return out

    def where(self) -> str:
        """The file it came from, for error messages."""
        return self.path or TRAINED_NAME


def _version() -> str:
    try:
        from text4seg import __version__

        return str(__version__)
    except Exception:  # noqa: BLE001 (a version string is never worth failing a write for)
        return ""


def write_trained(folder: str | os.PathLike, trained: TrainedWith) -> Path:
    """Write ``folder/text4seg.json`` atomically (never half-written); returns its path."""
    import json

    from text4seg.data.jsonl import atomic_path

    if not trained.text4seg_version:
        trained.text4seg_version = _version()
    path = Path(folder) / TRAINED_NAME
    text = json.dumps(trained.to_json(), ensure_ascii=False, indent=2) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _strings(obj: dict, key: str, path: Path) -> list[str]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{path}: {key} must be a list of strings, got {_short(value)}")
    return list(value)


def _number(obj: dict, key: str, path: Path) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path}: {key} must be a number or null, got {_short(value)}")
    return float(value)


def _text(obj: dict, key: str, path: Path) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{path}: {key} must be a string, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    from text4seg.data.jsonl import quote

    return quote(value, 80)


def parse_trained(obj: dict, path: str | os.PathLike) -> TrainedWith:
    """A ``text4seg.json`` object as :class:`TrainedWith`; ``ValueError`` naming ``path`` and the field."""
    from text4seg.descriptors import SCHEMES

    path = Path(path)
    fmt = obj.get("format", FORMAT)
    if fmt != FORMAT:
        raise ValueError(f"{path}: format {_short(fmt)} is not {FORMAT} (written by a newer text4seg?)")
    scheme = obj.get("scheme")
    if scheme not in SCHEMES:
        raise ValueError(f"{path}: scheme must be one of {sorted(SCHEMES)}, got {_short(scheme)}")
    grid = obj.get("grid")
    if (
        not isinstance(grid, list)
        or len(grid) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024 for v in grid)
    ):
        raise ValueError(f"{path}: grid must be [rows, cols] (integers 1..1024), got {_short(grid)}")
    questions = _strings(obj, "questions", path)
    for q in questions:
        if TARGET not in q:
            raise ValueError(f"{path}: question template {_short(q)} has no {TARGET}")
    return TrainedWith(
        scheme=scheme,
        grid=(grid[0], grid[1]),
        questions=questions,
        question_family=_text(obj, "question_family", path),
        answers=_strings(obj, "answers", path),
        label_bias=_number(obj, "label_bias", path),
        label_bias_constrained=_number(obj, "label_bias_constrained", path),
        tasks=_strings(obj, "tasks", path),
        source=_text(obj, "source", path),
        text4seg_version=_text(obj, "text4seg_version", path),
        path=str(path),
    )


def trained_file(ref: str | os.PathLike) -> Path | None:
    """``ref`` itself when it is a file, else ``ref/text4seg.json`` when present, else None."""
    path = Path(ref)
    if os.path.lexists(path) and not path.is_dir():
        return path
    candidate = path / TRAINED_NAME
    return candidate if os.path.lexists(candidate) else None


def read_trained_file(path: str | os.PathLike) -> TrainedWith:
    """One ``text4seg.json`` read strictly (:func:`text4seg.data.jsonl.read_json_object`)."""
    from text4seg.data.jsonl import read_json_object

    return parse_trained(read_json_object(path), path)


def read_trained(
    model: str | os.PathLike | None, adapters: Sequence[str | os.PathLike] = ()
) -> TrainedWith | None:
    """What the checkpoint was trained with: the first of ``adapters`` then ``model`` holding a
    ``text4seg.json`` (as ms-swift reads ``args.json``; ``model`` may also be the file itself), None when
    none does (a released model, a hub id). A bad file is a ``ValueError``/``OSError`` naming it."""
    for ref in [*adapters, *([model] if model is not None else [])]:
        path = trained_file(ref)
        if path is not None:
            return read_trained_file(path)
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return [_norm(v) for v in a] == [_norm(v) for v in b]
    return _norm(a) == _norm(b)


def _norm(v: Any) -> Any:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _show(v: Any) -> str:
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return f"{v[0]}x{v[1]}"
    if isinstance(v, float) and v.is_integer():
        return f"{v:g}"
    return str(v)


def resolve(
    option_name: str,
    given: Any,
    trained_value: Any,
    force: bool = False,
    *,
    where: str | os.PathLike | None = None,
) -> Any:
    """The value of ``option_name`` to use: ``given`` None -> ``trained_value``; ``given`` equal to it, or
    ``force``, or nothing trained -> ``given``; otherwise a one-line ``ValueError``::

        --scheme compact disagrees with CKPT/text4seg.json (rrle); pass --force-options to use it anyway

    ``where``: the file named in the message (default ``text4seg.json``). Grids compare as pairs (a
    tuple equals a list), numbers as floats.
    """
    if given is None:
        return trained_value
    if trained_value is None or force or _same(given, trained_value):
        return given
    raise ValueError(
        f"{option_name} {_show(given)} disagrees with {where or TRAINED_NAME} ({_show(trained_value)}); "
        f"pass {FORCE_FLAG} to use it anyway"
    )


def template_of(question: str, label: str) -> str | None:
    """The template of ``question`` asking for ``label`` (its first occurrence as ``{target}``), None
    when the question does not contain the label."""
    if not label or label not in question:
        return None
    return question.replace(label, TARGET, 1)


def fill(template: str, target: str) -> str:
    """A question from a template: ``{target}`` replaced by ``target`` (no other brace is read)."""
    return template.replace(TARGET, target)


MAX_QUESTIONS = 32  # distinct question templates recorded; more are summed up in question_family
MAX_ANSWERS = 16  # distinct answer sentences recorded


class Collector:
    """Derive a :class:`TrainedWith` from training rows (their ``text4seg`` blocks and messages).

    ``add(row)`` for every row (rows without a ``text4seg`` block, plain ms-swift rows, are counted
    apart); :meth:`result` gives the most common scheme and grid, the distinct question templates (the
    turn's label replaced by ``{target}``), the answer sentences (the text before ``<seg>``), tasks and
    source datasets; None when no row carried a ``text4seg`` block.
    """

    def __init__(self) -> None:
        from collections import Counter

        self.schemes: Counter = Counter()
        self.grids: Counter = Counter()
        self.questions: Counter = Counter()
        self.answers: Counter = Counter()
        self.tasks: Counter = Counter()
        self.sources: Counter = Counter()
        self.untemplated = 0
        self.plain = 0

    def add(self, row: Any) -> None:
        """Count one row (anything not shaped like a built row is counted as plain and skipped)."""
        meta = row.get("text4seg") if isinstance(row, dict) else None
        if not isinstance(meta, dict):
            self.plain += 1
            return
        scheme, grid = meta.get("scheme"), meta.get("grid")
        if isinstance(scheme, str):
            self.schemes[scheme] += 1
        if isinstance(grid, list) and len(grid) == 2 and all(isinstance(v, int) for v in grid):
            self.grids[(grid[0], grid[1])] += 1
        if isinstance(meta.get("task"), str):
            self.tasks[meta["task"]] += 1
        source = meta.get("source")
        if isinstance(source, dict) and isinstance(source.get("dataset"), str) and source["dataset"]:
            self.sources[source["dataset"]] += 1
        self._messages(row.get("messages"), meta)

    def _messages(self, messages: Any, meta: dict) -> None:
        from text4seg.descriptors import SEG_OPEN

        if not isinstance(messages, list):
            return
        users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        users = [u for u in users if isinstance(u, str)]
        labels = [str(x) for x in (meta.get("labels") or []) if isinstance(x, str)]
        for t, q in enumerate(users):
            q = q.replace("<image>", "").strip()
            turn = [labels[t]] if len(users) > 1 and len(labels) == len(users) else labels
            found = next((s for s in (template_of(q, x) for x in turn) if s), None)
            if found is None:
                self.untemplated += 1
            else:
                self.questions[found] += 1
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("content"), str):
                text = m["content"]
                cut = text.find(SEG_OPEN)
                sentence = (text[:cut] if cut >= 0 else "").strip()
                if sentence or cut >= 0:
                    self.answers[sentence] += 1

    def result(self) -> TrainedWith | None:
        """The settings seen most (module docstring); None when no row was a built text4seg row."""
        from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME

        if not self.schemes and not self.grids:
            return None
        questions = [q for q, _ in self.questions.most_common(MAX_QUESTIONS)]
        family = ""
        if len(self.questions) > MAX_QUESTIONS or self.untemplated:
            family = (
                f"{len(self.questions)} distinct templates"
                + (f", {self.untemplated} questions without their label" if self.untemplated else "")
                + (f" ({', '.join(sorted(self.sources))})" if self.sources else "")
            )
        return TrainedWith(
            scheme=self.schemes.most_common(1)[0][0] if self.schemes else DEFAULT_SCHEME,
            grid=self.grids.most_common(1)[0][0] if self.grids else tuple(DEFAULT_GRID),
            questions=questions,
            question_family=family,
            answers=[a for a, _ in self.answers.most_common(MAX_ANSWERS)],
            tasks=sorted(self.tasks),
            source=",".join(sorted(self.sources)),
        )

    def mixed(self) -> list[str]:
        """Warnings for a mix: more than one scheme or grid among the rows (the most common is recorded)."""
        out = []
        for name, counter in (("schemes", self.schemes), ("grids", self.grids)):
            if len(counter) > 1:
                shown = ", ".join(f"{_show(k)} ({n} rows)" for k, n in counter.most_common())
                out.append(f"the rows use several {name}: {shown}; recording the most common")
        return out
