"""lmms-eval tasks that score text4seg masks: RefCOCO/+/g, gRefCOCO and ReasonSeg (docs/lmms-eval.md).

Each task reads a JSONL written by ``text4seg build`` (``--split val`` etc.: ground truth stored in
``text4seg.gt.masks``, one row per question). lmms-eval calls, per row:

* :func:`text4seg_doc_to_visual`: the row's image (``images[0]``), opened by
  :func:`text4seg.data.images.load_rgb` (size checked from the header, one ``ValueError`` naming the file);
* :func:`text4seg_doc_to_text`: the question, ``question_template`` of the task's
  ``lmms_eval_specific_kwargs`` filled with ``{question}`` (the row's own user message without ``<image>``:
  the training template of the checkpoint, the default) and ``{target}`` (the referring expression,
  ``text4seg.asked[0]``, else ``labels[0]``);
* :func:`text4seg_process_results`: the answer parsed by the toolkit's lenient decoder
  (:func:`text4seg.descriptors.decode`), painted at the row's size by
  :func:`text4seg.descriptors.grid_to_mask` (every non-``others`` cell is foreground, PIL-nearest
  geometry: what ``text4seg evaluate`` does by default), and compared with the stored ground truth by
  :func:`text4seg.evaluation.metrics.mask_stats`.

The aggregations (:func:`text4seg_ciou` ...) receive every row's statistics (gathered from every rank) and
call :func:`text4seg.evaluation.metrics.aggregate_referring`, the reducer of ``text4seg evaluate``: one
implementation of the metrics. A score that the set does not define (N-acc without a no-target row, T-acc
without a targeted row) is ``None``, as in ``text4seg evaluate``.

:func:`answer_mask` and :func:`sample_stats` are the per-sample helpers (the library has no public one that
works on a bare answer string and a built row: ``text4seg.data.results.answer_to_masks`` is being
reworked, so this module composes the stable descriptor functions instead).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from text4seg.data.images import load_rgb
from text4seg.data.rle import rle_to_mask
from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME, decode, grid_to_mask
from text4seg.evaluation.metrics import aggregate_referring, mask_stats

DEFAULT_TEMPLATE = "{question}"
IMAGE_TAG = "<image>"
ROOT_ENV = "TEXT4SEG_LMMS_ROOT"  # folder of relative image paths (default: the working directory)
STAT_KEYS = ("inter", "union", "iou", "pred_empty", "gt_empty")


# ------------------------------------------------------------------------------------------ rows
def _where(doc: dict) -> str:
    """``"id 'refcoco/val/0/0'"``: how errors name a row."""
    meta = doc.get("text4seg") if isinstance(doc, dict) else None
    rid = meta.get("id") if isinstance(meta, dict) else None
    return f"id {rid!r}" if rid is not None else "a row without text4seg.id"


def _meta(doc: dict) -> dict:
    """The row's ``text4seg`` block; ``ValueError`` when the row is not a built row."""
    meta = doc.get("text4seg") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("gt"), dict):
        raise ValueError(f"{_where(doc)}: no text4seg.gt: build the task's JSONL with `text4seg build`")
    return meta


def user_questions(doc: dict) -> list[str]:
    """The user messages of a built row, in order (``messages[*].content`` of role ``user``)."""
    msgs = doc.get("messages") or []
    return [str(m.get("content") or "") for m in msgs if isinstance(m, dict) and m.get("role") == "user"]


def row_question(doc: dict) -> str:
    """The row's own question without the ``<image>`` tag (the training template's rendering)."""
    questions = user_questions(doc)
    if len(questions) != 1:
        raise ValueError(
            f"{_where(doc)}: messages: {len(questions)} user turns; these tasks score one question per row "
            "(build with --turns 1)"
        )
    return " ".join(questions[0].replace(IMAGE_TAG, " ").split())


def row_target(doc: dict) -> str:
    """The referring expression of the row: ``text4seg.asked[0]``, else ``text4seg.labels[0]``."""
    meta = _meta(doc)
    for key in ("asked", "labels"):
        vals = meta.get(key)
        if isinstance(vals, list) and vals and isinstance(vals[0], str):
            return vals[0]
    raise ValueError(f"{_where(doc)}: text4seg.asked/labels: no referring expression in the row")


def row_image(doc: dict) -> str:
    """The row's image path (``images[0]``, a path or ``{"path": ...}``), relative ones resolved against
    ``$TEXT4SEG_LMMS_ROOT`` (default: the working directory)."""
    images = doc.get("images")
    first = images[0] if isinstance(images, list) and images else doc.get("image")
    path = first.get("path") if isinstance(first, dict) else first
    if not isinstance(path, str) or not path:
        raise ValueError(f"{_where(doc)}: images: no image path in the row")
    root = os.environ.get(ROOT_ENV)
    return path if os.path.isabs(path) or not root else os.path.join(root, path)


