"""Evaluate: join result records (``results.jsonl`` of ``text4seg predict``/``decode``, schema in
:mod:`text4seg.data.results`) with the built ground truth.

``evaluate(pred_path, gt_path, out_dir=None, ...) -> dict`` scores raw (coarse) and SAM-refined masks side
by side and, with ``out_dir``, writes ``metrics.json`` and ``per_sample.jsonl`` (atomically).

Join key: ``(text4seg.id, turn)``; a record without an id (``id == ""``: a ``swift infer`` row decoded by
``text4seg decode``, whose ``text4seg`` block ms-swift dropped) joins the ground-truth query with the same
image path and question (the user message without ``<image>``), and two such ground-truth queries are an
error, never a guess. A record decoded on another grid or scheme than its ground-truth row was built with
is refused (one line naming both): its scores would be silently wrong. The ground truth of turn ``t``
is ``text4seg.gt.masks[t]`` (full resolution COCO RLE) for referring tasks, and the label-map PNG
``text4seg.gt.label_map`` (pixel value ``v`` is class ``classes[v]``, values in ``gt.ignore`` ignored)
for ``task == "semantic"``. Relative paths resolve against ``root``. Ground-truth rows without a
prediction are reported as ``missing`` (not scored); predictions without ground truth as ``unmatched``.

Scores (conventions in :mod:`text4seg.evaluation.metrics`):

* referring tasks (res, gres, reason, shapes): cIoU, gIoU, N-acc, T-acc, Pr@0.5..0.9, and REC
  ``acc@0.5`` of the mask's box against the ground-truth mask's box (pixel-edge boxes, exclusive max).
* semantic: per-class I and U summed over the set, mIoU over the benchmark's classes; the background
  class (named ``others``) takes part in the confusion (a class predicted on background pixels is a
  false positive) but is left out of the headline mean unless ``semantic_background=True``; both means
  are always reported, labelled: ``miou_without_background`` and ``miou_with_background`` (the latter
  over K = 21 / 60 / 151 classes for VOC-20 / PC-59 / ADE-150, which is what the official Text4Seg
  evaluation and the paper's semantic tables report); ignored pixels count nowhere; a predicted label
  that is not a benchmark class is wrong on its pixels.

By default every non-``others`` label of an answer is foreground (published convention). With
``label_only=True`` only the queried labels are (coarse masks, and refined masks when the record has
``refined_labels``; an older record's ``refined`` union is used as stored), and ``other_label_answers``
counts answers naming another label either way. Refined semantic maps come from ``refined_labels``
(records without it have no refined semantic score).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from text4seg._lazy import require
from text4seg.data.images import open_image
from text4seg.data.queries import turn_labels
from text4seg.data.records import AtomicWriter, check_image_size, iter_jsonl
from text4seg.data.results import (
    answer_to_masks,
    check_grid,
    iter_records,
    repair_report,
    rles_to_label_map,
    select_labels,
    user_questions,
)
from text4seg.data.rle import check_rle, rle_to_mask
from text4seg.descriptors import BACKGROUND, SCHEMES, normalize_label
from text4seg.evaluation.metrics import (
    aggregate_referring,
    box_iou,
    mask_stats,
    mask_to_box,
    semantic_counts,
    semantic_scores_from_counts,
)
from text4seg.evaluation.multi import refzom_scores
from text4seg.evaluation.peers import PEER_TASKS, score_peers

IGNORE = 255


def _resolve(path: str, root: str | os.PathLike | None) -> str:
    return path if (root is None or os.path.isabs(path)) else os.path.join(root, path)


def _gt_problem(meta, where: str) -> str | None:
    """Why a built row's ``text4seg`` block cannot serve as ground truth, as ``"<field>: <problem>"``."""
    if meta is not None and not isinstance(meta, dict):
        return f"text4seg: expected an object, got {type(meta).__name__} {str(meta)[:60]!r}"
    if not isinstance(meta, dict) or "gt" not in meta:
        return "no text4seg.gt (is this a built JSONL?)"
    rid = meta.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return f"text4seg.id: expected a string, got {type(rid).__name__} {str(rid)[:60]!r}"
    gt = meta["gt"]
    if not isinstance(gt, dict):
        return f"text4seg.gt: expected an object, got {type(gt).__name__}"
    if not isinstance(meta.get("task", "res"), str):
        return f"text4seg.task: expected a string, got {str(meta['task'])[:60]!r}"
    for k in ("labels", "asked"):
        if meta.get(k) is not None and not isinstance(meta[k], list):
            return f"text4seg.{k}: expected a list of labels, got {str(meta[k])[:60]!r}"
    if meta.get("scheme") is not None and (
        not isinstance(meta["scheme"], str) or meta["scheme"] not in SCHEMES
    ):
        return f"text4seg.scheme: unknown scheme {str(meta['scheme'])[:60]!r}"
    try:
        if meta.get("grid") is not None:
            check_grid(meta["grid"], "text4seg.grid")
        if meta.get("width") is not None or meta.get("height") is not None:
            check_image_size(meta.get("height"), meta.get("width"), "text4seg.height/width")
        masks = gt.get("masks") or []
        if not isinstance(masks, list):
            return f"text4seg.gt.masks: expected a list of COCO RLE, got {type(masks).__name__}"
        for j, m in enumerate(masks):
            check_rle(m, f"text4seg.gt.masks[{j}]")
    except ValueError as exc:
        return str(exc)
    if gt.get("label_map") is not None and not isinstance(gt["label_map"], str):
        return f"text4seg.gt.label_map: expected a path, got {type(gt['label_map']).__name__}"
    if not isinstance(gt.get("classes", []), list):
        return f"text4seg.gt.classes: expected a list of class names, got {str(gt['classes'])[:60]!r}"
    ignore = gt.get("ignore", [])
    if not (isinstance(ignore, list) and all(type(v) is int for v in ignore)):
        return f"text4seg.gt.ignore: expected a list of pixel values, got {str(ignore)[:60]!r}"
    return None


