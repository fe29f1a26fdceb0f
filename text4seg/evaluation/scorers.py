"""The scorer registry of ``text4seg evaluate``: one :class:`Scorer` per task, used by :func:`evaluate`,
the printed table and the HTML report alike.

Interface
---------
``SCORERS: dict[str, Scorer]`` maps a scorer name to its scorer. :func:`scorers_of` names the scorers
of one ground-truth entry (:func:`text4seg.evaluation.ground_truth.load_ground_truth`): its task when
that is a key of ``SCORERS`` (``semantic``, ``multi``, ``interactive``, ``panoptic``), ``referring`` for
every other task (res, gres, reason, shapes...), and also ``instance`` for a label-map row whose classes
are instance-numbered (``"<name> <k>"``: ``coco-format --task instance``). A :class:`Scorer` is

* ``path``: where its scores go in ``metrics.json`` (``("peers", "multi")``: ``metrics["peers"]["multi"]``);
* ``start() -> state``, then ``add(state, pair, options) -> row | None`` for each joined :class:`Pair`
  (record, ground-truth entry, key, ``file:line``) of its task as the records come (the row, if any, goes
  to ``per_sample.jsonl`` at once), so that ``evaluate`` holds no list of records: referring and semantic
  reduce each pair to counts (:class:`_Referring`: 8 bytes a sample for the exact gIoU), the peers and
  ``instance`` keep their (small) sets for the end;
* ``summarise(state, options, info) -> (scores | None, rows)``: the section's scores and any per-sample
  rows made only at the end (the peers'); ``info``: :class:`GroundInfo` (e.g. the semantic class list);
  ``Scorer.collect(pairs, options)`` runs the three on a whole list;
* ``show(scores) -> list[Table]``: what the printed table and the report show of them: ``Table(title,
  columns, rows)`` with ``rows = [(name, [value per column]), ...]``.

``video`` has no pairs: ``text4seg predict --video`` writes ``video_results.jsonl`` records (one per
video and expression), scored whole by :func:`text4seg.evaluation.video.evaluate_video`; the registry
holds its ``path`` and ``show``. :func:`tables` walks the registry over a metrics dict: every section
present is shown.

Scores (conventions in :mod:`text4seg.evaluation.metrics`):

* referring: cIoU, gIoU, N-acc, T-acc, Pr@0.5..0.9, and REC ``rec_acc@0.5`` (the mask's box against
  the ground-truth mask's box, pixel-edge boxes, exclusive max) on targeted samples; Ref-ZOM rows
  (``source.dataset == "ref-zom"``) add ``refzom`` (:func:`text4seg.evaluation.multi.refzom_scores`).
* semantic: per-class I and U summed over the set, mIoU over the benchmark's classes.
  ``miou_without_background`` (the headline ``miou``): the classes but ``others``, ignored pixels
  (``gt.ignore``: VOC's 0 and 255, PC-59's and ADE's 0) count nowhere, a predicted label that is not a
  benchmark class is wrong on its pixels. ``miou_with_background`` (the headline with
  ``semantic_background``) is the official Text4Seg number (``llava/eval/eval_semantic_seg.py`` of
  github.com/mc-lan/Text4Seg, K = 21 / 60 / 151 for VOC-20 / PC-59 / ADE-150): class 0 (``others``) is
  scored although the builders mark it ignored: a ground-truth background pixel is always its
  intersection (the reference overwrites the prediction there, so another class answered on it is no
  false positive), a foreground pixel answered ``others`` or an unknown label adds to its union; a void
  pixel (an ignored value other than 0, VOC's 255 boundary) still adds its predicted class to that
  class's union (the reference leaves predictions on void in). The reference averages over all K
  classes (a class absent from the set and never predicted scores 0 there); here such a class is left
  out (``None``): on a full benchmark split every class occurs and the two agree
  (tests/conformance/test_metrics_reference.py).
* instance: Hungarian one-to-one matching within each class (:mod:`text4seg.evaluation.instances`) of
  the answer's numbered instances (PIL-nearest painting) against the label map's instances.
* multi, interactive, panoptic: :mod:`~text4seg.evaluation.multi`, :mod:`~text4seg.evaluation.interactive`,
  :mod:`~text4seg.evaluation.panoptic` (PQ, SQ, RQ).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

import numpy as np

from text4seg._lazy import require
from text4seg.data.images import open_image
from text4seg.data.results import AnswerMasks, ResultRecord, select_labels
from text4seg.descriptors import BACKGROUND, decode, normalize_label
from text4seg.descriptors.grid import resize_nearest
from text4seg.evaluation.ground_truth import LABEL_MAP_TASKS
from text4seg.evaluation.metrics import (
    box_iou,
    semantic_counts,
    semantic_scores_from_counts,
)

IGNORE = 255


@dataclass(frozen=True)
class Options:
    """How ``evaluate`` scores (its keyword arguments)."""

    label_only: bool = False
    semantic_background: bool = False
    geometry: str = "pil"
    thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9)


class Pair(NamedTuple):
    """One record joined with its ground truth: ``key`` is the entry's ``(id, turn)``, ``line`` the
    record's ``file:line`` (for errors)."""

    rec: ResultRecord
    gt: dict
    key: tuple[str, int]
    line: str


