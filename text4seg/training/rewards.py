"""Mask rewards for reinforcement fine-tuning (GRPO): the answer *is* the mask, so our own codec scores it.

(The issue calls this module ``text4seg.rewards``; the project groups modules by stage, so it lives in
:mod:`text4seg.training`.) ms-swift's reward classes wrapping these functions are registered by the plugin
file ``recipes/text4seg_rewards.py`` (``--external_plugins``); ``docs/rl.md`` has the whole recipe.

Every function takes the ``completions`` (model answers, ``str``) and one ground truth per completion,
returns one ``float`` per completion, and never raises on model text (the lenient decoder reads it).

Ground truth
------------
A ground-truth *grid* is a ``(rows, cols)`` numpy array of ``str`` labels, background ``"others"``
(:data:`~text4seg.descriptors.BACKGROUND`). :func:`ground_truth_grid` derives it from a built row's
``text4seg`` dict (``--with-gt`` rows; ms-swift passes every dataset column to a reward as a keyword
argument and the nested dict arrives intact), exactly as the builders wrote the answer:

* referring rows (``res``, ``gres``, ...): ``mask_to_grid(gt.masks[turn], grid, labels=labels[turn])``
  (the last turn: GRPO generates the last assistant turn); an absent target has an empty mask;
* semantic rows: ``mask_to_grid(label_map, grid, labels=classes, ignore_index=ignore)``;
* a ``solution`` column (a ground-truth answer text, ms-swift's usual column name) overrides both: it is
  decoded with the row's scheme. Nothing is read from the row's assistant message: GRPO replaces it.

Rewards (all in ``[0, 1]``) and the weights the recipes use (``reward_weights``, :data:`DEFAULT_WEIGHTS`)
---------------------------------------------------------------------------------------------------------
=====================  ======  ============================================================================
name                   weight  value
=====================  ======  ============================================================================
``text4seg_iou``       1.0     :func:`iou_rewards`: continuous cell IoU of the foreground, labels compared
                               (a cell counts for a label only where both say that label); empty answer to
                               an empty target 1.0, non-empty 0.0 (and the reverse); ``per_label=True``:
                               the mean IoU over the labels of either side (multi-target answers)
``text4seg_format``    0.5     :func:`format_rewards`: 1.0 when the strict decoder accepts the answer at
                               the grid's shape (``parse_valid``), ``0.75 - 0.25 * repairs`` otherwise
                               (floor 0), 0.0 without a ``<seg>`` block
``text4seg_reject``    0.0     :func:`rejection_rewards`: 1.0 when the answer is empty exactly when the
                               target is absent (an N-acc / T-acc hit per answer); a present target
                               answered empty 0.0; an absent one answered with foreground fraction ``f``
                               ``0.5 * (1 - f)`` (graded, so that such groups still rank their answers).
                               Listed with weight 0: logged per step as a hit rate, not optimised
``text4seg_iou_pixel`` (opt.)  :func:`pixel_iou_rewards`: IoU of the decoded mask with the full-resolution
                               COCO-RLE target (``gt.masks``), the evaluation's measure
=====================  ======  ============================================================================

Why IoU plus format: the lenient decoder pads missing rows, so an IoU computed after repair does not
punish a truncated answer; the format term does. Why the rejection term has weight 0: GRPO normalises the
summed reward within each group of answers to one query (ms-swift's ``scale_rewards: group``). On an
absent target the IoU term already ranks the empty answer (1.0) above every other (0.0), so adding the
rejection term changes no ranking there; on a present target it adds 1.0 to *every* non-empty answer,
wherever its mask lies, a bonus for writing something. Measured on the demo's 6,000-step R-RLE start
(``docs/demo.md``): with the term at weight 1.0 the policy wrote masks for absent targets too (N-acc
1.0 -> 0.56); at weight 0 it stayed 0.82-1.0 (five runs).

Example::

    >>> g = np.full((2, 2), "others", dtype=object); g[0, 0] = "dog"
    >>> iou_rewards(["<seg>dog *1| others *1\\n others *2\\n</seg>"], [g], scheme="rrle")
    [1.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from text4seg.descriptors import (
    BACKGROUND,
    SEG_OPEN,
    Decoded,
    DescriptorError,
    decode,
    mask_to_grid,
    normalize_label,
)

DEFAULT_WEIGHTS: dict[str, float] = {"text4seg_iou": 1.0, "text4seg_format": 0.5, "text4seg_reject": 0.0}
REPAIR_PENALTY = 0.25  # format reward lost per lenient-decoder repair
ABSENT_PARTIAL = 0.5  # reward of an absent target answered with foreground, times (1 - its fraction)


def _norm(grid: np.ndarray) -> np.ndarray:
    arr = np.asarray(grid, dtype=object)
    return np.vectorize(lambda v: normalize_label(str(v)), otypes=[object])(arr) if arr.size else arr


def _decode(text: Any, shape: tuple[int, int], scheme: str) -> Decoded:
    return decode(text if isinstance(text, str) else "", shape, scheme)


def cell_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of the foreground cells of two ``(rows, cols)`` label grids, labels compared.

    Intersection: cells where both grids hold the same non-background label; union: cells where either is
    foreground. Both empty: 1.0.
    """
    pred, gt = _norm(pred), _norm(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"grids differ in shape: prediction {pred.shape}, ground truth {gt.shape}")
    fg_p, fg_g = pred != BACKGROUND, gt != BACKGROUND
    union = int(np.sum(fg_p | fg_g))
    if union == 0:
        return 1.0
    return float(np.sum(fg_g & (pred == gt))) / union