def _join_image(row: dict, root) -> str | None:
    """The normalised image path of a row or record (the join key of records without an id)."""
    images = row.get("images")
    first = images[0] if isinstance(images, list) and images else row.get("image")
    path = first.get("path") if isinstance(first, dict) else first
    if not isinstance(path, str) or not path:
        return None
    return os.path.realpath(_resolve(path, root))


def load_ground_truth(gt_path: str | os.PathLike, root=None) -> dict[tuple[str, int], dict]:
    """``{(id, turn): {"task", "labels", "mask" | ("label_map", "classes", "ignore")}}`` (lazy masks:
    ``"rle"`` / ``"label_map"`` paths are decoded by the caller). Each entry also carries ``where``
    (file, line and id, for errors), ``image`` and ``query`` (the join of records without an id), and
    the ``grid`` and ``scheme`` the row was built with (None when the row does not say).

    Every row is checked first (types, sizes, RLE forms; nothing decoded): ``ValueError`` naming the file,
    line, id and field."""
    out: dict[tuple[str, int], dict] = {}
    for n, row in iter_jsonl(gt_path):
        meta = row.get("text4seg")
        problem = _gt_problem(meta, f"{gt_path}:{n}")
        if problem:
            rid = meta.get("id") if isinstance(meta, dict) else None
            who = f" id {rid!r}:" if isinstance(rid, (str, int)) and not isinstance(rid, bool) else ""
            raise ValueError(f"{gt_path}:{n}:{who} {problem}")
        gt, task = meta["gt"], meta.get("task", "res")
        where = f"{gt_path}:{n}: id {meta['id']!r}"
        questions = user_questions(row.get("messages"))
        turns = len(questions) or 1
        image = _join_image(row, root)
        grid = check_grid(meta["grid"]) if meta.get("grid") is not None else None
        for t in range(turns):
            entry = {"task": task, "labels": turn_labels(meta, t, turns), "width": meta.get("width")}
            entry["dataset"] = str((meta.get("source") or {}).get("dataset", ""))
            entry.update(where=where, image=image, query=questions[t] if questions else "")
            entry.update(grid=grid, scheme=meta.get("scheme"))
            if task in PEER_TASKS:  # scored by text4seg.evaluation.peers from the row's own fields
                entry["meta"] = meta
            elif task == "semantic":
                if not gt.get("label_map"):
                    raise ValueError(f"{where}: text4seg.gt.label_map: missing (a semantic row)")
                entry.update(
                    label_map=_resolve(gt["label_map"], root),
                    classes=list(gt.get("classes", [])),
                    ignore=list(gt.get("ignore", [])),
                )
            else:
                masks = gt.get("masks") or []
                if t >= len(masks):
                    continue  # no stored mask for this turn: not scorable
                entry["rle"] = masks[t]
                entry["rle_where"] = f"{where}: text4seg.gt.masks[{t}]"
            out[(str(meta["id"]), t)] = entry
    return out


