"""Input checks that run before a model is loaded: every row well-formed, every image readable.

``load_checked_queries(jsonl, ...)`` reads a built JSONL like :func:`text4seg.inference.queries.load_queries`
but first checks each row's field types (``messages`` a list of ``{"role": str, "content": str}``,
``images`` a non-empty list, ``text4seg`` an object whose ``grid`` is ``[rows, cols]`` within
:data:`text4seg.descriptors.MAX_GRID_SIDE`, ``width``/``height`` non-negative ints) and raises one
``ValueError`` naming ``FILE:LINE`` (and the row's id) for the first bad row. ``check_images(queries)``
opens and decodes every image once (truncated files fail here, not after the model has loaded) and
either raises naming the image and the query id, or with ``skip_bad=True`` returns the good queries and
one message per skipped query.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from text4seg.data.records import iter_jsonl, parse_shard
from text4seg.descriptors import grid_shape
from text4seg.inference.queries import Query, queries_from_row


def row_problem(row: dict) -> str | None:
    """What is wrong with the field types of one built row (None: nothing)."""
    msgs = row.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return f"'messages' must be a non-empty list, got {type(msgs).__name__}"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            return f"messages[{i}] must be an object, got {type(m).__name__}"
        if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            got = f"role {type(m.get('role')).__name__}, content {type(m.get('content')).__name__}"
            return f"messages[{i}] needs a string role and content ({got})"
    images = row.get("images")
    if not isinstance(images, list) or not images:
        return f"'images' must be a non-empty list, got {type(images).__name__}"
    meta = row.get("text4seg", {})
    if not isinstance(meta, dict):
        return f"'text4seg' must be an object, got {type(meta).__name__}"
    if meta.get("grid") is not None:
        try:
            grid_shape(meta["grid"])
        except (TypeError, ValueError) as exc:
            return f"text4seg.grid: {exc}"
    for k in ("width", "height"):
        v = meta.get(k, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            return f"text4seg.{k} must be a non-negative int, got {v!r}"
    for k in ("labels", "asked"):
        if not isinstance(meta.get(k, []), list):
            return f"text4seg.{k} must be a list, got {type(meta[k]).__name__}"
    return None


def load_checked_queries(
    jsonl: str | os.PathLike,
    root: str | os.PathLike | None = None,
    limit: int | None = None,
    shard: str | tuple[int, int] | None = None,
) -> list[Query]:
    """The queries of a built JSONL (one per user turn), every row checked first (module docstring)."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    i, n = parse_shard(shard)
    out: list[Query] = []
    rows = 0
    for k, (line, row) in enumerate(iter_jsonl(jsonl)):
        rows += 1
        if k % n != i:
            continue
        problem = row_problem(row)
        rid = row.get("text4seg", {}).get("id") if isinstance(row.get("text4seg"), dict) else None
        where = f"{jsonl}:{line}" + (f" (id {rid!r})" if rid is not None else "")
        if problem:
            raise ValueError(f"{where}: {problem}")
        try:
            out.extend(queries_from_row(row, root, k))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        if limit is not None and len(out) >= limit:
            return out[:limit]
    if not rows:
        raise ValueError(f"{jsonl} has no rows (an empty file?)")
    return out


def image_problem(path: str) -> str | None:
    """Why an image cannot be used (missing, a folder, not an image, truncated), or None."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.exists(path):
        return "not found"
    if os.path.isdir(path):
        return "a folder, not an image file"
    try:
        with Image.open(path) as im:
            im.load()
    except UnidentifiedImageError:
        return "not an image file PIL can read"
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        return f"unreadable ({exc})"
    return None


def check_images(queries: Sequence[Query], skip_bad: bool = False) -> tuple[list[Query], list[str]]:
    """``(good queries, messages of the skipped ones)``; without ``skip_bad`` the first bad image raises
    ``ValueError`` naming it and the query's id. Each image is decoded once."""
    seen: dict[str, str | None] = {}
    good, skipped = [], []
    for q in queries:
        if q.image not in seen:
            seen[q.image] = image_problem(q.image)
        problem = seen[q.image]
        if problem is None:
            good.append(q)
            continue
        msg = f"image {q.image} of query {q.id!r} (turn {q.turn}): {problem}"
        if not skip_bad:
            raise ValueError(f"{msg} (--skip-bad continues without it; --root DIR for relative paths)")
        skipped.append(msg)
    return good, skipped
