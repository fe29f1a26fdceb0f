"""Recipe files: read a training recipe YAML and check every value's type before anything else reads it.

A recipe is the file ``swift sft RECIPE.yaml`` reads: one flat mapping of ms-swift argument names to a value
or a flat list of values, plus an optional ``ENV`` mapping of environment variables that the launch sets
when they are not set already. For example::

    model: Qwen/Qwen2.5-VL-7B-Instruct
    dataset: [data/refcoco_train.jsonl, data/refclef_train.jsonl#5000]
    max_length: 2048
    learning_rate: 2.0e-4
    ENV: {NPROC_PER_NODE: 8, MAX_PIXELS: 451584}

Typed keys: :data:`INT_KEYS` hold a whole number, :data:`FLOAT_KEYS` a finite number (or a string that is
one: PyYAML reads ``1e-4`` as text), :data:`PATHS_KEYS` a path or a list of paths, :data:`NESTED_KEYS` may
hold a mapping; every other key holds a scalar or a flat list. ``ENV`` keys are variable names, its values
scalars (:data:`LAUNCH_INT_ENV` whole numbers).

Hostile recipes are one ``ValueError`` naming the file and the field: a file over :data:`MAX_RECIPE_BYTES`,
bytes that are not UTF-8, YAML aliases that expand past :data:`MAX_YAML_NODES` nodes (an "alias bomb") or
refer to themselves, a key given twice, a value of the wrong type (``max_length: abc``, ``dataset: 5``,
``ENV: [1]``). Quoted values are cut to 200 characters.

Overrides, the ``swift`` command line and ms-swift's own argument parser live in
:mod:`text4seg.training.recipes`. This module needs PyYAML (an ms-swift dependency) and the standard library.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from text4seg._lazy import require
from text4seg.data.jsonl import quote

MAX_RECIPE_BYTES = 1 << 20  # a recipe is a few KB
MAX_YAML_NODES = 100_000  # YAML nodes after expanding aliases
# Keys whose values have a known type (checked before anything else reads them).
INT_KEYS = (
    "max_length", "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
    "lora_rank", "lora_alpha", "max_steps", "save_steps", "eval_steps", "logging_steps", "save_total_limit",
    "dataloader_num_workers", "seed", "data_seed", "num_generations", "max_completion_length",
    "max_new_tokens", "dataset_num_proc",
)  # fmt: skip
FLOAT_KEYS = (
    "learning_rate",
    "num_train_epochs",
    "warmup_ratio",
    "weight_decay",
    "lora_dropout",
    "beta",
    "temperature",
)
PATHS_KEYS = ("dataset", "val_dataset", "external_plugins")  # a string or a list of strings
NESTED_KEYS = ("model_kwargs", "deepspeed", "generation_config")  # may hold a mapping
LAUNCH_INT_ENV = ("NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_PORT")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCALARS = (str, int, float, bool, type(None))


def recipes_dir() -> Path:
    """The recipes folder: ``text4seg/recipes/`` of an installed wheel (pyproject ships ``recipes/`` there as
    package data), else ``recipes/`` of the checkout this module runs from (an editable install)."""
    package = Path(__file__).resolve().parents[1]
    for folder in (package / "recipes", package.parent / "recipes"):
        if (folder / "demo.yaml").is_file():
            return folder
    return package / "recipes"  # a broken install: the reader of a recipe names the missing file


RECIPES_DIR = recipes_dir()


@lru_cache(maxsize=1)
def _recipe_loader():
    """A ``yaml.SafeLoader`` subclass that refuses duplicate keys and aliases expanding past the bound."""
    yaml = require("yaml")

    class RecipeLoader(yaml.SafeLoader):
        def compose_document(self):
            node = super().compose_document()
            _expanded_nodes(node, yaml)
            return node

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = getattr(key_node, "value", None)
                if isinstance(key, str) and key in seen and key != "<<":
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {quote(key)} is given twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return RecipeLoader


def _expanded_nodes(root, yaml) -> int:
    """Nodes of a composed YAML document with every alias expanded (memoised: linear in the document);
    ``yaml.YAMLError`` past :data:`MAX_YAML_NODES` or on an alias that contains itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:  # iterative post-order: deep nesting costs no Python recursion
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _children(node, yaml)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in children), MAX_YAML_NODES + 1)
            if sizes[key] > MAX_YAML_NODES:
                raise yaml.YAMLError(
                    f"aliases expand past {MAX_YAML_NODES} nodes (an alias bomb?); a recipe needs none"
                )
            continue
        if key in sizes:
            continue
        if key in active:
            raise yaml.YAMLError("an alias refers to a node that contains it (a recursive recipe)")
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node, yaml) if id(c) not in sizes)
    return sizes[id(root)]


