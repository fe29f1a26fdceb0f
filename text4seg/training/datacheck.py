"""The data files of a recipe, checked before ms-swift starts: every problem is one line ``FILE:LINE: ...``.

A row trains when ``messages`` is a non-empty list of role/content turns with at least one assistant turn
and no empty assistant answer, the number of ``<image>`` tags equals the number of ``images``, and every
image file exists (relative paths against the recipe's folder or ``base``). ms-swift would otherwise fail
mid-run, or drop the row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from text4seg.training.recipes import as_list, data_files

IMAGE_TAG = "<image>"


class DataFileError(ValueError):
    """A data file named by a recipe is unusable; the message names the file and the line."""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style parts
        parts = []
        for part in content:
            if isinstance(part, dict):
                if part.get("type") == "image" or "image" in part or "image_url" in part:
                    parts.append(IMAGE_TAG)
                elif "text" in part:
                    parts.append(str(part["text"]))
        return "".join(parts)
    return "" if content is None else str(content)


def check_row(row: Any, base: Path) -> str | None:
    """The problem with one JSONL row (ms-swift ``messages`` format), or None when it trains.

    Checks: ``messages`` is a non-empty list of role/content turns; at least one assistant turn and no
    empty assistant answer; the number of ``<image>`` tags equals the number of ``images``; every image
    file exists (relative paths against ``base``).
    """
    if not isinstance(row, dict):
        return f"a row must be a JSON object, got {type(row).__name__}"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return f"'messages' must be a non-empty list, got {messages!r:.80}"
    n_tags, n_answers = 0, 0
    for k, turn in enumerate(messages):
        if not isinstance(turn, dict) or "role" not in turn:
            return f"messages[{k}] must be an object with 'role' and 'content', got {turn!r:.80}"
        allowed = ("system", "user", "assistant", "tool")
        if turn["role"] not in allowed:
            return f"messages[{k}].role is {turn['role']!r}, not one of {allowed}"
        text = _content_text(turn.get("content"))
        n_tags += text.count(IMAGE_TAG)
        if turn["role"] == "assistant":
            n_answers += 1
            if not text.strip():
                return f"messages[{k}] is an empty assistant answer"
    if n_answers == 0:
        return "no assistant turn: nothing to train on"
    images = as_list(row.get("images"))
    if n_tags != len(images):
        return f"{n_tags} {IMAGE_TAG} tag(s) in the messages but {len(images)} image(s) in 'images'"
    for img in images:
        path = img.get("path") if isinstance(img, dict) else img
        if not isinstance(path, str):
            return f"image entry {img!r:.80} is not a path"
        if path.startswith(("http://", "https://", "data:")):
            continue
        p = Path(path[7:] if path.startswith("file://") else path)
        if not p.is_absolute():
            p = base / p
        if not p.is_file():
            return f"image {path!r} does not exist"
    return None


def validate_jsonl(path: str | os.PathLike, *, base: str | os.PathLike | None = None) -> int:
    """Check every row of a data file (see :func:`check_row`); return the number of rows.

    Raises :class:`DataFileError` ``"FILE:LINE: problem"`` at the first bad row (a missing image, a wrong
    number of ``<image>`` tags, an empty answer, broken JSON) or when the file is missing or empty.
    Relative image paths resolve against ``base`` (default: the working directory, as in ms-swift).
    """
    p = Path(path)
    if not p.is_file():
        raise DataFileError(
            f"{p}: data file does not exist (build it with `text4seg build`, see the recipe header)"
        )
    root = Path(base) if base is not None else Path.cwd()
    n = 0
    with p.open(encoding="utf-8") as f:
        if p.suffix == ".json":
            try:
                rows = json.load(f)
            except json.JSONDecodeError as exc:
                raise DataFileError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(rows, list):
                raise DataFileError(f"{p}: a .json data file must hold a list of rows")
            numbered: Iterable[tuple[int, Any]] = ((i + 1, r) for i, r in enumerate(rows))
        else:
            numbered = _jsonl_rows(p, f)
        for line_no, row in numbered:
            problem = check_row(row, root)
            if problem:
                raise DataFileError(f"{p}:{line_no}: {problem}")
            n += 1
    if n == 0:
        raise DataFileError(f"{p}: no rows")
    return n


def _jsonl_rows(p: Path, f) -> Iterable[tuple[int, Any]]:
    for line_no, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{p}:{line_no}: not valid JSON ({exc.msg})") from None


def validate_data(recipe: Mapping[str, Any], base: str | os.PathLike | None = None) -> dict[str, int]:
    """Validate every local data file of a recipe; returns ``{file: rows}``. Raises :class:`DataFileError`."""
    return {str(p): validate_jsonl(p, base=base) for p in data_files(recipe, base)}