def join_key(rec: dict, line: str, gts: dict[tuple[str, int], dict], by_question: dict, root=None):
    """The ground-truth key of one record: ``(id, turn)``; a record without an id (``swift infer``
    output decoded by ``text4seg decode``) joins the ground-truth query with the same image and question
    (``by_question``), and two such queries are an error (which one?). None: no ground truth."""
    if str(rec["id"]):
        return str(rec["id"]), int(rec.get("turn", 0))
    image = _join_image(rec, root)
    keys = by_question.get((image, rec.get("query", "")), [])
    if len(keys) > 1:
        ids = ", ".join(repr(k[0]) for k in keys[:4])
        raise ValueError(
            f"{line}: id: the record has no id and {len(keys)} ground-truth queries have its image "
            f"{rec.get('image')!r} and question {rec.get('query', '')[:80]!r} (ids {ids}): the join is "
            "ambiguous; decode rows that keep their text4seg.id"
        )
    return keys[0] if keys else None


def check_same_grid(rec: dict, g: dict, line: str) -> None:
    """Refuse a record decoded on another grid or scheme than its ground-truth row was built with."""
    grid, scheme = check_grid(rec["grid"]), rec["scheme"]
    if (g["grid"] is None or g["grid"] == grid) and (g["scheme"] is None or g["scheme"] == scheme):
        return
    want_grid = g["grid"] or grid
    raise ValueError(
        f"{line}: id {rec['id']!r}: grid/scheme: the answer was decoded on grid {grid[0]}x{grid[1]} "
        f"scheme {scheme}, the ground truth ({g['where']}) was built with grid {want_grid[0]}x{want_grid[1]} "
        f"scheme {g['scheme'] or scheme}: decode again with --grid {want_grid[0]}x{want_grid[1]} "
        f"--scheme {g['scheme'] or scheme}"
    )


def _label_map_ids(pred_map: np.ndarray, names: list[str], classes: list[str]) -> np.ndarray:
    """Predicted (label_map, names) -> class ids of ``classes`` (-1 = not a class)."""
    lut_names = {normalize_label(c): i for i, c in enumerate(classes) if c}
    lut = np.array([lut_names.get(n, -1) for n in names], np.int64)
    return lut[pred_map]