def per_label_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean over the labels of either grid of the IoU of that label's cells (a label written but absent
    from the ground truth scores 0 and counts); both empty: 1.0."""
    pred, gt = _norm(pred), _norm(gt)
    labels = (set(pred.ravel()) | set(gt.ravel())) - {BACKGROUND}
    if not labels:
        return 1.0
    scores = []
    for lab in sorted(labels):
        p, g = pred == lab, gt == lab
        scores.append(float(np.sum(p & g)) / float(np.sum(p | g)))
    return float(np.mean(scores))


def iou_rewards(
    completions: Sequence[str], grids: Sequence[np.ndarray], scheme: str = "rrle", per_label: bool = False
) -> list[float]:
    """Continuous grid IoU of each completion (decoded leniently with ``scheme``, at its grid's shape)
    against its ground-truth grid; see :func:`cell_iou` and :func:`per_label_iou`."""
    score = per_label_iou if per_label else cell_iou
    out = []
    for text, gt in zip(completions, grids, strict=True):
        gt = np.asarray(gt, dtype=object)
        out.append(score(_decode(text, gt.shape, scheme).grid, gt))
    return out


def format_score(text: Any, decoded: Decoded, scheme: str = "rrle") -> float:
    """The format reward of one answer (``decoded``: its lenient decode at the ground truth's shape).

    0.0 without a ``<seg>`` block or with no descriptors; 1.0 when the strict decoder accepts it (the
    evaluation's ``parse_valid``); otherwise ``0.75 - REPAIR_PENALTY * repairs`` (floor 0): a strict
    failure costs at least one repair, since some defects (``<seg><seg></seg>``, a compact head without
    its newline) pass the lenient decoder without a repair, and a policy learns to write exactly those.
    """
    if not isinstance(text, str) or SEG_OPEN not in text:
        return 0.0
    if any(r.kind == "no_descriptors" for r in decoded.repairs):
        return 0.0
    try:
        decode(text, decoded.shape, scheme, strict=True)
        return 1.0
    except DescriptorError:
        return max(0.0, 1.0 - REPAIR_PENALTY * (1 + len(decoded.repairs)))


def format_rewards(
    completions: Sequence[str], grids: Sequence[np.ndarray], scheme: str = "rrle"
) -> list[float]:
    """:func:`format_score` of each completion decoded at its ground-truth grid's shape."""
    return [
        format_score(t, _decode(t, np.shape(g), scheme), scheme)
        for t, g in zip(completions, grids, strict=True)
    ]


def rejection_rewards(
    completions: Sequence[str], grids: Sequence[np.ndarray], scheme: str = "rrle", graded: bool = True
) -> list[float]:
    """1.0 when the decoded answer is empty exactly when the ground truth is (all ``others``); a present
    target answered empty scores 0.0; an absent target answered with foreground scores
    ``ABSENT_PARTIAL * (1 - f)`` with ``f`` the answer's foreground fraction of the grid (``graded=False``:
    0.0).

    Why graded: a policy that rarely writes a wholly empty answer (R-RLE samples a stray run in one of
    16 rows) gives every absent-target group the same 0.0, hence no advantage and no signal to reject;
    the graded value ranks fewer foreground cells higher, and is always below the 1.0 of the empty answer.
    """
    out = []
    for text, gt in zip(completions, grids, strict=True):
        gt_empty = not np.any(_norm(gt) != BACKGROUND)
        decoded = _decode(text, np.shape(gt), scheme)
        if decoded.is_empty == gt_empty:
            out.append(1.0)
        elif gt_empty and graded:
            fg = float(np.mean(np.asarray(decoded.grid, dtype=object) != BACKGROUND))
            out.append(ABSENT_PARTIAL * (1.0 - fg))
        else:
            out.append(0.0)
    return out


def ground_truth_grid(meta: Mapping[str, Any], solution: str | None = None) -> np.ndarray:
    """The ``(rows, cols)`` ground-truth label grid of a built row's ``text4seg`` dict (see the module
    docstring); ``solution``: a ground-truth answer text that takes precedence."""
    rows, cols = (int(v) for v in meta["grid"])
    scheme = meta.get("scheme") or "rrle"
    if isinstance(solution, str) and solution:
        return np.asarray(decode(solution, (rows, cols), scheme).grid, dtype=object)
    gt = meta.get("gt") or {}
    ident = meta.get("id", "?")
    if gt.get("label_map"):
        from PIL import Image

        with Image.open(gt["label_map"]) as im:
            label_map = np.asarray(im)
        classes = list(gt.get("classes") or [])
        ignore = list(gt.get("ignore") or [])
        return np.asarray(
            mask_to_grid(label_map, (rows, cols), labels=classes, ignore_index=ignore[0] if ignore else None),
            dtype=object,
        )
    masks = [m for m in (gt.get("masks") or []) if m]
    labels = list(meta.get("labels") or [])
    if not masks:
        raise ValueError(
            f"row {ident!r}: no ground truth for the reward (text4seg.gt.masks and gt.label_map are empty; "
            "build the data with --with-gt or add a 'solution' column)"
        )
    from text4seg.data.rle import rle_to_mask

    mask = rle_to_mask(masks[-1])  # GRPO generates the last assistant turn
    label = labels[-1] if labels else "object"
    return np.asarray(mask_to_grid(mask, (rows, cols), labels=label), dtype=object)


def pixel_iou_rewards(completions: Sequence[str], metas: Sequence[Mapping[str, Any]]) -> list[float]:
    """IoU of each completion's decoded foreground mask (nearest upsampling to the image size) with the
    full-resolution target mask of its row (``text4seg.gt.masks``, last turn); both empty: 1.0.
    Labels are not compared (a referring answer has one)."""
    from text4seg.data.rle import rle_to_mask

    out = []
    for text, meta in zip(completions, metas, strict=True):
        masks = [m for m in (meta.get("gt") or {}).get("masks") or [] if m]
        if not masks:
            raise ValueError(f"row {meta.get('id', '?')!r}: pixel IoU needs text4seg.gt.masks (--with-gt)")
        target = rle_to_mask(masks[-1]).astype(bool)
        shape = tuple(int(v) for v in meta["grid"])
        pred = _decode(text, shape, meta.get("scheme") or "rrle").mask(*target.shape)
        union = int(np.sum(pred | target))
        out.append(1.0 if union == 0 else float(np.sum(pred & target)) / union)
    return out


def _per_row(fn, **fixed):
    def score(completions, metas, solutions):
        out = []
        for text, meta, sol in zip(completions, metas, solutions, strict=True):
            gt = ground_truth_grid(meta, sol)
            out += fn([text], [gt], meta.get("scheme") or "rrle", **fixed)
        return out

    return score


ROW_REWARDS = {
    "text4seg_iou": _per_row(iou_rewards),
    "text4seg_iou_per_label": _per_row(iou_rewards, per_label=True),
    "text4seg_format": _per_row(format_rewards),
    "text4seg_reject": _per_row(rejection_rewards),
    "text4seg_iou_pixel": lambda completions, metas, solutions: pixel_iou_rewards(completions, metas),
}
"""The rewards by their registered ms-swift names, over dataset rows: ``fn(completions, metas,
solutions) -> list[float]`` with ``metas`` the rows' ``text4seg`` dicts (each row read in its own scheme)
and ``solutions`` the ``solution`` column or ``None`` per row."""


def score_rows(
    name: str,
    completions: Sequence[str],
    metas: Sequence[Mapping[str, Any]],
    solutions: Sequence[str | None] | None = None,
) -> list[float]:
    """Reward ``name`` (a key of :data:`ROW_REWARDS`) of each completion against its dataset row."""
    if name not in ROW_REWARDS:
        raise ValueError(f"unknown text4seg reward {name!r}; choose one of {sorted(ROW_REWARDS)}")
    if metas is None:
        raise ValueError(f"reward {name!r} needs the dataset's 'text4seg' column (build with --with-gt)")
    solutions = list(solutions) if solutions is not None else [None] * len(completions)
    return ROW_REWARDS[name](list(completions), list(metas), solutions)


# a label inside an answer: no separator, count, tag or line characters (rrle, irle, full, compact heads)
ROLLOUT_LABEL = r"[^|*<\n:=,]{1,80}"
_SENTINEL = "zqxlabelzqx"


def rollout_regex(scheme: str = "rrle", size: int | tuple[int, int] = 16, label: str = ROLLOUT_LABEL) -> str:
    """One regex for every GRPO rollout (ms-swift's ``structured_outputs_regex``, vLLM only): the scheme's
    answer regex (:func:`text4seg.decoding.constrain.descriptor_regex`) with any label matching
    ``label`` instead of the query's own labels. ms-swift applies one regex from the arguments to all
    rollouts, so per-query labels cannot reach it; the format and rejection rewards do the rest."""
    from text4seg.decoding.constrain import descriptor_regex

    return descriptor_regex(scheme, size, [_SENTINEL]).replace(_SENTINEL, label)