class Table(NamedTuple):
    """One displayed table: ``rows = [(name, [value per column]), ...]``."""

    title: str
    columns: list[str]
    rows: list[tuple[str, list]]


@dataclass(frozen=True)
class Scorer:
    """One task's scoring (interface: module docstring)."""

    path: tuple[str, ...]
    start: Callable[[], Any] | None
    add: Callable[[Any, Pair, Options], dict | None] | None
    summarise: Callable[[Any, Options, GroundInfo], tuple[dict | None, list[dict]]] | None
    show: Callable[[dict], list[Table]]

    def collect(self, pairs: Sequence[Pair], opts: Options, info: GroundInfo | None = None):
        """``(scores, rows)`` of a whole list of pairs (what ``evaluate`` does one pair at a time)."""
        state = self.start()
        rows = [row for p in pairs if (row := self.add(state, p, opts)) is not None]
        scores, late = self.summarise(state, opts, info or GroundInfo())
        return scores, rows + late


class GroundInfo(NamedTuple):
    """What a scorer's ``summarise`` may know of the whole ground truth: ``label_map_classes``, the
    classes of its first label-map row (the semantic class list)."""

    label_map_classes: list | None = None


# ---------------------------------------------------------------------------------------- display
def _flat(block: dict | None, nested: bool = True) -> list[tuple[str, Any]]:
    """The numbers of a scores dict, one nested level flattened when ``nested`` (``"point miou"``); lists
    and deeper dicts (per-class tables) are left out."""
    out = []
    for k, v in (block or {}).items():
        if isinstance(v, dict) and nested:
            out += [(f"{k} {k2}", v2) for k2, v2 in v.items() if _number(v2)]
        elif _number(v):
            out.append((k, v))
    return out


def _number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _raw_refined(title: str, nested: bool = False) -> Callable[[dict], list[Table]]:
    """``show`` of a ``{"coarse": {...}, "refined": {...} | None}`` section: raw and refined side by side
    (``nested``: one level of sub-dicts shown too, e.g. interactive's point/box/all)."""

    def show(scores: dict) -> list[Table]:
        refined = dict(_flat(scores.get("refined"), nested))
        rows = [(k, [v, refined.get(k) if refined else None]) for k, v in _flat(scores.get("coarse"), nested)]
        return [Table(title, ["raw", "refined"], rows)]

    return show


def _one_column(title: str) -> Callable[[dict], list[Table]]:
    def show(scores: dict) -> list[Table]:
        return [Table(title, ["raw"], [(k, [v]) for k, v in _flat(scores)])]

    return show


def _referring_show(scores: dict) -> list[Table]:
    out = _raw_refined("referring")({k: _without(scores.get(k), "refzom") for k in ("coarse", "refined")})
    zom = {k: (scores.get(k) or {}).get("refzom") for k in ("coarse", "refined")}
    if zom["coarse"]:
        out += _raw_refined("Ref-ZOM")(zom)
    return out


