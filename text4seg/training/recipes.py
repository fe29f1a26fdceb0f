"""Training recipes as commands: apply ``key=value`` overrides to a recipe, find the data files it names
(checked by :mod:`text4seg.training.datacheck`), and build the exact ``swift sft`` / ``swift rlhf`` command
line. Reading and type-checking the recipe YAML itself is :mod:`text4seg.training.recipe_file`.

A recipe is a flat mapping of ms-swift argument names to values plus an optional ``ENV`` mapping of
environment variables (``NPROC_PER_NODE``, ``MAX_PIXELS``...). ms-swift applies an ``ENV`` entry only when the
variable is not already set; the command built here does the same. An override is ``key=value`` with the
value read as YAML and type-checked like the recipe's own value (one line naming the override otherwise).

>>> r = apply_overrides({"model": "Qwen/Qwen2.5-VL-7B-Instruct", "ENV": {"NPROC_PER_NODE": 8}},
...                     parse_overrides(["model=/ckpt/merged", "gpus=4"]))
>>> r["model"], r["ENV"]["NPROC_PER_NODE"]
('/ckpt/merged', 4)

Only :func:`swift_argument_names` and :func:`parse_swift_args` import ms-swift; everything else needs PyYAML
(an ms-swift dependency) and the standard library.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from text4seg._lazy import require
from text4seg.data.jsonl import quote
from text4seg.training.recipe_file import check_env, check_value, is_int, parse_yaml_value

# Recipe keys that hold data files (validated before ms-swift starts).
DATA_KEYS = ("dataset", "val_dataset")
# Override aliases: short names for the launch variables.
ALIASES = {"gpus": "ENV.NPROC_PER_NODE", "nproc_per_node": "ENV.NPROC_PER_NODE", "nnodes": "ENV.NNODES"}


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{k: v}``; values are parsed as YAML scalars/lists (``4`` -> 4, ``[a, b]``).

    ``ENV.X=v`` (or an all-caps key such as ``NPROC_PER_NODE=8``) sets an environment variable of the
    recipe; ``gpus=N`` is short for ``ENV.NPROC_PER_NODE=N``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        where = f"override {quote(item)}"
        value = parse_yaml_value(raw, where)
        key = ALIASES.get(key, key)
        if key.isupper() and not key.startswith("ENV."):
            key = "ENV." + key
        if key.startswith("ENV."):
            if value is not None:
                check_env({key[4:]: value}, where)
        else:
            check_value(key, value, where)
        out[key] = value
    return out


def apply_overrides(recipe: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``recipe`` with ``overrides`` applied (``ENV.X`` keys go into ``recipe["ENV"]``).

    A value of ``null`` removes the key. Changing the number of GPUs or nodes keeps the global batch
    (per-device x accumulation x GPUs x nodes) when the recipe's accumulation allows it and the caller did
    not set ``gradient_accumulation_steps`` too.
    """
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in recipe.items()}
    env = dict(out.get("ENV") or {})
    before = global_batch(out)
    for key, value in overrides.items():
        if key.startswith("ENV."):
            name = key[4:]
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    if env:
        out["ENV"] = env
    else:
        out.pop("ENV", None)
    launch_changed = any(k in overrides for k in ("ENV.NPROC_PER_NODE", "ENV.NNODES"))
    if before and launch_changed and "gradient_accumulation_steps" not in overrides:
        per_step = _whole(out, "per_device_train_batch_size", 1, "per_device_train_batch_size") * world_size(
            out
        )
        if per_step and before % per_step == 0:
            out["gradient_accumulation_steps"] = before // per_step
    return out


def _whole(mapping: Mapping[str, Any], key: str, default: int, field: str) -> int:
    """``mapping[key]`` as an int; ``ValueError`` naming ``field`` when it is not a whole number."""
    value = mapping.get(key, default)
    if is_int(value):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"{field} must be a whole number, got {quote(value)}")


def world_size(recipe: Mapping[str, Any]) -> int:
    """The processes a recipe trains on: ``ENV.NPROC_PER_NODE`` times ``ENV.NNODES`` (1 each when absent)."""
    env = recipe.get("ENV") or {}
    return _whole(env, "NPROC_PER_NODE", 1, "ENV.NPROC_PER_NODE") * _whole(env, "NNODES", 1, "ENV.NNODES")


def global_batch(recipe: Mapping[str, Any]) -> int | None:
    """per_device_train_batch_size x gradient_accumulation_steps x NPROC_PER_NODE x NNODES, or None."""
    if "per_device_train_batch_size" not in recipe or "gradient_accumulation_steps" not in recipe:
        return None
    return (
        _whole(recipe, "per_device_train_batch_size", 1, "per_device_train_batch_size")
        * _whole(recipe, "gradient_accumulation_steps", 1, "gradient_accumulation_steps")
        * world_size(recipe)
    )


def as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def data_files(recipe: Mapping[str, Any], base: str | os.PathLike | None = None) -> list[Path]:
    """The local data files a recipe names under ``dataset`` / ``val_dataset``.

    An entry counts as a local file when it ends in ``.jsonl``/``.json``/``.csv`` (ms-swift's ``#N``
    sample suffix stripped) or exists on disk; hub dataset ids are left to ms-swift. Relative paths
    resolve against ``base`` (default: the working directory).
    """
    files: list[Path] = []
    for key in DATA_KEYS:
        for entry in as_list(recipe.get(key)):
            name = str(entry).split("#", 1)[0]
            path = Path(name)
            if base is not None and not path.is_absolute():
                path = Path(base) / path
            if name.endswith((".jsonl", ".json", ".csv")) or path.exists():
                files.append(path)
    return files


