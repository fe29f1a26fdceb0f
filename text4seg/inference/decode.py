"""Decode answers generated elsewhere (``swift infer`` output or any JSONL) into masks and result records.

``decode_jsonl(path, out_dir, ...)`` reads one answer per line and writes, atomically,
``OUT/decoded.jsonl`` (result records, the same schema as ``text4seg predict``'s ``results.jsonl``:
:mod:`text4seg.data.results`), ``OUT/masks/NNNNNN.png`` (the coarse mask of line N+1, 0/255) and
``OUT/repairs.json`` (:func:`~text4seg.data.results.repair_report`). ``decode_text`` decodes one
answer to one PNG.

Input line: the answer is the first string among :data:`RESPONSE_KEYS`, else the last message when it is
the assistant's; the image is ``images[0]`` (a path or ``{"path": ...}``) or ``image``; the size comes from
``text4seg.height/width`` or top-level ``height/width``, else from the image file; ``text4seg`` (a built
row's metadata) also gives the id, grid, scheme and labels when present; else a top-level ``id`` is the
record's id; else the id is ``""``: a ``swift infer`` row (keys ``response, labels, logprobs, messages,
images, dataset``; ``images`` as ``[{"bytes": null, "path": ...}]``, the built row's ``text4seg`` block
dropped) carries no id, and ``text4seg evaluate`` joins such a record with the ground-truth row of the same
image and question (never by position). The record's ``turn`` is the index of the last user message (the
turn the answer replies to). The image size is read from the header only
(:func:`text4seg.data.images.image_size`: a decompression bomb is one error line).

When more than half of the answers need lenient repairs under the grid and scheme used, the command
warns on stderr (:func:`repair_warning`): the answers were probably written on another ``--grid`` or
``--scheme``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from text4seg._lazy import require
from text4seg.data.images import check_image_size, image_size
from text4seg.data.jsonl import AtomicWriter, read_jsonl
from text4seg.data.overlay import save_mask_png
from text4seg.data.queries import turn_labels
from text4seg.data.result_checks import check_grid
from text4seg.data.results import (
    AnswerMasks,
    answer_to_masks,
    make_record,
    repair_report,
    user_questions,
)
from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME, SCHEMES
from text4seg.inference.outdir import check_out_dir

RESPONSE_KEYS = ("response", "answer", "text", "output", "prediction")


def response_text(row: dict, where: str) -> str:
    """The answer of one input line (see the module docstring); ``where`` names the line in errors."""
    for k in RESPONSE_KEYS:
        if isinstance(row.get(k), str):
            return row[k]
    for k in RESPONSE_KEYS:
        if row.get(k) is not None:
            raise ValueError(
                f"{where}: {k}: expected the answer text (a string), got {type(row[k]).__name__}"
            )
    msgs = row.get("messages") or []
    if isinstance(msgs, list) and msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "assistant":
        if not isinstance(msgs[-1].get("content"), str):
            raise ValueError(f"{where}: messages: the last assistant message's content is not a string")
        return msgs[-1]["content"]
    raise ValueError(f"{where}: no response field (looked for {RESPONSE_KEYS} and a last assistant message)")


def image_of(row: dict, where: str, root: str | os.PathLike | None = None) -> str | None:
    """The image path of one input line: ``images[0]`` (a path or ``{"path": ...}``, swift's form) or
    ``image``; relative paths joined to ``root``. ``ValueError`` naming the field of a malformed value."""
    images = row.get("images")
    if images is None:
        images = [row["image"]] if row.get("image") is not None else []
    if isinstance(images, (str, dict)):
        images = [images]
    if not isinstance(images, list):
        raise ValueError(f"{where}: images: expected a list of paths, got {type(images).__name__}")
    if not images:
        return None
    first = images[0]
    if isinstance(first, dict) and "path" not in first:
        raise ValueError(f"{where}: images[0]: expected a path or {{'path': ...}}, got {str(first)[:60]!r}")
    image = first.get("path") if isinstance(first, dict) else first
    if image is not None and not isinstance(image, str):
        raise ValueError(f"{where}: images[0]: expected a path (string), got {str(first)[:60]!r}")
    if root is not None and image and not os.path.isabs(image):
        image = os.path.join(root, image)
    return image or None


def _meta(row: dict, where: str) -> dict:
    """The line's ``text4seg`` block (``{}`` when absent), its id, labels and scheme type-checked."""
    meta = row.get("text4seg")
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: text4seg: must be an object, got {type(meta).__name__}")
    for k in ("id",):
        if k in meta and (isinstance(meta[k], bool) or not isinstance(meta[k], (str, int))):
            raise ValueError(f"{where}: text4seg.{k}: expected a string, got {str(meta[k])[:60]!r}")
    for k in ("labels", "asked"):
        if meta.get(k) is not None and not isinstance(meta[k], list):
            raise ValueError(f"{where}: text4seg.{k}: expected a list of labels, got {str(meta[k])[:60]!r}")
    if "scheme" in meta and (not isinstance(meta["scheme"], str) or meta["scheme"] not in SCHEMES):
        raise ValueError(f"{where}: text4seg.scheme: unknown scheme {str(meta['scheme'])[:60]!r}")
    return meta


def _row_id(row: dict, meta: dict, where: str) -> str:
    rid = meta.get("id", row.get("id", ""))
    if rid is None or isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise ValueError(f"{where}: id: expected a string, got {type(rid).__name__} {str(rid)[:60]!r}")
    return str(rid)


def _size(row: dict, meta: dict, image: str | None, where: str) -> tuple[int, int]:
    """``(height, width)`` of a line: ``text4seg.height/width``, top-level ``height/width``, else the
    image file's header."""
    h = meta["height"] if meta.get("height") is not None else row.get("height")
    w = meta["width"] if meta.get("width") is not None else row.get("width")
    if h is not None or w is not None:
        return check_image_size(h, w, f"{where}: height/width")
    if not image:
        raise ValueError(f"{where}: no image path and no width/height")
    if not os.path.exists(image):
        raise OSError(f"{where}: image not found: {image} (use --root DIR)")
    w, h = image_size(image, f"{where}: image {image}")
    return h, w


def _plan(row: dict, where: str, root, grid: tuple[int, int], scheme: str | None) -> dict:
    """Everything one input line needs to be decoded (answer, image, size, grid, scheme, id, turn,
    question, labels), every field checked: ``ValueError`` naming ``where`` and the field. Run over the
    whole file before anything is written, so that bad input leaves no mask PNG behind."""
    meta = _meta(row, where)
    answer = response_text(row, where)
    image = image_of(row, where, root)
    h, w = _size(row, meta, image, where)
    g = check_grid(meta["grid"], f"{where}: text4seg.grid") if meta.get("grid") is not None else grid
    questions = user_questions(row.get("messages"))
    turn = max(0, len(questions) - 1)  # the answer replies to the last user turn
    return {
        "answer": answer,
        "image": image,
        "h": h,
        "w": w,
        "grid": g,
        "scheme": scheme or meta.get("scheme", DEFAULT_SCHEME),
        "id": _row_id(row, meta, where),  # "": joined by image + question (module docstring)
        "turn": turn,
        "query": questions[-1] if questions else "",
        "labels": turn_labels(meta, turn, max(1, len(questions))) if meta else [],
    }


def repair_warning(report: dict, grid: tuple[int, int], scheme: str | None) -> str | None:
    """One warning line when more than half of the answers needed repairs (None otherwise)."""
    n, bad = report.get("answers", 0), report.get("answers_repaired", 0)
    if not n or bad * 2 <= n:
        return None
    return (
        f"WARNING: {bad} of {n} answers needed repairs under the grid/scheme used (--grid "
        f"{grid[0]}x{grid[1]} --scheme {scheme or DEFAULT_SCHEME}, unless a row's text4seg says otherwise): "
        "were they written on another --grid or --scheme? see repairs.json"
    )


def decode_text(
    answer: str,
    height: int,
    width: int,
    out_png: str | os.PathLike,
    grid: tuple[int, int] = DEFAULT_GRID,
    scheme: str = DEFAULT_SCHEME,
    geometry: str = "pil",
) -> AnswerMasks:
    """Decode one answer at ``height x width`` and write its coarse mask to ``out_png`` (0/255 grey);
    ``geometry``: how the grid is painted (see :data:`text4seg.descriptors.GEOMETRIES`)."""
    am = answer_to_masks(answer, height, width, grid, scheme, geometry=geometry)
    save_mask_png(out_png, am.mask)
    return am


def decode_jsonl(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    grid: tuple[int, int] = DEFAULT_GRID,
    scheme: str | None = None,
    geometry: str = "pil",
    progress: bool = False,
) -> dict:
    """Decode every line of ``path`` into ``out_dir`` (see the module docstring); returns the repair report.

    ``root``: folder of relative image paths; ``grid`` ``(rows, cols)``: used when a line has no
    ``text4seg.grid``; ``scheme``: forces the scheme (default: the line's ``text4seg.scheme``, else
    :data:`~text4seg.descriptors.DEFAULT_SCHEME`); ``geometry``: "pil" or "official" (see
    :data:`text4seg.descriptors.GEOMETRIES`).
    """
    path, out = Path(path), Path(out_dir)
    if not path.is_file():
        raise OSError(f"no such file: {path}")
    rows = list(read_jsonl(path))
    if not rows:
        raise ValueError(f"{path} has no rows (an empty file?)")
    check_out_dir(out, files=["decoded.jsonl", "repairs.json"], folders=["masks"])  # no write through a link
    plans = [_plan(row, f"{path}:{n}", root, grid, scheme) for n, row in enumerate(rows, 1)]  # all checked
    tqdm = require("tqdm").tqdm
    records = []
    with AtomicWriter(out / "decoded.jsonl") as wr:
        for n, plan in enumerate(tqdm(plans, unit="answer", desc="decode", disable=not progress), 1):
            mask_png = f"masks/{n - 1:06d}.png"
            am = decode_text(
                plan["answer"], plan["h"], plan["w"], out / mask_png, plan["grid"], plan["scheme"], geometry
            )
            rec = make_record(
                id=plan["id"],
                turn=plan["turn"],
                image=plan["image"],
                query=plan["query"],
                labels=plan["labels"],
                answer=plan["answer"],
                scheme=plan["scheme"],
                grid=plan["grid"],
                masks=am,
                mask_png=mask_png,
            )
            records.append(rec)
            wr.write(json.dumps(rec.to_json(), ensure_ascii=False))
    report = repair_report(records)
    with AtomicWriter(out / "repairs.json") as wr:
        wr.write(json.dumps(report, indent=2))
    return report