def _without(block: dict | None, key: str) -> dict | None:
    return None if block is None else {k: v for k, v in block.items() if k != key}


def tables(metrics: dict) -> list[Table]:
    """The tables of every section present in ``metrics``, in registry order."""
    out = []
    for scorer in SCORERS.values():
        scores = metrics
        for part in scorer.path:
            scores = scores.get(part) if isinstance(scores, dict) else None
        if scores:
            out += scorer.show(scores)
    return out


# ---------------------------------------------------------------------------------------- helpers
def _answer_masks(p: Pair, opts: Options) -> AnswerMasks:
    """:func:`text4seg.data.results.answer_to_masks` of the record's answer, painted from the decoded
    runs (the same label map, names and mask, without building the grid of label strings)."""
    rec = p.rec
    dec = decode(rec.answer, rec.grid, rec.scheme)
    valid = dec.ok
    labels, counts = zip(*dec.runs)
    names = list(dict.fromkeys((BACKGROUND, *labels)))  # others first, then order of appearance
    pos = {name: k for k, name in enumerate(names)}
    cells = np.repeat(np.fromiter(map(pos.__getitem__, labels), np.int32, len(labels)), counts)
    cells = cells.reshape(dec.shape)
    label_map = resize_nearest(cells, rec.height, rec.width, opts.geometry)
    mask, other = select_labels(label_map, names, p.gt["labels"] if opts.label_only else None)
    return AnswerMasks(dec, valid, label_map, names, mask, other)


@cache
def _mask_util():
    """``pycocotools.mask``, imported once (on first use: the extra ``data``)."""
    return require("pycocotools.mask")


def _checked_rle_to_mask(rle: dict) -> np.ndarray:
    """The mask of an RLE already checked (:func:`text4seg.data.rle.check_rle`: the record by
    ``ResultRecord.from_json``, the ground truth by the index pass), without checking it again."""
    mask_util = _mask_util()
    h, w = int(rle["size"][0]), int(rle["size"][1])
    counts = rle["counts"]
    if isinstance(counts, list):
        obj = mask_util.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        obj = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_util.decode(obj).view(bool)  # 0/1 bytes: a view, no copy


def _row(p: Pair, am) -> dict:
    """The per-sample row of a referring or semantic pair (``other_labels``: labels outside the query)."""
    row = {"id": p.key[0], "turn": p.key[1], "task": p.gt["task"], "parse_valid": am.parse_valid}
    if not p.rec.id:
        row["joined_by"] = "image+question"
    named = am.names[1:]
    if named:
        allowed = {normalize_label(x) for x in p.gt["labels"]}
        named = [n for n in named if n not in allowed]
    row["other_labels"] = named
    return row


def _refined_map(p: Pair):
    """``(label map, names)`` of the record's ``refined_labels`` (checked by ``from_json``), or None."""
    rec = p.rec
    if rec.refined_labels is None:
        return None
    out = np.zeros((rec.height, rec.width), np.int32)
    for k, rle in enumerate(rec.refined_labels.values(), 1):
        out[_checked_rle_to_mask(rle)] = k
    return out, [BACKGROUND, *rec.refined_labels]


def _gt_label_map(p: Pair) -> np.ndarray:
    g, rec = p.gt, p.rec
    with open_image(g["label_map"], f"{g['where']}: text4seg.gt.label_map {g['label_map']}") as im:
        gt_map = np.asarray(im)
    if gt_map.shape != (rec.height, rec.width):
        raise ValueError(
            f"{g['where']}: text4seg.gt.label_map {g['label_map']} is {gt_map.shape}, "
            f"prediction {rec.height}x{rec.width} ({p.line})"
        )
    return gt_map


