"""Run ms-swift for a recipe (``swift sft``) or a LoRA merge (``swift export``): check, print, run.

``train(recipe_path, ...)`` loads a recipe (:mod:`text4seg.training.recipe_file`), applies ``key=value``
overrides, checks every dataset file and the keys against ms-swift's arguments before anything starts,
prints the command and runs it; ``export(checkpoint, out, ...)`` merges a LoRA checkpoint into its base
model and, for the whole-image LLaVA template, saves the merged processor so it resizes the whole image
(:mod:`text4seg.checkpoints.align`). Both return the child's exit code (0 for a dry run).

The child runs with :data:`text4seg._lazy.CHILD_QUIET_ENV` (``LOG_LEVEL=WARNING``: ms-swift's INFO lines
off; transformers' notes and Python warnings off) unless ``verbose=True``; its progress bars stay
(``progress=False``: ``TQDM_DISABLE=1``). ``quiet=True`` also drops text4seg's own notes (the global
batch, the length check). ``echo`` receives every line printed.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from text4seg.checkpoints.settings import check_model_ref, read_args
from text4seg.checkpoints.trained import Collector, read_trained, write_trained
from text4seg.checkpoints.trust import check_trusted
from text4seg.training import datacheck, recipe_file, recipes
from text4seg.training.trained_callback import CALLBACK, ENV, fill_checkpoints


def _print(line: str) -> None:
    print(line, flush=True)  # before the child writes to the same terminal


def _child_env(env: dict, verbose: bool, progress: bool) -> dict:
    """The environment of the ``swift`` child: ``os.environ`` + the recipe's ``env``, library noise off
    unless ``verbose`` (the recipe's own ``LOG_LEVEL`` etc. win), no progress bars unless ``progress``."""
    from text4seg._lazy import CHILD_QUIET_ENV

    out = {**os.environ}
    if not verbose:
        out.update(CHILD_QUIET_ENV)
    out.update(env)
    if not progress:
        out["TQDM_DISABLE"] = "1"
    return out


def train(
    recipe_path: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    dry_run: bool = False,
    check_args: bool = True,
    check_lengths: bool = True,
    swift: str | None = None,
    quiet: bool = False,
    verbose: bool = False,
    progress: bool = True,
    trust_remote_code: bool = False,
    echo: Callable[[str], None] = _print,
) -> int:
    """Validate a recipe's data and arguments, print the ``swift sft`` command and run it (unless dry).

    ``overrides``: ``KEY=VALUE`` strings (:func:`~text4seg.training.recipes.parse_overrides`);
    ``swift``: the executable (default: next to this Python, then PATH). ``check_lengths``: encode the
    rows with the recipe's own template and processor (a documented sample per file) and stop when rows are
    over ``max_length`` (ms-swift would drop or cut them silently) unless ``allow_dropped_rows=true`` is set
    (:mod:`text4seg.training.lengths`); the processor of ``model`` must be loadable (a local folder, or the
    hub when online). Every local model folder the recipe names (:data:`MODEL_KEYS`) must carry no code
    unless ``trust_remote_code`` (:mod:`text4seg.checkpoints.trust`): the length check loads the processor
    and ms-swift loads everything with ``trust_remote_code=True``, so the check runs before either.
    """
    base = recipe_file.load_recipe(recipe_path)
    parsed = recipes.parse_overrides(list(overrides))
    recipe = recipes.apply_overrides(base, parsed)
    check_launch(base, recipe, parsed)
    for folder in model_folders(recipe):
        check_model_ref(folder)  # a mistyped local path is an error now, not a hub download later
    check_trusted(model_folders(recipe), trust_remote_code)  # before anything loads a processor
    recipe = recipes.resolve_plugins(recipe, recipe_path)
    collector = Collector()
    # before ms-swift starts: one error naming FILE:LINE; the rows also say what the model learns to answer
    counts = datacheck.validate_data(recipe, on_row=collector.add)
    if not quiet:
        for path, n in counts.items():
            echo(f"data ok: {path} ({n} rows)")
    trained = collector.result()
    for warning in collector.mixed():
        echo(f"warning: {warning}")
    from text4seg.training import lengths

    kind = recipes.swift_subcommand(recipe)
    stripped = lengths.pop_allow(recipe)[0]  # allow_dropped_rows: a text4seg key, never passed to ms-swift
    if check_args:
        unknown = recipes.unknown_arguments(stripped, kind)
        if unknown:
            raise ValueError(
                f"{recipe_path}: ms-swift's {kind} does not accept {unknown} (see `swift {kind} --help`)"
            )
    if check_lengths and kind == "sft":  # (GRPO generates its answers: prompts only)
        try:
            template = lengths.build_template(stripped)
        except Exception as exc:  # a processor that cannot be loaded: say how to skip the check
            raise ValueError(
                f"{recipe_path}: cannot load the processor of model={recipe.get('model')!r} to measure row "
                f"lengths ({type(exc).__name__}: {str(exc)[:200]}); give a local model folder "
                "(--set model=/path) or skip the check with --no-check-lengths"
            ) from None
        _, report = lengths.guard(recipe, template=template)  # raises when rows would be dropped or cut
        echo(report.summary())
    recipe = stripped
    if recipes.global_batch(recipe) and not quiet:
        echo(f"global batch: {recipes.global_batch(recipe)} (per-device x accumulation x GPUs x nodes)")
    if trained is not None:
        recipe = with_trained_callback(recipe)
    argv, env = recipes.swift_command(recipe, swift=recipes.swift_executable(swift), subcommand=kind)
    echo(recipes.format_command(argv, env))
    if dry_run:
        return 0
    child = _child_env(env, verbose, progress)
    output_dir = recipe.get("output_dir")
    if trained is not None:
        child[ENV] = json.dumps(trained.to_json(), ensure_ascii=False)
        if isinstance(output_dir, str) and output_dir:
            path = write_trained(output_dir, trained)
            if not quiet:
                echo(
                    f"trained with: {path} (scheme {trained.scheme}, "
                    f"grid {trained.grid[0]}x{trained.grid[1]})"
                )
    code = subprocess.call(argv, env=child)
    if trained is not None and isinstance(output_dir, str) and output_dir:
        fill_checkpoints(output_dir, trained)  # a checkpoint the callback did not reach (a crash, a resume)
    return code


def plugin_path() -> Path | None:
    """``recipes/text4seg_plugin.py`` (of the checkout or the installed wheel), None when absent."""
    path = recipe_file.RECIPES_DIR / "text4seg_plugin.py"
    return path.resolve() if path.is_file() else None


def with_trained_callback(recipe: dict) -> dict:
    """``recipe`` with the callback that writes ``text4seg.json`` into every checkpoint
    (:mod:`text4seg.training.trained_callback`): ``callbacks`` gains ``text4seg_trained`` and
    ``external_plugins`` the plugin that registers it (unless the recipe lists them already)."""
    plugin = plugin_path()
    if plugin is None:
        return recipe
    out = dict(recipe)
    plugins = [str(p) for p in recipes.as_list(out.get("external_plugins"))]
    if not any(Path(p).name == plugin.name for p in plugins):
        out["external_plugins"] = [*plugins, str(plugin)] if plugins else str(plugin)
    callbacks = [str(c) for c in recipes.as_list(out.get("callbacks"))]
    if CALLBACK not in callbacks:
        out["callbacks"] = [*callbacks, CALLBACK]
    return out


# recipe keys that name a model or adapter folder ms-swift would load (with trust_remote_code=True)
MODEL_KEYS = (
    "model",
    "adapters",
    "ref_model",
    "ref_adapters",
    "reward_model",
    "reward_adapters",
    "teacher_model",
    "resume_from_checkpoint",
)


def model_folders(recipe: dict) -> list[str]:
    """Every value of :data:`MODEL_KEYS` in ``recipe`` (strings or lists of strings), in order."""
    out: list[str] = []
    for key in MODEL_KEYS:
        for v in recipes.as_list(recipe.get(key)):
            if isinstance(v, (str, os.PathLike)) and str(v):
                out.append(str(v))
                base = base_model(v)  # an adapter folder loads its base model too (args.json "model")
                if isinstance(base, str) and base:
                    out.append(base)
    return out


def check_launch(base: dict, recipe: dict, overrides: dict) -> None:
    """``ValueError`` when ``gpus``/``nnodes`` (``NPROC_PER_NODE``/``NNODES``) is not a positive integer,
    or when a new GPU or node count cannot keep the recipe's global batch (per-device x accumulation x
    GPUs x nodes) and the user did not set ``gradient_accumulation_steps`` to accept another one."""
    env = recipe.get("ENV") or {}
    for name, alias in (("NPROC_PER_NODE", "gpus"), ("NNODES", "nnodes")):
        if f"ENV.{name}" not in overrides or name not in env:
            continue
        v = env[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{alias}={v!r}: expected a positive integer (the number of {alias})")
    launch = any(k in overrides for k in ("ENV.NPROC_PER_NODE", "ENV.NNODES"))
    before, after = recipes.global_batch(base), recipes.global_batch(recipe)
    if launch and before and after != before and "gradient_accumulation_steps" not in overrides:
        per_step = int(recipe.get("per_device_train_batch_size", 1)) * recipes.world_size(recipe)
        raise ValueError(
            f"{per_step} samples per step (per-device batch x GPUs x nodes) cannot keep the recipe's global "
            f"batch of {before} (it would become {after}); use a GPU count that divides {before}, or set "
            "gradient_accumulation_steps=N to accept another global batch"
        )


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
    """The template named in the checkpoint's ``args.json`` (None without one; a bad one is a ValueError)."""
    value = (read_args(checkpoint) or {}).get("template")
    return value if isinstance(value, str) else None


def base_model(checkpoint: str | os.PathLike) -> str | None:
    """The base model named in the checkpoint's ``args.json`` (None without one; a bad one is a ValueError
    naming it: an unreadable file must not skip the trust check of the base model)."""
    value = (read_args(checkpoint) or {}).get("model")
    if value is not None and not isinstance(value, str):
        raise ValueError(
            f"{Path(checkpoint) / 'args.json'}: model must be a path or hub id, got {value!r:.80}"
        )
    return value


def export(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    dry_run: bool = False,
    swift: str | None = None,
    quiet: bool = False,
    verbose: bool = False,
    progress: bool = True,
    trust_remote_code: bool = False,
    echo: Callable[[str], None] = _print,
) -> int:
    """Print and run the ``swift export --merge_lora`` of a LoRA checkpoint into ``out``.

    The checkpoint and its base model (``args.json`` ``model``, when a local folder) must not carry code
    unless ``trust_remote_code`` (:mod:`text4seg.checkpoints.trust`). A checkpoint trained with the
    whole-image LLaVA template gets a merged model whose saved processor
    resizes the whole image too (no centre crop), as in training. The checkpoint's ``text4seg.json``
    (:mod:`text4seg.checkpoints.trained`) is copied into ``out``: the merged model keeps what it was
    trained to answer.
    """
    argv, env = export_command(checkpoint, out, overrides, recipes.swift_executable(swift))
    given = recipes.apply_overrides({}, recipes.parse_overrides(list(overrides)))  # --set model=/base
    check_trusted([str(checkpoint)], trust_remote_code)  # the checkpoint's own code first
    base = base_model(checkpoint)
    if base is None and not given.get("model"):
        raise ValueError(
            f"{Path(checkpoint) / 'args.json'}: missing, so the base model is unknown; "
            "give it with --set model=/path/to/base"
        )
    folders = [str(checkpoint), base, *model_folders(given)]
    check_trusted(folders, trust_remote_code)  # ms-swift would run their code
    trained = read_trained(checkpoint)  # a bad text4seg.json is an error before the merge, not after
    echo(recipes.format_command(argv, env))
    if dry_run:
        return 0
    code = subprocess.call(argv, env=_child_env(env, verbose, progress))
    if code == 0 and trained is not None and Path(out).is_dir():
        echo(f"{write_trained(out, trained)}: what the checkpoint was trained with, carried over")
    from text4seg.checkpoints.align import LLAVA_WHOLE_IMAGE_TEMPLATE, whole_image_saved

    if code == 0 and trained_template(checkpoint) == LLAVA_WHOLE_IMAGE_TEMPLATE:
        for name in whole_image_saved(out):
            echo(f"{Path(out) / name}: set to resize the whole image (no centre crop), as in training")
    return code
