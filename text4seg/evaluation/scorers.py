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
  reduce each pair to counts (``score_referring._Referring``: 8 bytes a sample for the exact gIoU),
  the peers and ``instance`` keep their (small) sets for the end;
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

Modules: this one holds the registry, the display and the interface types (:class:`Options`,
:class:`Pair` and :class:`GroundInfo` are defined in :mod:`text4seg.evaluation.pairs` with the masks
every family shares); each family is its own module, imported by the registry and
importing nothing of it: :mod:`~text4seg.evaluation.score_referring`,
:mod:`~text4seg.evaluation.score_semantic`, :mod:`~text4seg.evaluation.score_peers` (instance and the
peers' glue; the metrics themselves are :mod:`~text4seg.evaluation.instances`, ``multi``,
``interactive``, ``panoptic`` and ``video``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from text4seg.descriptors import BACKGROUND, normalize_label
from text4seg.evaluation import score_peers, score_referring, score_semantic
from text4seg.evaluation.ground_truth import LABEL_MAP_TASKS
from text4seg.evaluation.pairs import GroundInfo, Options, Pair

__all__ = ["SCORERS", "Scorer", "Table", "scorers_of", "tables"]


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


# ---------------------------------------------------------------------------------------- registry
def instance_numbered(entry: dict) -> bool:
    """A label-map entry whose classes (``others`` aside) are all ``"<name> <k>"`` labels."""
    if entry["task"] not in LABEL_MAP_TASKS:
        return False
    from text4seg.descriptors.instances import parse_instance_label

    named = [c for c in entry.get("classes", []) if c and normalize_label(c) != BACKGROUND]
    return entry["task"] == "instance" or (bool(named) and all(parse_instance_label(c)[1] > 0 for c in named))


SCORERS: dict[str, Scorer] = {
    "referring": Scorer(
        ("referring",), score_referring.start, score_referring.add, score_referring.summarise, _referring_show
    ),
    "semantic": Scorer(
        ("semantic",),
        score_semantic.start,
        score_semantic.add,
        score_semantic.summarise,
        _raw_refined("semantic"),
    ),
    "multi": Scorer(
        ("peers", "multi"),
        score_peers.list_start,
        score_peers.peer_add,
        score_peers.multi,
        _one_column("multi-expression"),
    ),
    "interactive": Scorer(
        ("peers", "interactive"),
        score_peers.list_start,
        score_peers.peer_add,
        score_peers.interactive,
        _raw_refined("interactive", nested=True),
    ),
    "panoptic": Scorer(
        ("peers", "panoptic"),
        score_peers.list_start,
        score_peers.peer_add,
        score_peers.panoptic,
        _raw_refined("panoptic (PQ/SQ/RQ)"),
    ),
    "instance": Scorer(
        ("instance",),
        score_peers.list_start,
        score_peers.instance_add,
        score_peers.instance_summarise,
        _one_column("instance (Hungarian)"),
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