def _mask_stats(pm: np.ndarray, gm: np.ndarray, ga: int, gbox) -> dict:
    """:func:`text4seg.evaluation.metrics.mask_stats` of two same-shape bool masks (``ga``: the
    ground-truth area, ``gbox`` its box) and ``box_iou``, in the order of a per-sample row."""
    inter = int(np.count_nonzero(pm & gm))
    pa = int(np.count_nonzero(pm))
    union = pa + ga - inter
    return {
        "inter": inter,
        "union": union,
        "iou": 1.0 if union == 0 else inter / union,
        "pred_empty": pa == 0,
        "gt_empty": ga == 0,
        "box_iou": box_iou(None if pa == 0 else _box(pm), gbox),
    }


def _box(m: np.ndarray):
    """:func:`text4seg.evaluation.metrics.mask_to_box` of a 2-D bool mask (no conversion, no check): the
    first and last true bytes of its row and column projections."""
    rows = m.any(axis=1).tobytes()
    y0 = rows.find(1)
    if y0 < 0:
        return None
    cols = m.any(axis=0).tobytes()
    return cols.find(1), y0, cols.rfind(1) + 1, rows.rfind(1) + 1


# ---------------------------------------------------------------------------------------- referring
class _Referring:
    """The referring scores of one kind (coarse or refined) reduced as samples come: the counts of
    :func:`text4seg.evaluation.metrics.aggregate_referring`, and the per-sample IoUs as 8 bytes each (the
    gIoU is their ``np.mean``, bit for bit the list's); Ref-ZOM samples' stats are kept whole."""

    def __init__(self, thresholds: Sequence[float]):
        self.thresholds = tuple(thresholds)
        self.n = self.sum_i = self.sum_u = self.no_target = self.n_hits = self.t_hits = self.box_hits = 0
        self.pr = [0] * len(self.thresholds)
        self.ious = array("d")
        self.zom: list[dict] = []

    def add(self, s: dict, dataset: str) -> None:
        self.n += 1
        self.sum_i += s["inter"]
        self.sum_u += s["union"]
        self.ious.append(s["iou"])
        if s["gt_empty"]:
            self.no_target += 1
            self.n_hits += s["pred_empty"]
        else:
            self.t_hits += not s["pred_empty"]
            self.box_hits += s["box_iou"] > 0.5
            for k, t in enumerate(self.thresholds):
                self.pr[k] += s["iou"] >= t
        if dataset == "ref-zom":
            self.zom.append(s)

    def scores(self) -> dict | None:
        """The section of one kind: ``aggregate_referring``'s keys, ``rec_acc@0.5``, ``refzom``."""
        from text4seg.evaluation.multi import refzom_scores

        n, targeted = self.n, self.n - self.no_target
        if n == 0:
            return None
        out: dict = {
            "n": n,
            "n_no_target": self.no_target,
            "n_targeted": targeted,
            "ciou": 1.0 if self.sum_u == 0 else self.sum_i / self.sum_u,
            "giou": float(np.mean(np.frombuffer(self.ious, np.float64))),
            "n_acc": None if not self.no_target else self.n_hits / self.no_target,
            "t_acc": None if not targeted else self.t_hits / targeted,
        }
        for t, hits in zip(self.thresholds, self.pr):
            out[f"pr@{t:g}"] = None if not targeted else hits / targeted
        out["rec_acc@0.5"] = None if not targeted else self.box_hits / targeted
        if self.zom:  # Ref-ZOM's own metrics: oIoU and mIoU on targeted samples, accuracy on empty ones
            out["refzom"] = refzom_scores(self.zom)
        return out


def _referring_start() -> dict:
    return {}


