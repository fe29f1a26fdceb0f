"""Input checks that run before a model is loaded: every row well-formed, every image readable.

``load_checked_queries(jsonl, ...)`` reads a built JSONL like :func:`text4seg.data.queries.load_queries`
but first checks each row's field types (``messages`` a list of ``{"role": str, "content": str}``,
``images`` a non-empty list whose first entry is a path or ``{"path": str}``, ``text4seg`` an object
whose ``id`` is a string or int, ``grid`` ``[rows, cols]`` within :data:`text4seg.descriptors.MAX_GRID_SIDE`,
``scheme`` a registered scheme, ``task`` a string, ``labels``/``asked`` lists of strings,
``width``/``height`` ints within :func:`text4seg.data.images.check_image_size` or 0) and raises one
``ValueError`` naming ``FILE:LINE``, the row's id and the field for the first bad row.
``check_images(queries)`` opens every image through :func:`text4seg.data.images.open_image` (regular
files only; the pixel limit read from the header) and decodes it once, so truncated files,
decompression bombs and FIFOs fail here, not after the model has loaded; it either raises naming the
image and the query id, or with ``skip_bad=True`` returns the good queries and one message per skipped
query.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from text4seg.data.jsonl import iter_jsonl, parse_shard
from text4seg.data.queries import Query, queries_from_row
from text4seg.descriptors import grid_shape


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
    first = images[0].get("path") if isinstance(images[0], dict) else images[0]
    if not isinstance(first, str) or not first:
        return f"images[0] must be a path or {{'path': PATH}}, got {_short(images[0])}"
    meta = row.get("text4seg", {})
    if not isinstance(meta, dict):
        return f"'text4seg' must be an object, got {type(meta).__name__}"
    return meta_problem(meta)


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def meta_problem(meta: dict) -> str | None:
    """What is wrong with the field types of a row's ``text4seg`` object (None: nothing)."""
    from text4seg.data.images import check_image_size
    from text4seg.descriptors import SCHEMES

    rid = meta.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
        return f"text4seg.id must be a string or int, got {_short(rid)}"
    if meta.get("grid") is not None:
        try:
            grid_shape(meta["grid"])
        except (TypeError, ValueError) as exc:
            return f"text4seg.grid: {exc}"
    scheme = meta.get("scheme")
    if scheme is not None and (not isinstance(scheme, str) or scheme not in SCHEMES):
        return f"text4seg.scheme must be one of {sorted(SCHEMES)}, got {_short(scheme)}"
    if not isinstance(meta.get("task", ""), str):
        return f"text4seg.task must be a string, got {_short(meta['task'])}"
    for k in ("width", "height"):
        v = meta.get(k, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            return f"text4seg.{k} must be a non-negative int, got {_short(v)}"
    if meta.get("width") and meta.get("height"):
        try:
            check_image_size(meta["height"], meta["width"], "text4seg.height x width")
        except ValueError as exc:
            return str(exc)
    for k in ("labels", "asked"):
        v = meta.get(k, [])
        if v is None:
            continue
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            return f"text4seg.{k} must be a list of strings, got {_short(v)}"
    return None


def load_checked_queries(
    jsonl: str | os.PathLike,
    root: str | os.PathLike | None = None,
    limit: int | None = None,
    shard: str | tuple[int, int] | None = None,
    with_truth: bool = False,
) -> list[Query]:
    """The queries of a built JSONL (one per user turn), every row checked first (module docstring);
    ``with_truth``: with their ground truth, for the overlays (:func:`text4seg.data.queries.row_truth`)."""
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
            out.extend(queries_from_row(row, root, k, with_truth))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        if limit is not None and len(out) >= limit:
            return out[:limit]
    if not rows:
        raise ValueError(f"{jsonl} has no rows (an empty file?)")
    return out


def image_problem(path: str) -> str | None:
    """Why an image cannot be used (missing, a folder or FIFO, not an image, over the pixel limit,
    truncated), or None. Opened through :func:`text4seg.data.images.open_image` and decoded once."""
    return _image_check(path)[0]


def _image_check(path: str) -> tuple[str | None, tuple[int, int] | None]:
    """``(problem or None, (height, width) or None)`` of one image file."""
    from text4seg.data.images import open_image

    if not os.path.exists(path):
        return "not found", None
    if os.path.isdir(path):
        return "a folder, not an image file", None
    try:
        with open_image(path) as im:
            im.load()
            return None, (im.height, im.width)
    except (OSError, ValueError) as exc:  # not an image, a FIFO, over the pixel limit, truncated
        return str(exc).removeprefix(f"{path}: "), None


def check_images(queries: Sequence[Query], skip_bad: bool = False) -> tuple[list[Query], list[str]]:
    """``(good queries, messages of the skipped ones)``; without ``skip_bad`` the first bad image raises
    ``ValueError`` naming it and the query's id. Each image is decoded once."""
    seen: dict[str, tuple[str | None, tuple[int, int] | None]] = {}
    good, skipped = [], []
    for q in queries:
        if q.image not in seen:
            seen[q.image] = _image_check(q.image)
        problem = seen[q.image][0]
        if problem is None:
            good.append(q)
            continue
        msg = f"image {q.image} of query {q.id!r} (turn {q.turn}): {problem}"
        if not skip_bad:
            raise ValueError(f"{msg} (--skip-bad continues without it; --root DIR for relative paths)")
        skipped.append(msg)
    return good, skipped
