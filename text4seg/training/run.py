"""Run ms-swift for a recipe (``swift sft``) or a LoRA merge (``swift export``): check, print, run.

``train(recipe_path, ...)`` loads a recipe (:mod:`text4seg.training.recipes`), applies ``key=value``
overrides, checks every dataset file and the keys against ms-swift's arguments before anything starts,
prints the command and runs it; ``export(checkpoint, out, ...)`` merges a LoRA checkpoint into its base
model and, for the whole-image LLaVA template, saves the merged processor so it resizes the whole image
(:mod:`text4seg.training.align`). Both return the child's exit code (0 for a dry run).

``quiet=True`` runs the child with ``LOG_LEVEL=WARNING`` (ms-swift's INFO lines off);
``progress=False`` with ``TQDM_DISABLE=1`` (no progress bars). ``echo`` receives every line printed.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from text4seg.training import recipes


def _print(line: str) -> None:
    print(line, flush=True)  # before the child writes to the same terminal


def _child_env(env: dict, quiet: bool, progress: bool) -> dict:
    out = {**os.environ, **env}
    if quiet:
        out["LOG_LEVEL"] = "WARNING"
    if not progress:
        out["TQDM_DISABLE"] = "1"
    return out


def train(
    recipe_path: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    dry_run: bool = False,
    check_args: bool = True,
    swift: str | None = None,
    quiet: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = _print,
) -> int:
    """Validate a recipe's data and arguments, print the ``swift sft`` command and run it (unless dry).

    ``overrides``: ``KEY=VALUE`` strings (:func:`~text4seg.training.recipes.parse_overrides`);
    ``swift``: the executable (default: next to this Python, then PATH).
    """
    recipe = recipes.apply_overrides(
        recipes.load_recipe(recipe_path), recipes.parse_overrides(list(overrides))
    )
    recipe = recipes.resolve_plugins(recipe, recipe_path)
    counts = recipes.validate_data(recipe)  # before ms-swift starts: one error naming FILE:LINE
    if not quiet:
        for path, n in counts.items():
            echo(f"data ok: {path} ({n} rows)")
    kind = recipes.swift_subcommand(recipe)
    if check_args:
        unknown = recipes.unknown_arguments(recipe, kind)
        if unknown:
            raise ValueError(
                f"{recipe_path}: ms-swift's {kind} does not accept {unknown} (see `swift {kind} --help`)"
            )
    if recipes.global_batch(recipe) and not quiet:
        echo(f"global batch: {recipes.global_batch(recipe)} (per-device x accumulation x GPUs x nodes)")
    argv, env = recipes.swift_command(recipe, swift=recipes.swift_executable(swift), subcommand=kind)
    echo(recipes.format_command(argv, env))
    if dry_run:
        return 0
    return subprocess.call(argv, env=_child_env(env, quiet, progress))


def export_command(
    checkpoint: str | os.PathLike, out: str | os.PathLike, overrides: Sequence[str], swift: str
) -> tuple[list[str], dict]:
    """``(argv, env)`` of the ``swift export`` merge for a checkpoint."""
    ckpt = Path(checkpoint)
    if not (ckpt / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{str(ckpt)!r} is not a LoRA checkpoint (no adapter_config.json)")
    recipe = {"adapters": str(ckpt), "merge_lora": True, "output_dir": str(out)}
    recipe = recipes.apply_overrides(recipe, recipes.parse_overrides(list(overrides)))
    return recipes.swift_command(recipe, swift=swift, subcommand="export")


def trained_template(checkpoint: str | os.PathLike) -> str | None:
    """The template named in the checkpoint's ``args.json`` (None when unreadable)."""
    try:
        return json.loads((Path(checkpoint) / "args.json").read_text()).get("template")
    except (OSError, ValueError):
        return None


def export(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    dry_run: bool = False,
    swift: str | None = None,
    quiet: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = _print,
) -> int:
    """Print and run the ``swift export --merge_lora`` of a LoRA checkpoint into ``out``.

    A checkpoint trained with the whole-image LLaVA template gets a merged model whose saved processor
    resizes the whole image too (no centre crop), as in training.
    """
    argv, env = export_command(checkpoint, out, overrides, recipes.swift_executable(swift))
    echo(recipes.format_command(argv, env))
    if dry_run:
        return 0
    code = subprocess.call(argv, env=_child_env(env, quiet, progress))
    from text4seg.training.align import LLAVA_WHOLE_IMAGE_TEMPLATE, whole_image_saved

    if code == 0 and trained_template(checkpoint) == LLAVA_WHOLE_IMAGE_TEMPLATE:
        for name in whole_image_saved(out):
            echo(f"{Path(out) / name}: set to resize the whole image (no centre crop), as in training")
    return code
