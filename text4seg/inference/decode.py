"""Decode answers generated elsewhere (``swift infer`` output or any JSONL) into masks and result records.

``decode_jsonl(path, out_dir, ...)`` reads one answer per line and writes, atomically,
``OUT/decoded.jsonl`` (result records, the same schema as ``text4seg predict``'s ``results.jsonl``:
:mod:`text4seg.inference.results`), ``OUT/masks/NNNNNN.png`` (the coarse mask of line N+1, 0/255) and
``OUT/repairs.json`` (:func:`~text4seg.inference.results.repair_report`). ``decode_text`` decodes one
answer to one PNG.

Input line: the answer is the first string among :data:`RESPONSE_KEYS`, else the last message when it is
the assistant's; the image is ``images[0]`` (a path or ``{"path": ...}``) or ``image``; the size comes from
``text4seg.height/width`` or top-level ``height/width``, else from the image file; ``text4seg`` (a built
row's metadata) also gives the id, grid, scheme and labels when present; else a top-level ``id`` (swift
``infer`` rows ``{"response", "images", "id"}``) is the record's id, else the line's index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from text4seg._lazy import require
from text4seg.data.records import AtomicWriter, check_image_size, read_jsonl
from text4seg.descriptors import DEFAULT_SCHEME, grid_shape
from text4seg.inference.outdir import check_out_dir
from text4seg.inference.queries import turn_labels
from text4seg.inference.results import AnswerMasks, answer_to_masks, make_record, repair_report, save_mask_png

RESPONSE_KEYS = ("response", "answer", "text", "output", "prediction")


def response_text(row: dict, where: str) -> str:
    """The answer of one input line (see the module docstring); ``where`` names the line in errors."""
    for k in RESPONSE_KEYS:
        if isinstance(row.get(k), str):
            return row[k]
    msgs = row.get("messages") or []
    if isinstance(msgs, list) and msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "assistant":
        if not isinstance(msgs[-1].get("content"), str):
            raise ValueError(f"{where}: the last assistant message's content is not a string")
        return msgs[-1]["content"]
    raise ValueError(f"{where}: no response field (looked for {RESPONSE_KEYS} and a last assistant message)")


def _question(row: dict) -> str:
    msgs = row.get("messages") or []
    users = [
        m["content"]
        for m in (msgs if isinstance(msgs, list) else [])
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str)
    ]
    return users[-1].replace("<image>", "").strip() if users else ""


def decode_text(
    answer: str,
    height: int,
    width: int,
    out_png: str | os.PathLike,
    grid: tuple[int, int] = (16, 16),
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
    grid: tuple[int, int] = (16, 16),
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
    from PIL import Image

    path, out = Path(path), Path(out_dir)
    if not path.is_file():
        raise OSError(f"no such file: {path}")
    rows = list(read_jsonl(path))
    if not rows:
        raise ValueError(f"{path} has no rows (an empty file?)")
    check_out_dir(out, files=["decoded.jsonl", "repairs.json"], folders=["masks"])  # no write through a link
    tqdm = require("tqdm").tqdm
    records = []
    with AtomicWriter(out / "decoded.jsonl") as wr:
        for n, row in enumerate(tqdm(rows, unit="answer", desc="decode", disable=not progress), 1):
            where = f"{path}:{n}"
            meta = row.get("text4seg") or {}
            answer = response_text(row, where)
            image = None
            images = row.get("images") or ([row["image"]] if row.get("image") else [])
            if images:
                image = images[0].get("path") if isinstance(images[0], dict) else images[0]
                if root is not None and image and not os.path.isabs(image):
                    image = os.path.join(root, image)
            if not isinstance(meta, dict):
                raise ValueError(f"{where}: 'text4seg' must be an object, got {type(meta).__name__}")
            h = meta.get("height") or row.get("height") or 0
            w = meta.get("width") or row.get("width") or 0
            if h or w:
                h, w = check_image_size(h, w, where)
            if not (h and w):
                if not image:
                    raise ValueError(f"{where}: no image path and no width/height")
                if not os.path.isfile(image):
                    raise OSError(f"{where}: image not found: {image} (use --root DIR)")
                try:
                    with Image.open(image) as im:
                        w, h = im.size
                except OSError as exc:
                    raise OSError(f"{where}: unreadable image {image}: {exc}") from None
            try:
                g = grid_shape(meta["grid"]) if meta.get("grid") else grid
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}: text4seg.grid: {exc}") from None
            sch = scheme or meta.get("scheme", DEFAULT_SCHEME)
            mask_png = f"masks/{n - 1:06d}.png"
            am = decode_text(answer, h, w, out / mask_png, g, sch, geometry)
            rec = make_record(
                id=str(meta.get("id", row.get("id", n - 1))),  # swift-style rows keep their top-level id
                turn=0,
                image=image,
                query=_question(row),
                labels=turn_labels(meta, 0, 1) if meta else [],
                answer=answer,
                scheme=sch,
                grid=g,
                masks=am,
                mask_png=mask_png,
            )
            records.append(rec)
            wr.write(json.dumps(rec, ensure_ascii=False))
    report = repair_report(records)
    with AtomicWriter(out / "repairs.json") as wr:
        wr.write(json.dumps(report, indent=2))
    return report