def row_ground_truth(doc: dict) -> tuple[np.ndarray, tuple[int, int], str]:
    """``(mask, grid, scheme)`` of a built row: its stored ground truth (``text4seg.gt.masks[0]``, checked
    against ``text4seg.height/width``) and the grid and scheme its answers are written on."""
    meta = _meta(doc)
    masks = meta["gt"].get("masks")
    if not isinstance(masks, list) or len(masks) != 1:
        n = len(masks) if isinstance(masks, list) else 0
        raise ValueError(
            f"{_where(doc)}: text4seg.gt.masks: expected one mask, got {n} (built with --no-gt?)"
        )
    mask = rle_to_mask(masks[0], f"{_where(doc)}: text4seg.gt.masks[0]")
    h, w = meta.get("height"), meta.get("width")
    if (h, w) != mask.shape:
        raise ValueError(
            f"{_where(doc)}: text4seg.height/width {h}x{w} differ from the ground truth's {mask.shape[0]}x"
            f"{mask.shape[1]}"
        )
    grid = meta.get("grid") or DEFAULT_GRID
    if not (
        isinstance(grid, (list, tuple)) and len(grid) == 2 and all(type(v) is int and v > 0 for v in grid)
    ):
        raise ValueError(f"{_where(doc)}: text4seg.grid: expected [rows, cols], got {str(grid)[:60]!r}")
    return mask, (grid[0], grid[1]), str(meta.get("scheme") or DEFAULT_SCHEME)


# ---------------------------------------------------------------------------------------- per sample
def answer_mask(
    answer: str, height: int, width: int, grid: tuple[int, int], scheme: str
) -> tuple[np.ndarray, bool]:
    """``(mask, parse_valid)`` of one answer: lenient decode, every non-``others`` cell foreground, painted
    at ``height x width`` (PIL-nearest, ``text4seg evaluate``'s default); ``parse_valid`` = strict parse."""
    dec = decode(answer, grid, scheme)
    return grid_to_mask(dec.grid, height, width), bool(dec.ok)


def sample_stats(doc: dict, answer: str) -> dict:
    """:func:`text4seg.evaluation.metrics.mask_stats` of one answer against the row's ground truth, plus
    ``id`` and ``parse_valid`` (JSON-serialisable: lmms-eval logs it with the sample)."""
    gt, grid, scheme = row_ground_truth(doc)
    pred, valid = answer_mask(answer, gt.shape[0], gt.shape[1], grid, scheme)
    stats = mask_stats(pred, gt)
    out = {k: stats[k] for k in STAT_KEYS}
    out.update(id=str(_meta(doc).get("id")), parse_valid=valid)
    return out


# ----------------------------------------------------------------------------------- lmms-eval hooks
def text4seg_process_docs(dataset):
    """Check every row before any answer is generated (a built row, one question, a stored mask)."""
    for doc in dataset:
        row_question(doc)
        row_image(doc)
        row_ground_truth(doc)
    return dataset


def text4seg_doc_to_visual(doc: dict) -> list:
    """``[PIL.Image]``: the row's image, decoded as RGB (checked by :func:`text4seg.data.images.load_rgb`)."""
    path = row_image(doc)
    return [load_rgb(path, f"{_where(doc)}: images[0] {path}")]


def text4seg_doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The question: ``question_template`` (default ``"{question}"``, the row's own question) filled with
    ``{question}`` and ``{target}``."""
    kw = lmms_eval_specific_kwargs or {}
    template = kw.get("question_template") or DEFAULT_TEMPLATE
    fields = {"question": row_question(doc)}
    if "{target}" in template:
        fields["target"] = row_target(doc)
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"question_template {template!r}: {exc!r}; use the fields {{question}} and {{target}}"
        ) from None


def text4seg_doc_to_target(doc: dict) -> str:
    """The row's reference answer (the assistant message), for lmms-eval's sample logs."""
    msgs = doc.get("messages") or []
    return next(
        (str(m.get("content")) for m in msgs if isinstance(m, dict) and m.get("role") == "assistant"), ""
    )


def _answer_text(results: Sequence) -> str:
    first = results[0] if results else ""
    if first is None:
        return ""
    return first if isinstance(first, str) else str(getattr(first, "text", first))


def text4seg_process_results(doc: dict, results: Sequence) -> dict:
    """Every metric gets the same per-sample statistics (:func:`sample_stats`); the aggregations reduce."""
    stats = sample_stats(doc, _answer_text(results))
    return {name: stats for name in ("ciou", "giou", "n_acc", "t_acc", "parse_valid")}


def _reduce(items: Sequence[dict], key: str):
    return aggregate_referring(list(items))[key]


def text4seg_ciou(items: Sequence[dict]):
    """cIoU: sum of intersections / sum of unions over the set (:func:`aggregate_referring`)."""
    return _reduce(items, "ciou")


def text4seg_giou(items: Sequence[dict]):
    """gIoU: mean per-sample IoU, empty vs empty = 1 (:func:`aggregate_referring`)."""
    return _reduce(items, "giou")


def text4seg_n_acc(items: Sequence[dict]):
    """N-acc: share of no-target rows answered empty; None without no-target rows."""
    return _reduce(items, "n_acc")


def text4seg_t_acc(items: Sequence[dict]):
    """T-acc: share of targeted rows answered non-empty; None without targeted rows."""
    return _reduce(items, "t_acc")


def text4seg_parse_valid(items: Sequence[dict]):
    """Share of answers that parse strictly (``parse_valid`` of ``text4seg evaluate``)."""
    items = list(items)
    return None if not items else sum(bool(s["parse_valid"]) for s in items) / len(items)
