"""Training recipes: load a flat ms-swift YAML recipe, apply ``key=value`` overrides, validate the data
files it names, and build the exact ``swift sft`` command line that trains it.

A recipe is the file ``swift sft RECIPE.yaml`` reads: a flat mapping of ms-swift argument names to values
(lists allowed), plus an optional ``ENV`` mapping of environment variables (``NPROC_PER_NODE``,
``MAX_PIXELS``...). ms-swift applies an ``ENV`` entry only when the variable is not already set; the
command built here does the same.

>>> r = apply_overrides({"model": "Qwen/Qwen2.5-VL-7B-Instruct", "ENV": {"NPROC_PER_NODE": 8}},
...                     parse_overrides(["model=/ckpt/merged", "gpus=4"]))
>>> r["model"], r["ENV"]["NPROC_PER_NODE"]
('/ckpt/merged', 4)

Only :func:`swift_argument_names` imports ms-swift; everything else needs PyYAML (an ms-swift
dependency) and the standard library.
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

# Environment variables of ms-swift's own launcher (torch.distributed.run under the hood).
LAUNCH_ENV = ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES")
# Recipe keys that hold data files (validated before ms-swift starts).
DATA_KEYS = ("dataset", "val_dataset")
# Override aliases: short names for the launch variables.
ALIASES = {"gpus": "ENV.NPROC_PER_NODE", "nproc_per_node": "ENV.NPROC_PER_NODE", "nnodes": "ENV.NNODES"}
IMAGE_TAG = "<image>"


class DataFileError(ValueError):
    """A data file named by a recipe is unusable; the message names the file and the line."""


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe YAML into a dict (``ENV`` kept as a nested dict); ``ValueError`` if it is not flat."""
    yaml = require("yaml")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"recipe {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"recipe {str(p)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"recipe {str(p)!r} must be a mapping of ms-swift argument names, got {type(data).__name__}"
        )
    for key, value in data.items():
        if key == "ENV":
            if not isinstance(value, dict):
                raise ValueError(f"recipe {str(p)!r}: ENV must be a mapping, got {value!r}")
        elif isinstance(value, dict) and key not in ("model_kwargs", "deepspeed", "generation_config"):
            raise ValueError(f"recipe {str(p)!r}: key {key!r} is nested ({value!r}); recipes are flat")
    return data


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{k: v}``; values are parsed as YAML scalars/lists (``4`` -> 4, ``[a, b]``).

    ``ENV.X=v`` (or an all-caps key such as ``NPROC_PER_NODE=8``) sets an environment variable of the
    recipe; ``gpus=N`` is short for ``ENV.NPROC_PER_NODE=N``.
    """
    yaml = require("yaml")
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        value = yaml.safe_load(raw) if raw.strip() else ""
        key = ALIASES.get(key, key)
        if key.isupper() and not key.startswith("ENV."):
            key = "ENV." + key
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
        per_step = int(out.get("per_device_train_batch_size", 1)) * _world_size(out)
        if per_step and before % per_step == 0:
            out["gradient_accumulation_steps"] = before // per_step
    return out


def _world_size(recipe: Mapping[str, Any]) -> int:
    env = recipe.get("ENV") or {}
    return int(env.get("NPROC_PER_NODE", 1)) * int(env.get("NNODES", 1))


def global_batch(recipe: Mapping[str, Any]) -> int | None:
    """per_device_train_batch_size x gradient_accumulation_steps x NPROC_PER_NODE x NNODES, or None."""
    if "per_device_train_batch_size" not in recipe or "gradient_accumulation_steps" not in recipe:
        return None
    return (
        int(recipe["per_device_train_batch_size"])
        * int(recipe["gradient_accumulation_steps"])
        * _world_size(recipe)
    )


def _as_list(value: Any) -> list:
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
        for entry in _as_list(recipe.get(key)):
            name = str(entry).split("#", 1)[0]
            path = Path(name)
            if base is not None and not path.is_absolute():
                path = Path(base) / path
            if name.endswith((".jsonl", ".json", ".csv")) or path.exists():
                files.append(path)
    return files


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style parts
        parts = []
        for part in content:
            if isinstance(part, dict):
                if part.get("type") == "image" or "image" in part or "image_url" in part:
                    parts.append(IMAGE_TAG)
                elif "text" in part:
                    parts.append(str(part["text"]))
        return "".join(parts)
    return "" if content is None else str(content)


def check_row(row: Any, base: Path) -> str | None:
    """The problem with one JSONL row (ms-swift ``messages`` format), or None when it trains.

    Checks: ``messages`` is a non-empty list of role/content turns; at least one assistant turn and no
    empty assistant answer; the number of ``<image>`` tags equals the number of ``images``; every image
    file exists (relative paths against ``base``).
    """
    if not isinstance(row, dict):
        return f"a row must be a JSON object, got {type(row).__name__}"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return f"'messages' must be a non-empty list, got {messages!r:.80}"
    n_tags, n_answers = 0, 0
    for k, turn in enumerate(messages):
        if not isinstance(turn, dict) or "role" not in turn:
            return f"messages[{k}] must be an object with 'role' and 'content', got {turn!r:.80}"
        allowed = ("system", "user", "assistant", "tool")
        if turn["role"] not in allowed:
            return f"messages[{k}].role is {turn['role']!r}, not one of {allowed}"
        text = _content_text(turn.get("content"))
        n_tags += text.count(IMAGE_TAG)
        if turn["role"] == "assistant":
            n_answers += 1
            if not text.strip():
                return f"messages[{k}] is an empty assistant answer"
    if n_answers == 0:
        return "no assistant turn: nothing to train on"
    images = _as_list(row.get("images"))
    if n_tags != len(images):
        return f"{n_tags} {IMAGE_TAG} tag(s) in the messages but {len(images)} image(s) in 'images'"
    for img in images:
        path = img.get("path") if isinstance(img, dict) else img
        if not isinstance(path, str):
            return f"image entry {img!r:.80} is not a path"
        if path.startswith(("http://", "https://", "data:")):
            continue
        p = Path(path[7:] if path.startswith("file://") else path)
        if not p.is_absolute():
            p = base / p
        if not p.is_file():
            return f"image {path!r} does not exist"
    return None


def validate_jsonl(path: str | os.PathLike, *, base: str | os.PathLike | None = None) -> int:
    """Check every row of a data file (see :func:`check_row`); return the number of rows.

    Raises :class:`DataFileError` ``"FILE:LINE: problem"`` at the first bad row (a missing image, a wrong
    number of ``<image>`` tags, an empty answer, broken JSON) or when the file is missing or empty.
    Relative image paths resolve against ``base`` (default: the working directory, as in ms-swift).
    """
    p = Path(path)
    if not p.is_file():
        raise DataFileError(
            f"{p}: data file does not exist (build it with `text4seg build`, see the recipe header)"
        )
    root = Path(base) if base is not None else Path.cwd()
    n = 0
    with p.open(encoding="utf-8") as f:
        if p.suffix == ".json":
            try:
                rows = json.load(f)
            except json.JSONDecodeError as exc:
                raise DataFileError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(rows, list):
                raise DataFileError(f"{p}: a .json data file must hold a list of rows")
            numbered: Iterable[tuple[int, Any]] = ((i + 1, r) for i, r in enumerate(rows))
        else:
            numbered = _jsonl_rows(p, f)
        for line_no, row in numbered:
            problem = check_row(row, root)
            if problem:
                raise DataFileError(f"{p}:{line_no}: {problem}")
            n += 1
    if n == 0:
        raise DataFileError(f"{p}: no rows")
    return n


def _jsonl_rows(p: Path, f) -> Iterable[tuple[int, Any]]:
    for line_no, line in enumerate(f, start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{p}:{line_no}: not valid JSON ({exc.msg})") from None


def validate_data(recipe: Mapping[str, Any], base: str | os.PathLike | None = None) -> dict[str, int]:
    """Validate every local data file of a recipe; returns ``{file: rows}``. Raises :class:`DataFileError`."""
    return {str(p): validate_jsonl(p, base=base) for p in data_files(recipe, base)}


def resolve_plugins(recipe: Mapping[str, Any], recipe_path: str | os.PathLike) -> dict[str, Any]:
    """A copy of ``recipe`` whose relative ``external_plugins`` paths are made absolute.

    A path is kept when it exists from the working directory; otherwise it is looked up next to the
    recipe and in the recipe folder's parent (``recipes/x.yaml`` names ``recipes/text4seg_plugin.py``
    relative to the repository root), so ``text4seg train`` works from any directory.
    """
    out = dict(recipe)
    plugins = _as_list(out.get("external_plugins"))
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
