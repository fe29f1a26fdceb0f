"""ms-swift reward plugin of the text4seg GRPO recipes (``external_plugins: recipes/text4seg_rewards.py``).

Registers in ``swift.rewards.orms`` the rewards of :mod:`text4seg.training.rewards` (values, weights and
ground truth are documented there and in ``docs/rl.md``)::

    text4seg_iou            continuous cell IoU, labels compared (empty/empty = 1)
    text4seg_iou_per_label  mean per-label IoU (multi-target answers)
    text4seg_format         1 when the strict decoder accepts it, else 0.75 - 0.25 per repair
    text4seg_reject         1 when the answer is empty exactly when the target is absent
    text4seg_iou_pixel      IoU with the full-resolution COCO-RLE target (optional)

ms-swift calls each with the completions and every dataset column as keyword arguments: the rows'
``text4seg`` dict (grid, scheme, labels, gt.masks; built with ``--with-gt``) is the ground truth, and a
``solution`` column, when present, overrides it. Use with e.g. ``--reward_funcs text4seg_iou
text4seg_format text4seg_reject --reward_weights 1.0 0.5 0.0`` (the rejection term logged, not
optimised: ``docs/rl.md``).
"""

from swift.rewards import ORM, orms

from text4seg.training.rewards import ROW_REWARDS, score_rows


class Text4SegReward(ORM):
    """One text4seg reward (``NAME`` in :data:`text4seg.training.rewards.ROW_REWARDS`)."""

    NAME = "text4seg_iou"

    def __call__(self, completions, **kwargs):
        return score_rows(self.NAME, completions, kwargs.get("text4seg"), kwargs.get("solution"))


for _name in ROW_REWARDS:
    # the class name is what ms-swift logs: rewards/text4seg_iou/mean, ...
    orms[_name] = type(_name, (Text4SegReward,), {"NAME": _name})
