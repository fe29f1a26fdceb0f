"""Refuse checkpoints that carry code, unless the user trusts them (``--trust-remote-code``).

ms-swift loads every model with ``trust_remote_code=True`` hard-coded, so a model folder whose
``config.json`` (or ``tokenizer_config.json``, ``processor_config.json``, ``preprocessor_config.json``,
``image_processor_config.json``, ``video_preprocessor_config.json``) names Python classes in an
``auto_map`` runs that folder's ``*.py`` files as soon as it is loaded. Before a folder is handed to
ms-swift (``predict``, ``export``, the demo's re-use of a trained checkpoint, the app), :func:`check_trusted`
lists what would run: every ``auto_map`` entry and every ``*.py`` file in the folder, and raises
``ValueError`` naming them unless ``trust=True``. Example message::

    /ckpt carries code that loading it would run (config.json auto_map -> configuration_x.XConfig;
    configuration_x.py); pass --trust-remote-code if you trust its author

Only local folders are checked; a hub id is downloaded by ms-swift itself (offline runs never do).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

CONFIG_FILES = (
    "config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "image_processor_config.json",
    "video_preprocessor_config.json",
    "generation_config.json",
)


def _auto_map_entries(cfg_path: Path) -> list[str]:
    try:
        data = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found: list[str] = []

    def walk(node) -> None:  # auto_map may sit in a nested sub-config (text_config, vision_config)
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "auto_map" and v:
                    vals = v.values() if isinstance(v, dict) else [v]
                    for x in vals:
                        found.extend(str(y) for y in (x if isinstance(x, (list, tuple)) else [x]) if y)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data)
    return found


def remote_code(folder: str | os.PathLike) -> list[str]:
    """What loading ``folder`` with ``trust_remote_code=True`` could run: ``"<config> auto_map -> X"``
    entries and the ``*.py`` files of the folder (sorted); ``[]`` for a folder without code or a
    path that is not a local folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for name in CONFIG_FILES:
        for entry in _auto_map_entries(folder / name):
            out.append(f"{name} auto_map -> {entry}")
    out.extend(sorted(p.name for p in folder.glob("*.py")))
    return out


def check_trusted(folders: Iterable[str | os.PathLike | None], trust: bool = False) -> None:
    """``ValueError`` naming the code of the first folder that carries some, unless ``trust``."""
    if trust:
        return
    for folder in folders:
        if folder is None:
            continue
        found = remote_code(folder)
        if found:
            raise ValueError(
                f"{folder} carries code that loading it would run ({'; '.join(found)}); "
                "pass --trust-remote-code if you trust its author"
            )
