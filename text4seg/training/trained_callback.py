"""``text4seg.json`` into every checkpoint ms-swift writes (:mod:`text4seg.checkpoints.trained`).

``text4seg train`` derives what the rows were trained with, writes it into the recipe's ``output_dir``
before ``swift sft`` starts, passes it to the child in the environment variable :data:`ENV` and adds the
ms-swift callback :data:`CALLBACK` (registered by ``recipes/text4seg_plugin.py``, which it adds to
``external_plugins``): on every save the callback writes the file into ``checkpoint-N`` beside ms-swift's
``args.json``, and at the end into the run's (versioned) output folder. After ``swift`` returns,
:func:`fill_checkpoints` writes it into any ``checkpoint-*`` still without it (a recipe run without the
callback).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from text4seg.checkpoints.trained import TRAINED_NAME, TrainedWith, parse_trained

ENV = "TEXT4SEG_TRAINED"
CALLBACK = "text4seg_trained"


def from_env() -> TrainedWith | None:
    """The :class:`TrainedWith` passed by ``text4seg train`` (None when this process was not started by
    it); a bad value is a ``ValueError`` naming the variable."""
    text = os.environ.get(ENV)
    if not text:
        return None
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError(f"environment variable {ENV}: not a JSON object") from None
    if not isinstance(obj, dict):
        raise ValueError(f"environment variable {ENV}: not a JSON object")
    return parse_trained(obj, f"${ENV}")


def write_into(folder: str | os.PathLike, trained: TrainedWith | None) -> bool:
    """Write ``folder/text4seg.json`` unless ``trained`` is None or ``folder`` is not a folder."""
    from text4seg.checkpoints.trained import write_trained

    if trained is None or not Path(folder).is_dir():
        return False
    write_trained(folder, trained)
    return True


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-*`` folders of a run: ``output_dir/checkpoint-N`` and, with ms-swift's
    ``add_version``, ``output_dir/vK-.../checkpoint-N``."""
    root = Path(output_dir)
    found = [*root.glob("checkpoint-*"), *root.glob("*/checkpoint-*")]
    return sorted(p for p in found if p.is_dir() and not p.is_symlink())


def fill_checkpoints(output_dir: str | os.PathLike, trained: TrainedWith) -> list[Path]:
    """Write ``text4seg.json`` into every checkpoint folder (and versioned run folder) of ``output_dir``
    that has none; returns the folders written."""
    written = []
    for ckpt in checkpoints(output_dir):
        for folder in (ckpt, ckpt.parent):
            if not (folder / TRAINED_NAME).exists() and write_into(folder, trained):
                written.append(folder)
    return written


def register() -> bool:
    """Register :data:`CALLBACK` in ms-swift's ``callbacks_map`` (False without ms-swift)."""
    try:
        from swift.callbacks import TrainerCallback, callbacks_map
    except ImportError:
        return False

    class TrainedCallback(TrainerCallback):
        """Writes ``text4seg.json`` (from :data:`ENV`) into each saved checkpoint and the run folder."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                write_into(Path(args.output_dir) / f"checkpoint-{state.global_step}", from_env())
            return control

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                write_into(args.output_dir, from_env())
            return control

    callbacks_map.setdefault(CALLBACK, TrainedCallback)
    return True