def evaluate(
    pred_path: str | os.PathLike,
    gt_path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    root: str | os.PathLike | None = None,
    label_only: bool = False,
    semantic_background: bool = False,
    geometry: str = "pil",
    thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
    progress: bool = False,
) -> dict:
    """Score a results JSONL against a built JSONL; returns the metrics dict (also written to out_dir).

    Returned keys: ``n``, ``missing``, ``unmatched``, ``parse_valid`` (share of answers that parse
    strictly), ``tokens_per_answer``, ``repairs`` (counts by kind), ``other_label_answers``,
    ``referring`` = ``{"coarse": {...}, "refined": {...} | None}`` (cIoU, gIoU, N-acc, T-acc, Pr@X,
    ``rec_acc@0.5``), ``semantic`` = ``{"coarse": {...}, "refined": ...}`` or None.
    ``geometry``: how answers are painted onto pixels: "pil" (default) or "official" (the official
    Text4Seg evaluation's floor sampling, to reproduce published raw numbers); see
    :data:`text4seg.descriptors.GEOMETRIES`.
    """
    gts = load_ground_truth(gt_path, root)
    by_question: dict[tuple, list] = {}
    for key, g in gts.items():
        by_question.setdefault((g["image"], g["query"]), []).append(key)
    lines = list(iter_records(pred_path))  # every line checked: refuses a file it cannot interpret
    joined: list[dict] = []
    stats = {"coarse": [], "refined": []}
    sem = {"coarse": None, "refined": None}
    per_sample: list[dict] = []
    seen: set[tuple[str, int]] = set()
    unmatched = other = 0
    tokens: list[int] = []
    peers: list[tuple[dict, dict]] = []
    tqdm = require("tqdm").tqdm
    for n, rec in tqdm(lines, unit="answer", desc="evaluate", disable=not progress):
        line = f"{pred_path}:{n}"
        key = join_key(rec, line, gts, by_question, root)
        g = None if key is None else gts.get(key)
        if g is None or key in seen:
            unmatched += 1
            continue
        check_same_grid(rec, g, line)
        seen.add(key)
        joined.append(rec)
        if g["task"] in PEER_TASKS:
            peers.append((rec, g))
            continue
        h, w = int(rec["height"]), int(rec["width"])
        wanted = g["labels"] if label_only else None
        am = answer_to_masks(
            rec["answer"],
            h,
            w,
            check_grid(rec["grid"]),
            rec["scheme"],
            wanted,
            geometry=geometry,
        )
        allowed = {normalize_label(x) for x in g["labels"]}
        names_other = [n for n in am.names[1:] if n not in allowed]
        other += bool(names_other)
        if rec.get("num_tokens") is not None:
            tokens.append(int(rec["num_tokens"]))
        row = {"id": key[0], "turn": key[1], "task": g["task"], "parse_valid": am.parse_valid}
        if not str(rec["id"]):
            row["joined_by"] = "image+question"
        row["other_labels"] = names_other
        refined_map = None
        if rec.get("refined_labels") is not None:
            refined_map = rles_to_label_map(rec["refined_labels"], h, w, f"{line}: refined_labels")
        if refined_map is not None:
            refined = select_labels(*refined_map, wanted)[0]
        else:
            refined = rle_to_mask(rec["refined"], f"{line}: refined") if rec.get("refined") else None
        if g["task"] == "semantic":
            with open_image(g["label_map"], f"{g['where']}: text4seg.gt.label_map {g['label_map']}") as im:
                gt_map = np.asarray(im)
            if gt_map.shape != (h, w):
                raise ValueError(
                    f"{g['where']}: text4seg.gt.label_map {g['label_map']} is {gt_map.shape}, "
                    f"prediction {h}x{w} ({line})"
                )
            classes = g["classes"]
            gt_ids = gt_map.astype(np.int64)
            for v in g["ignore"]:
                gt_ids[gt_map == v] = IGNORE
            pred_ids = _label_map_ids(am.label_map, am.names, classes)
            refined_ids = None if refined_map is None else _label_map_ids(*refined_map, classes)
            for kind, pm in (("coarse", pred_ids), ("refined", refined_ids)):
                if pm is None:
                    continue
                try:
                    i, u = semantic_counts(pm, gt_ids, len(classes), IGNORE)
                except ValueError as exc:
                    raise ValueError(f"{g['where']}: text4seg.gt.label_map {g['label_map']}: {exc}") from None
                acc = sem[kind]
                sem[kind] = (i, u) if acc is None else (acc[0] + i, acc[1] + u)
            per_sample.append(row)
            continue
        gt_mask = rle_to_mask(g["rle"], g["rle_where"])
        if gt_mask.shape != (h, w):
            raise ValueError(
                f"{g['rle_where']}: ground truth is {gt_mask.shape[0]}x{gt_mask.shape[1]}, "
                f"prediction {h}x{w} ({line}: height/width)"
            )
        gbox = mask_to_box(gt_mask)
        for kind, pm in (("coarse", am.mask), ("refined", refined)):
            if pm is None:
                continue
            s = mask_stats(pm, gt_mask)
            s["box_iou"] = box_iou(mask_to_box(pm), gbox)
            s["dataset"] = g.get("dataset", "")
            stats[kind].append(s)
            row[kind] = {k: s[k] for k in ("inter", "union", "iou", "pred_empty", "gt_empty", "box_iou")}
        per_sample.append(row)

    def _ref(kind: str):
        ss = stats[kind]
        if not ss:
            return None
        out = aggregate_referring(ss, thresholds)
        targeted = [s for s in ss if not s["gt_empty"]]
        out["rec_acc@0.5"] = (
            None if not targeted else sum(s["box_iou"] > 0.5 for s in targeted) / len(targeted)
        )
        zom = [s for s in ss if s["dataset"] == "ref-zom"]
        if zom:  # Ref-ZOM's own metrics: oIoU and mIoU on targeted samples, accuracy on empty ones
            out["refzom"] = refzom_scores(zom)
        return out

    def _sem(kind: str):
        if sem[kind] is None:
            return None
        classes = next(g["classes"] for g in gts.values() if g["task"] == "semantic")
        i, u = sem[kind]
        full = semantic_scores_from_counts(i, u, classes)  # K classes, background included (official)
        keep = [k for k, c in enumerate(classes) if normalize_label(c or BACKGROUND) != BACKGROUND]
        out = (
            full
            if semantic_background
            else semantic_scores_from_counts(i[keep], u[keep], [classes[k] for k in keep])
        )
        out["miou_with_background"] = full["miou"]  # what the official evaluation reports (K = 21/60/151)
        out["miou_without_background"] = semantic_scores_from_counts(
            i[keep], u[keep], [classes[k] for k in keep]
        )["miou"]
        return out

    peer_scores, peer_rows = score_peers(peers)
    per_sample.extend(peer_rows)
    tokens.extend(int(r["num_tokens"]) for r, _ in peers if r.get("num_tokens") is not None)
    scored = [r for r in per_sample]
    metrics = {
        "n": len(scored),
        "missing": len(set(gts) - seen),
        "unmatched": unmatched,
        "parse_valid": None if not scored else sum(r["parse_valid"] for r in scored) / len(scored),
        "tokens_per_answer": float(np.mean(tokens)) if tokens else None,
        "repairs": repair_report(joined),
        "other_label_answers": other,
        "label_only": label_only,
        "referring": None if not stats["coarse"] else {"coarse": _ref("coarse"), "refined": _ref("refined")},
        "semantic": None if sem["coarse"] is None else {"coarse": _sem("coarse"), "refined": _sem("refined")},
        "peers": peer_scores,
    }
    if out_dir is not None:
        out = Path(out_dir)
        with AtomicWriter(out / "per_sample.jsonl") as wr:
            for r in per_sample:
                wr.write(json.dumps(r, ensure_ascii=False))
        with AtomicWriter(out / "metrics.json") as wr:
            wr.write(json.dumps(metrics, indent=2))
    return metrics


def format_table(metrics: dict) -> str:
    """A plain-text table, raw and refined side by side."""
    lines = [
        f"samples {metrics['n']} (missing {metrics['missing']}, unmatched {metrics['unmatched']}); "
        f"strict parse {_fmt(metrics['parse_valid'])}; tokens/answer {_fmt(metrics['tokens_per_answer'])}; "
        f"answers naming another label {metrics['other_label_answers']}"
    ]
    for section in ("referring", "semantic"):
        block = metrics.get(section)
        if not block:
            continue
        coarse, refined = block["coarse"] or {}, block["refined"] or {}
        lines.append(f"{section:<14}{'raw':>10}{'refined':>10}")
        for k, v in coarse.items():
            if isinstance(v, (int, float)) or v is None:
                lines.append(f"  {k:<12}{_fmt(v):>10}{_fmt(refined.get(k)) if refined else '-':>10}")
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)