def _referring_add(state: dict, p: Pair, opts: Options) -> dict:
    rec, g = p.rec, p.gt
    if not state:
        state.update(coarse=_Referring(opts.thresholds), refined=_Referring(opts.thresholds))
    am = _answer_masks(p, opts)
    row = _row(p, am)
    refined_map = _refined_map(p)
    if refined_map is not None:
        refined = select_labels(*refined_map, g["labels"] if opts.label_only else None)[0]
    else:
        refined = _checked_rle_to_mask(rec.refined) if rec.refined else None
    gt_mask = _checked_rle_to_mask(g["rle"])
    if gt_mask.shape != (rec.height, rec.width):
        raise ValueError(
            f"{g['rle_where']}: ground truth is {gt_mask.shape[0]}x{gt_mask.shape[1]}, "
            f"prediction {rec.height}x{rec.width} ({p.line}: height/width)"
        )
    ga = int(np.count_nonzero(gt_mask))
    gbox = _box(gt_mask) if ga else None
    dataset = g.get("dataset", "")
    for kind, pm in (("coarse", am.mask), ("refined", refined)):
        if pm is not None:
            row[kind] = s = _mask_stats(pm, gt_mask, ga, gbox)
            state[kind].add(s, dataset)
    return row


def _referring_summarise(state: dict, opts: Options, info: GroundInfo) -> tuple[dict | None, list]:
    if not state or not state["coarse"].n:
        return None, []
    return {"coarse": state["coarse"].scores(), "refined": state["refined"].scores()}, []


# ---------------------------------------------------------------------------------------- semantic
def _label_map_ids(pred_map: np.ndarray, names: list[str], classes: list[str]) -> np.ndarray:
    """Predicted (label_map, names) -> class ids of ``classes`` (-1 = not a class)."""
    lut_names = {normalize_label(c): i for i, c in enumerate(classes) if c}
    lut = np.array([lut_names.get(n, -1) for n in names], np.int64)
    return lut[pred_map]


def _background_id(classes: list[str]) -> int | None:
    """The background class of the official protocol: class 0 when it is ``others`` (VOC-20, PC-59,
    ADE-150 as built), else None."""
    return 0 if classes and normalize_label(classes[0] or BACKGROUND) == BACKGROUND else None


def _semantic_counts(pm: np.ndarray, gt_map: np.ndarray, g: dict) -> tuple[np.ndarray, ...]:
    """``(inter, union)`` with ignored pixels out (the headline and ``miou_without_background``), then
    ``(inter, union)`` by the official protocol (``miou_with_background``: ground-truth background
    scored as class 0 even where the row ignores it, void predictions counted; metrics.semantic_counts)."""
    k, bg = len(g["classes"]), _background_id(g["classes"])
    gt_ids = gt_map.astype(np.int64)
    official = gt_ids.copy()
    for v in g["ignore"]:
        gt_ids[gt_map == v] = IGNORE
        if v != bg:
            official[gt_map == v] = IGNORE
    try:
        i, u = semantic_counts(pm, gt_ids, k, IGNORE)
        oi, ou = semantic_counts(pm, official, k, IGNORE, background=bg, void_predictions=True)
    except ValueError as exc:
        raise ValueError(f"{g['where']}: text4seg.gt.label_map {g['label_map']}: {exc}") from None
    return i, u, oi, ou


def _semantic_start() -> dict:
    return {"coarse": None, "refined": None}


def _semantic_add(sem: dict, p: Pair, opts: Options) -> dict:
    g = p.gt
    am = _answer_masks(p, opts)
    row = _row(p, am)
    refined_map = _refined_map(p)
    gt_map = _gt_label_map(p)
    classes = g["classes"]
    pred_ids = _label_map_ids(am.label_map, am.names, classes)
    refined_ids = None if refined_map is None else _label_map_ids(*refined_map, classes)
    for kind, pm in (("coarse", pred_ids), ("refined", refined_ids)):
        if pm is None:
            continue
        counts = _semantic_counts(pm, gt_map, g)
        acc = sem[kind]
        sem[kind] = counts if acc is None else tuple(a + c for a, c in zip(acc, counts))
    return row


def _semantic_part(counts, classes: list[str], opts: Options) -> dict | None:
    if counts is None:
        return None
    i, u, oi, ou = counts
    full = semantic_scores_from_counts(oi, ou, classes)  # K classes, the official protocol
    keep = [k for k, c in enumerate(classes) if normalize_label(c or BACKGROUND) != BACKGROUND]
    without = semantic_scores_from_counts(i[keep], u[keep], [classes[k] for k in keep])
    out = full if opts.semantic_background else without
    out["miou_with_background"] = full["miou"]  # the official evaluation's number (K = 21/60/151)
    out["miou_without_background"] = without["miou"]
    return out


