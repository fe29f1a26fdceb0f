"""The scorers of the other families: ``instance`` (Hungarian matching of numbered instances,
:mod:`text4seg.evaluation.instances`) and the peers ``multi``, ``interactive`` and ``panoptic``, which keep
their (small) sets and score them whole at the end (:mod:`~text4seg.evaluation.multi`,
:mod:`~text4seg.evaluation.interactive`, :mod:`~text4seg.evaluation.panoptic`). Conventions:
:mod:`text4seg.evaluation.scorers`."""

from __future__ import annotations

from text4seg.descriptors import decode
from text4seg.evaluation.pairs import GroundInfo, Options, Pair, gt_label_map


def list_start() -> list:
    """The state of a scorer that keeps its set: a list."""
    return []


def instance_add(matches: list, p: Pair, opts: Options) -> None:
    """The Hungarian matches of one pair's numbered instances against its label map's."""
    from text4seg.descriptors.instances import instance_masks
    from text4seg.evaluation.instances import instances_of_label_map, match_instances

    rec = p.rec
    pred = [
        (name, m)
        for name, _, m in instance_masks(decode(rec.answer, rec.grid, rec.scheme).grid, rec.height, rec.width)
    ]
    gt = instances_of_label_map(gt_label_map(p), p.gt["classes"])
    matches.append(match_instances(pred, gt))  # the pair's per-sample row is its semantic one


def instance_summarise(matches: list, opts: Options, info: GroundInfo) -> tuple[dict | None, list]:
    """The instance section: :func:`text4seg.evaluation.instances.instance_scores` of every match."""
    from text4seg.evaluation.instances import instance_scores

    return (instance_scores(matches) if matches else None), []


def peer_add(items: list, p: Pair, opts: Options) -> None:
    """The peers' scorers take their whole set at the end: the record and the row's block are kept."""
    items.append((p.rec, p.gt["meta"]))


def multi(items: list, opts: Options, info: GroundInfo):
    """The multi section and rows of the whole set (``multi.score_multi``)."""
    from text4seg.evaluation.multi import score_multi

    return score_multi([(rec, meta["labels"], meta["gt"]["masks"]) for rec, meta in items])


def interactive(items: list, opts: Options, info: GroundInfo):
    """The interactive section and rows of the whole set (``interactive.score_interactive``)."""
    from text4seg.evaluation.interactive import score_interactive

    return score_interactive(items)


def panoptic(items: list, opts: Options, info: GroundInfo):
    """The panoptic section and rows of the whole set (``panoptic.score_panoptic``)."""
    from text4seg.evaluation.panoptic import score_panoptic

    return score_panoptic(items)
