"""The data files of a recipe, checked before ms-swift starts: every problem is one line ``FILE:LINE: ...``.

A row trains when ``messages`` is a non-empty list of role/content turns with at least one assistant turn
and no empty assistant answer, the number of ``<image>`` tags equals the number of ``images``, and every
image file exists (relative paths against the recipe's folder or ``base``). ms-swift would otherwise fail
mid-run, or drop the row.

JSONL files are read with :func:`text4seg.data.jsonl.iter_lines` (bounded lines) and
:func:`~text4seg.data.jsonl.parse_line` (strict JSON: no ``NaN``, no nesting deeper than the parser
handles, UTF-8 only), so a hostile data file is one line ``FILE:LINE: ...`` too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from text4seg.data.jsonl import iter_lines, parse_line, quote
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
        return f"'messages' must be a non-empty list, got {quote(messages, 80)}"
    n_tags, n_answers = 0, 0
    for k, turn in enumerate(messages):
        if not isinstance(turn, dict) or "role" not in turn:
            return f"messages[{k}] must be an object with 'role' and 'content', got {quote(turn, 80)}"
        allowed = ("system", "user", "assistant", "tool")
        if turn["role"] not in allowed:
            return f"messages[{k}].role is {quote(turn['role'], 80)}, not one of {allowed}"
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
            return f"image entry {quote(img, 80)} is not a path"
        if path.startswith(("http://", "https://", "data:")):
            continue
        p = Path(path[7:] if path.startswith("file://") else path)
        if not p.is_absolute():
            p = base / p
        try:
            exists = p.is_file()
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte
            return f"image {quote(path)} cannot be checked ({type(exc).__name__})"
        if not exists:
            return f"image {quote(path)} does not exist"
    return None


def validate_jsonl(
    path: str | os.PathLike,
    *,
    base: str | os.PathLike | None = None,
    on_row: Callable[[Any], None] | None = None,
) -> int:
    """Check every row of a data file (see :func:`check_row`); return the number of rows.

    Raises :class:`DataFileError` ``"FILE:LINE: problem"`` at the first bad row (a missing image, a wrong
    number of ``<image>`` tags, an empty answer, broken JSON) or when the file is missing or empty.
    Relative image paths resolve against ``base`` (default: the working directory, as in ms-swift).
    ``on_row``: called with every good row (e.g. :class:`text4seg.checkpoints.trained.Collector`'s ``add``).
    """
    p = Path(path)
    if not p.is_file():
        raise DataFileError(
            f"{p}: data file does not exist (build it with `text4seg build`, see the recipe header)"
        )
    root = Path(base) if base is not None else Path.cwd()
    n = 0
    numbered = _json_rows(p) if p.suffix == ".json" else _jsonl_rows(p)
    for line_no, row in numbered:
        problem = check_row(row, root)
        if problem:
            raise DataFileError(f"{p}:{line_no}: {problem}")
        if on_row is not None:
            on_row(row)
        n += 1
    if n == 0:
        raise DataFileError(f"{p}: no rows")
    return n


def _json_rows(p: Path) -> Iterable[tuple[int, Any]]:
    """The rows of a ``.json`` data file (one JSON list) numbered from 1; ``DataFileError`` names the file."""
    try:
        with p.open(encoding="utf-8") as f:
            rows = json.load(f, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{p}: not UTF-8 text (at byte offset {exc.start})") from None
    except RecursionError:
        raise DataFileError(f"{p}: JSON nested too deep") from None
    except ValueError as exc:  # NaN, Infinity
        raise DataFileError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(rows, list):
        raise DataFileError(f"{p}: a .json data file must hold a list of rows")
    return ((i + 1, r) for i, r in enumerate(rows))


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _jsonl_rows(p: Path) -> Iterable[tuple[int, Any]]:
    """The rows of a JSONL data file with their line numbers (bounded lines, strict JSON objects)."""
    try:
        for line_no, raw in iter_lines(p):
            row = parse_line(raw, p, line_no)
            if row is not None:
                yield line_no, row
    except DataFileError:
        raise
    except ValueError as exc:  # parse_line and iter_lines name the file and line
        raise DataFileError(str(exc)) from None


def validate_data(
    recipe: Mapping[str, Any],
    base: str | os.PathLike | None = None,
    on_row: Callable[[Any], None] | None = None,
) -> dict[str, int]:
    """Validate every local training data file of a recipe (``dataset``, not ``val_dataset``, goes to
    ``on_row``); returns ``{file: rows}``. Raises :class:`DataFileError`."""
    train = {str(p) for p in data_files({"dataset": recipe.get("dataset")}, base)} if on_row else set()
    return {
        str(p): validate_jsonl(p, base=base, on_row=on_row if str(p) in train else None)
        for p in data_files(recipe, base)
    }