def _children(node, yaml) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def _one_line(exc: Exception) -> str:
    """A YAML error as one line of at most 300 characters."""
    text = " ".join(str(exc).replace('in "<unicode string>", ', "").split())
    return text if len(text) <= 300 else text[:297] + "..."


def parse_yaml_value(text: str, where: str) -> Any:
    """``text`` read as one YAML value with the recipe loader (``4`` -> 4, ``[a, b]`` -> a list, blank ->
    ``""``); ``ValueError`` starting with ``where`` when it is not YAML, an alias bomb or nested too deep."""
    yaml = require("yaml")
    if not text.strip():
        return ""
    try:
        return yaml.load(text, Loader=_recipe_loader())  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, RecursionError) as exc:
        raise ValueError(f"{where}: not a YAML value ({_one_line(exc)})") from None


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def check_value(key: str, value: Any, where: str) -> None:
    """``ValueError`` naming ``where`` and ``key`` when ``value`` has the wrong type for the key."""
    bad = None
    if value is None:
        return
    if key in INT_KEYS and not is_int(value):
        bad = "an integer"
    elif key in FLOAT_KEYS and not (
        (is_int(value) or isinstance(value, float))
        and math.isfinite(value)
        or isinstance(value, str)
        and _is_float(value)
    ):
        bad = "a number"
    elif key in PATHS_KEYS:
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(x, str) and x.strip() for x in items):
            bad = "a path (or name) or a list of them"
    elif key in NESTED_KEYS:
        if not isinstance(value, (dict, str, *_SCALARS)):
            bad = "a mapping or a string"
    elif isinstance(value, dict):
        bad = "a value or a list (recipes are flat)"
    elif isinstance(value, list) and not all(isinstance(x, _SCALARS) for x in value):
        bad = "a value or a flat list of values"
    elif not isinstance(value, (*_SCALARS, list)):
        bad = "a value or a list"
    if bad:
        raise ValueError(f"{where}: {key} must be {bad}, got {quote(value)}")


def check_env(env: Any, where: str) -> None:
    """``ValueError`` naming ``where`` unless ``env`` maps variable names to scalars (launch counts whole)."""
    if not isinstance(env, dict):
        raise ValueError(f"{where}: ENV must be a mapping of environment variables, got {quote(env)}")
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ValueError(f"{where}: ENV key {quote(name)} is not an environment variable name")
        if not isinstance(value, (str, int, float, bool)):
            raise ValueError(f"{where}: ENV.{name} must be a string or a number, got {quote(value)}")
        if name in LAUNCH_INT_ENV and not (
            is_int(value) or isinstance(value, str) and value.strip().isdigit()
        ):
            raise ValueError(f"{where}: ENV.{name} must be a whole number, got {quote(value)}")


def check_recipe(recipe: Mapping[str, Any], where: str) -> None:
    """``ValueError`` naming ``where`` and the field for a key that is not a name, an ``ENV`` that is not a
    mapping of names to scalars, or a value of the wrong type (:data:`INT_KEYS`, :data:`FLOAT_KEYS`,
    :data:`PATHS_KEYS`; other keys hold a scalar or a flat list, :data:`NESTED_KEYS` a mapping too)."""
    for key, value in recipe.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"{where}: key {quote(key)} is not an argument name")
        if key == "ENV":
            check_env(value, where)
        else:
            check_value(key, value, where)


def _read_text(p: Path, name: str) -> str:
    """The recipe's bytes as UTF-8 text; ``ValueError`` naming the file when too big or not UTF-8."""
    with open(p, "rb") as fh:
        raw = fh.read(MAX_RECIPE_BYTES + 1)
    if len(raw) > MAX_RECIPE_BYTES:
        raise ValueError(f"recipe {name} is over {MAX_RECIPE_BYTES} bytes; a recipe is a few KB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"recipe {name}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"
        ) from None


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe YAML into a dict (``ENV`` kept as a nested dict); ``ValueError`` naming the file (and
    the field) if it is too big, not UTF-8, not valid YAML, an alias bomb, not flat or of the wrong types."""
    yaml = require("yaml")
    p = Path(path)
    name = quote(str(p))
    if not p.is_file():
        raise FileNotFoundError(f"recipe {name} does not exist")
    text = _read_text(p, name)
    try:
        data = yaml.load(text, Loader=_recipe_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ValueError(f"recipe {name} is not valid YAML: {_one_line(exc)}") from None
    except RecursionError:
        raise ValueError(f"recipe {name} is nested too deep") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"recipe {name} must be a mapping of ms-swift argument names, got {type(data).__name__}"
        )
    check_recipe(data, f"recipe {name}")
    return data