def _semantic_summarise(sem: dict, opts: Options, info: GroundInfo) -> tuple[dict | None, list]:
    if sem["coarse"] is None:
        return None, []
    classes = info.label_map_classes or []
    return {
        "coarse": _semantic_part(sem["coarse"], classes, opts),
        "refined": _semantic_part(sem["refined"], classes, opts),
    }, []


# ---------------------------------------------------------------------------------------- instance
def instance_numbered(entry: dict) -> bool:
    """A label-map entry whose classes (``others`` aside) are all ``"<name> <k>"`` labels."""
    from text4seg.descriptors.instances import parse_instance_label

    if entry["task"] not in LABEL_MAP_TASKS:
        return False
    named = [c for c in entry.get("classes", []) if c and normalize_label(c) != BACKGROUND]
    return entry["task"] == "instance" or (bool(named) and all(parse_instance_label(c)[1] > 0 for c in named))


def _list_start() -> list:
    return []


def _instance_add(matches: list, p: Pair, opts: Options) -> None:
    from text4seg.descriptors.instances import instance_masks
    from text4seg.evaluation.instances import instances_of_label_map, match_instances

    rec = p.rec
    pred = [
        (name, m)
        for name, _, m in instance_masks(decode(rec.answer, rec.grid, rec.scheme).grid, rec.height, rec.width)
    ]
    gt = instances_of_label_map(_gt_label_map(p), p.gt["classes"])
    matches.append(match_instances(pred, gt))  # the pair's per-sample row is its semantic one


def _instance_summarise(matches: list, opts: Options, info: GroundInfo) -> tuple[dict | None, list]:
    from text4seg.evaluation.instances import instance_scores

    return (instance_scores(matches) if matches else None), []


# ---------------------------------------------------------------------------------------- peers
def _peer_add(items: list, p: Pair, opts: Options) -> None:
    """The peers' scorers take their whole set at the end: the record and the row's block are kept."""
    items.append((p.rec, p.gt["meta"]))


def _multi(items: list, opts: Options, info: GroundInfo):
    from text4seg.evaluation.multi import score_multi

    return score_multi([(rec, meta["labels"], meta["gt"]["masks"]) for rec, meta in items])


def _interactive(items: list, opts: Options, info: GroundInfo):
    from text4seg.evaluation.interactive import score_interactive

    return score_interactive(items)


def _panoptic(items: list, opts: Options, info: GroundInfo):
    from text4seg.evaluation.panoptic import score_panoptic

    return score_panoptic(items)


SCORERS: dict[str, Scorer] = {
    "referring": Scorer(
        ("referring",), _referring_start, _referring_add, _referring_summarise, _referring_show
    ),
    "semantic": Scorer(
        ("semantic",), _semantic_start, _semantic_add, _semantic_summarise, _raw_refined("semantic")
    ),
    "multi": Scorer(("peers", "multi"), _list_start, _peer_add, _multi, _one_column("multi-expression")),
    "interactive": Scorer(
        ("peers", "interactive"),
        _list_start,
        _peer_add,
        _interactive,
        _raw_refined("interactive", nested=True),
    ),
    "panoptic": Scorer(
        ("peers", "panoptic"), _list_start, _peer_add, _panoptic, _raw_refined("panoptic (PQ/SQ/RQ)")
    ),
    "instance": Scorer(
        ("instance",), _list_start, _instance_add, _instance_summarise, _one_column("instance (Hungarian)")
    ),
    "video": Scorer(("video",), None, None, None, _one_column("video (J/F/J&F)")),
}


def scorers_of(entry: dict) -> list[str]:
    """The names of the scorers of one ground-truth entry (module docstring)."""
    task = entry["task"]
    first = (
        "semantic"
        if task in LABEL_MAP_TASKS
        else task
        if task in SCORERS and task != "video"
        else "referring"
    )
    return [first, "instance"] if instance_numbered(entry) else [first]