def resolve_plugins(recipe: Mapping[str, Any], recipe_path: str | os.PathLike) -> dict[str, Any]:
    """A copy of ``recipe`` whose relative ``external_plugins`` paths are made absolute.

    A path is kept when it exists from the working directory; otherwise it is looked up next to the
    recipe and in the recipe folder's parent (``recipes/x.yaml`` names ``recipes/text4seg_plugin.py``
    relative to the repository root), so ``text4seg train`` works from any directory.
    """
    out = dict(recipe)
    plugins = as_list(out.get("external_plugins"))
    if not plugins:
        return out
    here = Path(recipe_path).resolve().parent
    resolved = []
    for plugin in plugins:
        p = Path(str(plugin))
        if not p.is_absolute() and not p.exists():
            for base in (here, here.parent):
                if (base / p).exists():
                    p = base / p
                    break
        resolved.append(str(p.resolve()) if p.exists() else str(plugin))
    out["external_plugins"] = resolved if isinstance(recipe.get("external_plugins"), list) else resolved[0]
    return out


def _cli_value(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _cli_value(item)]
    if isinstance(value, dict):
        return [json.dumps(value, ensure_ascii=False)]
    return [str(value)]


def swift_argv(recipe: Mapping[str, Any]) -> list[str]:
    """The recipe as ms-swift CLI arguments (``--key value ...``, lists spread), as ``swift sft X.yaml``."""
    argv: list[str] = []
    for key, value in recipe.items():
        if key == "ENV" or value is None:
            continue
        argv += [f"--{key}", *_cli_value(value)]
    return argv


def recipe_env(recipe: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The recipe's ``ENV`` entries that the current environment does not already set (ms-swift's rule)."""
    environ = os.environ if environ is None else environ
    return {str(k): str(v) for k, v in (recipe.get("ENV") or {}).items() if str(k) not in environ}


def swift_executable(explicit: str | None = None) -> str:
    """The ``swift`` command: ``explicit`` if given, else the one next to this Python, else ``PATH``'s."""
    if explicit:
        return explicit
    local = Path(sys.executable).parent / "swift"
    return str(local) if local.exists() else (shutil.which("swift") or "swift")


def swift_subcommand(recipe: Mapping[str, Any]) -> str:
    """``rlhf`` for a recipe that names an ``rlhf_type`` (GRPO, DPO, ...), else ``sft``."""
    return "rlhf" if recipe.get("rlhf_type") else "sft"


def swift_command(
    recipe: Mapping[str, Any],
    *,
    swift: str = "swift",
    subcommand: str = "sft",
    environ: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)``: the ``swift sft`` command for a recipe and the environment variables it adds."""
    return [swift, subcommand, *swift_argv(recipe)], recipe_env(recipe, environ)


def format_command(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """A shell line a user can copy: ``VAR=value ... swift sft --key value ...``."""
    prefix = [f"{k}={shlex.quote(v)}" for k, v in env.items()]
    return " ".join(prefix + [shlex.join(list(argv))])


SWIFT_ARGUMENT_CLASSES = {
    "sft": "SftArguments",
    "rlhf": "RLHFArguments",
    "export": "ExportArguments",
    "infer": "InferArguments",
}


def swift_argument_names(kind: str = "sft") -> set[str]:
    """The argument names the installed ms-swift accepts for ``swift <kind>`` (its dataclass fields).

    ``kind``: ``sft``, ``rlhf`` (GRPO and the other ``swift rlhf`` trainers), ``export`` or ``infer``.
    Imports ms-swift (a few seconds).
    """
    import dataclasses

    arguments = require("swift.arguments")
    classes = SWIFT_ARGUMENT_CLASSES
    if kind not in classes:
        raise ValueError(f"kind {kind!r} not in {sorted(classes)}")
    cls = getattr(arguments, classes[kind])
    return {f.name for f in dataclasses.fields(cls) if f.init}


def unknown_arguments(recipe: Mapping[str, Any], kind: str = "sft") -> list[str]:
    """Recipe keys (``ENV`` aside) that the installed ms-swift does not accept for ``swift <kind>``."""
    names = swift_argument_names(kind)
    return sorted(k for k in recipe if k != "ENV" and k not in names)


def parse_swift_args(recipe: Mapping[str, Any], kind: str = "sft") -> Any:
    """Parse a recipe's arguments with ms-swift's own parser (types, choices), without running anything.

    Returns the ``argparse.Namespace``; raises ``ValueError`` naming the argument when ms-swift would
    reject it (unknown name, a value of the wrong type or outside its choices). Imports ms-swift.
    """
    import argparse
    import contextlib
    import io

    utils = require("swift.utils.utils")
    transformers = require("transformers")
    arguments = require("swift.arguments")
    if kind not in SWIFT_ARGUMENT_CLASSES:
        raise ValueError(f"kind {kind!r} not in {sorted(SWIFT_ARGUMENT_CLASSES)}")
    cls = getattr(arguments, SWIFT_ARGUMENT_CLASSES[kind])
    with utils._patch_get_type_hints():
        parser = transformers.HfArgumentParser([cls])
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            ns, rest = argparse.ArgumentParser.parse_known_args(parser, swift_argv(recipe))
    except SystemExit:
        lines = [ln for ln in stderr.getvalue().splitlines() if "error:" in ln] or [stderr.getvalue().strip()]
        raise ValueError(
            f"ms-swift's {kind} parser rejects the arguments: {lines[-1].split('error:', 1)[-1].strip()}"
        ) from None
    if rest:
        raise ValueError(f"ms-swift's {kind} parser does not accept {rest}")
    return ns
