"""Dispatch of the peers' tasks (GSVA multi-expression, PSALM interactive, panoptic) inside ``evaluate``.

:func:`text4seg.evaluation.evaluate.evaluate` hands every (result record, ground-truth entry) pair whose
task is in :data:`PEER_TASKS` to :func:`score_peers`, which groups them by task and calls the task's
scorer. The ground-truth entry carries the built row's ``text4seg`` block as ``meta``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from text4seg.evaluation.interactive import score_interactive
from text4seg.evaluation.multi import score_multi
from text4seg.evaluation.panoptic import score_panoptic


def _multi(pairs: Sequence[tuple[dict, dict]]) -> tuple[dict, list[dict]]:
    items = [(rec, g["meta"]["labels"], g["meta"]["gt"]["masks"]) for rec, g in pairs]
    return score_multi(items)


def _interactive(pairs: Sequence[tuple[dict, dict]]) -> tuple[dict, list[dict]]:
    return score_interactive([(rec, g["meta"]) for rec, g in pairs])


SCORERS: dict[str, Callable[[Sequence[tuple[dict, dict]]], tuple[dict, list[dict]]]] = {
    "multi": _multi,
    "interactive": _interactive,
    "panoptic": lambda pairs: score_panoptic([(rec, g["meta"]) for rec, g in pairs]),
}
PEER_TASKS = tuple(SCORERS)


def score_peers(pairs: Sequence[tuple[dict, dict]]) -> tuple[dict | None, list[dict]]:
    """``({task: scores}, per-sample rows)`` of the peer-task pairs (None when there are none)."""
    if not pairs:
        return None, []
    out, rows = {}, []
    for task in PEER_TASKS:
        mine = [(r, g) for r, g in pairs if g["task"] == task]
        if mine:
            out[task], task_rows = SCORERS[task](mine)
            rows.extend(task_rows)
    return out, rows
