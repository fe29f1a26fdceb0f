"""Encoded row lengths against a recipe's ``max_length``: no training row is dropped or cut silently.

ms-swift drops a row longer than ``max_length`` without a log line (``truncation_strategy: delete``, the
default) or cuts it (``left`` / ``right``); when every row is too long it fails with "Failed to retrieve
the dataset". :func:`check_lengths` encodes rows exactly as ``swift sft`` will (ms-swift's own template,
built from the recipe's ``model``, ``model_type``, ``template``, ``max_pixels``, ``ENV`` and plugins, in
training mode, so images become their real number of image tokens) and reports every row over
``max_length`` by file and line:

    >>> report = check_lengths(recipe)                      # doctest: +SKIP
    >>> print(report.summary())                             # doctest: +SKIP
    lengths: 2 of 2 rows encoded (every row), longest 1935 (data/x.jsonl:2), max_length 3072: none over
    >>> enforce(report)                                     # raises RowsTooLongError when rows are over

Which rows: every row when ``sample`` is None (exact; about 5-20 ms a row on one CPU core, so hours for
the ~800k rows of a full RES recipe), else a documented deterministic sample per file: ``sample`` rows
evenly spaced over the file (first and last included) plus the ``sample // 10`` rows with the longest
text (the answers that cost most tokens), chosen by a cheap pass over the file. ``text4seg train`` uses
:data:`DEFAULT_SAMPLE`.

The override :data:`ALLOW_KEY` (``--set allow_dropped_rows=true``) accepts the loss; it is a text4seg key
that :func:`pop_allow` removes from the recipe before the ``swift sft`` command is built.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text4seg._lazy import require
from text4seg.training.recipes import as_list, data_files, recipe_env

ALLOW_KEY = "allow_dropped_rows"
DEFAULT_SAMPLE = 2000
# ms-swift's default when a recipe does not set truncation_strategy
DEFAULT_TRUNCATION = "delete"


@dataclass(frozen=True)
class RowLength:
    """One encoded row: ``file``, 1-based ``line``, ``length`` in tokens (max of input ids and labels)."""

    file: str
    line: int
    length: int


@dataclass
class LengthReport:
    """What :func:`check_lengths` measured. ``over``: rows longer than ``max_length``, longest first."""

    max_length: int | None
    truncation: str
    rows_total: int
    rows_checked: int
    longest: RowLength | None
    over: list[RowLength] = field(default_factory=list)

    @property
    def every_row(self) -> bool:
        return self.rows_checked == self.rows_total

    def summary(self) -> str:
        """One line: rows checked, the longest row, and how many are over ``max_length``."""
        which = "every row" if self.every_row else f"a deterministic sample of {self.rows_total}"
        longest = f"{self.longest.length} ({self.longest.file}:{self.longest.line})" if self.longest else "-"
        limit = "none" if self.max_length is None else str(self.max_length)
        verdict = "none over" if not self.over else f"{len(self.over)} over"
        return (
            f"lengths: {self.rows_checked} of {self.rows_total} rows encoded ({which}), longest {longest}, "
            f"max_length {limit}: {verdict}"
        )

    def details(self, limit: int = 20) -> str:
        """The rows over ``max_length`` as ``FILE:LINE: N tokens`` lines (the first ``limit``)."""
        lines = [f"{r.file}:{r.line}: {r.length} tokens > max_length {self.max_length}" for r in self.over]
        if len(lines) > limit:
            lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
        return "\n".join(lines)


class RowsTooLongError(ValueError):
    """Rows are longer than the recipe's ``max_length``; ``report`` holds them. The message names the first
    file:line, what ms-swift would do with them, and the override that accepts it."""

    def __init__(self, report: LengthReport):
        self.report = report
        first = report.over[0]
        action = "drop" if report.truncation == "delete" else f"cut ({report.truncation})"
        sampled = "" if report.every_row else " (in a sample of the rows; others may be over too)"
        super().__init__(
            f"{first.file}:{first.line}: encodes to {first.length} tokens > max_length {report.max_length}; "
            f"{len(report.over)} row(s) over{sampled}, which ms-swift would {action}. Raise max_length, "
            f"shorten the rows, or accept it with --set {ALLOW_KEY}=true\n{report.details()}"
        )


def pop_allow(recipe: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """``(recipe without ALLOW_KEY, its value as bool)``: the key must never reach ms-swift."""
    out = dict(recipe)
    value = out.pop(ALLOW_KEY, False)
    if isinstance(value, str):
        value = value.strip().lower() in ("1", "true", "yes")
    return out, bool(value)


def enforce(report: LengthReport, allow_dropped_rows: bool = False) -> LengthReport:
    """Raise :class:`RowsTooLongError` when rows are over ``max_length`` and the user did not accept it."""
    if report.over and not allow_dropped_rows:
        raise RowsTooLongError(report)
    return report


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open(encoding="utf-8") as f:
        if path.suffix == ".json":
            yield from ((i + 1, r) for i, r in enumerate(json.load(f)))
            return
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                yield line_no, json.loads(line)


def sample_lines(lengths: Sequence[tuple[int, int]], sample: int | None) -> list[int]:
    """The lines to encode from ``[(line, text_chars), ...]`` (see the module docstring), in file order."""
    if sample is None or len(lengths) <= sample:
        return [line for line, _ in lengths]
    n = len(lengths)
    picked = {lengths[round(k * (n - 1) / max(1, sample - 1))][0] for k in range(sample)}
    longest = sorted(lengths, key=lambda t: (-t[1], t[0]))[: max(1, sample // 10)]
    picked.update(line for line, _ in longest)
    return sorted(picked)


def _text_chars(row: dict) -> int:
    return sum(len(json.dumps(m.get("content", ""), ensure_ascii=False)) for m in row.get("messages") or [])


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_template(recipe: Mapping[str, Any]) -> Any:
    """ms-swift's training template for a recipe (processor only, no weights), without a length limit.

    Imports the recipe's ``external_plugins`` (text4seg templates) and applies its ``ENV`` (ms-swift's
    rule: variables already set win) while the processor loads. qwen-vl-utils reads ``MAX_PIXELS`` once per
    process, so measure one recipe family per process.
    """
    swift_model = require("swift.model")
    swift_template = require("swift.template")
    utils = require("swift.utils")
    for plugin in as_list(recipe.get("external_plugins")):
        utils.import_external_file(str(plugin))
    with _environment(recipe_env(recipe)):
        processor = swift_model.get_processor(
            str(recipe["model"]), model_type=recipe.get("model_type"), download_model=False
        )
        template = swift_template.get_template(
            processor,
            template_type=recipe.get("template"),
            max_length=None,
            max_pixels=recipe.get("max_pixels"),
            truncation_strategy="raise",
        )
        template.set_mode("train")
    return template


def encoded_length(template: Any, row: Mapping[str, Any]) -> int:
    """Tokens of one row encoded for training: max(len(input_ids), len(labels)), as ms-swift compares."""
    encoded = template.encode({k: v for k, v in row.items() if k in ("messages", "images")})
    ids, labels = encoded.get("input_ids") or [], encoded.get("labels") or []
    return max(len(ids), len(labels))


def check_lengths(
    recipe: Mapping[str, Any],
    *,
    sample: int | None = DEFAULT_SAMPLE,
    base: str | os.PathLike | None = None,
    template: Any = None,
) -> LengthReport:
    """Encode the rows of every local data file of ``recipe`` with its own template; see the module doc.

    ``sample``: None = every row; else the deterministic sample per file. ``base``: folder relative data
    paths resolve against (default: the working directory, as ms-swift). ``template``: a prebuilt
    :func:`build_template` (tests). Image paths in rows resolve against the working directory, as in
    ms-swift. Returns a :class:`LengthReport`; :func:`enforce` turns rows over into an error.
    """
    template = build_template(recipe) if template is None else template
    max_length = recipe.get("max_length")
    max_length = None if max_length is None else int(max_length)
    total, checked, longest, over = 0, 0, None, []
    for path in data_files(recipe, base):
        chars = [(line, _text_chars(row)) for line, row in _rows(path)]
        total += len(chars)
        wanted = set(sample_lines(chars, sample))
        with _environment(recipe_env(recipe)):
            for line, row in _rows(path):
                if line not in wanted:
                    continue
                n = encoded_length(template, row)
                checked += 1
                r = RowLength(str(path), line, n)
                if longest is None or n > longest.length:
                    longest = r
                if max_length is not None and n > max_length:
                    over.append(r)
    over.sort(key=lambda r: (-r.length, r.file, r.line))
    truncation = str(recipe.get("truncation_strategy") or DEFAULT_TRUNCATION)
    return LengthReport(max_length, truncation, total, checked, longest, over)


def guard(
    recipe: Mapping[str, Any],
    *,
    sample: int | None = DEFAULT_SAMPLE,
    base: str | os.PathLike | None = None,
    template: Any = None,
) -> tuple[dict[str, Any], LengthReport]:
    """What ``text4seg train`` (and ``--dry-run``) calls before building the ``swift sft`` command:
    ``(recipe without ALLOW_KEY, report)``. Raises :class:`RowsTooLongError` when rows are over
    ``max_length`` unless the recipe (an override) sets ``allow_dropped_rows: true``."""
    stripped, allow = pop_allow(recipe)
    report = check_lengths(stripped, sample=sample, base=base, template=template)
    return stripped, enforce(report, allow_dropped_rows=allow)
