"""What a trained checkpoint carries to inference, and how to apply it before loading the model.

ms-swift writes ``args.json`` into every checkpoint (``output/x/checkpoint-N``) and copies it into the
merged model of ``swift export --merge_lora true``. When a ``TransformersEngine`` (or ``swift infer`` /
``swift deploy``) is built on a folder holding ``args.json``, ms-swift builds the template FROM THAT FILE
(``template``, ``max_length``, ``max_pixels``...), ignoring a ``template_type`` passed by the caller. Two
things in it need the caller's help:

- ``template``: a text4seg template (``text4seg_llava1_5_hf``, see
  :mod:`text4seg.checkpoints.align`) exists only once registered in the process; ms-swift does not import
  the recipe's ``external_plugins`` when it only builds an engine.
- ``max_pixels`` (Qwen-VL recipes): ms-swift rescales each image to at most that many pixels, then
  qwen-vl-utils rounds the sides to multiples of 28 (Qwen2.5-VL) / 32 (Qwen3-VL) under ITS budget, the
  environment variable ``MAX_PIXELS`` (read when the first Qwen model loads). Training set both; at
  inference the environment variable must be set again, or the rounding may add a row or column of
  patches (and without ``max_pixels`` at all a 1024x768 image would become 999 tokens instead of 540).

:func:`prepare_engine` does both and returns what it did:

>>> # prepare_engine("output/merged")  ->
>>> # {"template": "qwen2_5_vl", "registered": [], "env": {"MAX_PIXELS": "451584"}}

Call it before ``TransformersEngine(model_dir)`` (predict, export checks, a server): the environment
entries are set in ``os.environ`` unless already set to a DIFFERENT value, which is an error (two budgets
for one model).
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

# Templates text4seg registers in ms-swift (text4seg.checkpoints.align.register_swift_templates).
PROJECT_TEMPLATE_PREFIX = "text4seg_"
# Qwen-VL model types whose image budget is qwen-vl-utils' MAX_PIXELS.
QWEN_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")


def checkpoint_args(model_dir: str | os.PathLike, adapters: Sequence[str | os.PathLike] = ()) -> dict | None:
    """The ``args.json`` ms-swift will build the template from (an adapter's first, as ms-swift does), or
    None when no folder holds one. ``ValueError`` naming the file when it is not a JSON object."""
    for folder in [*adapters, model_dir]:
        args = read_args(folder)
        if args is not None:
            return args
    return None


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def check_model_ref(value: str | os.PathLike, what: str = "model") -> None:
    """A model or adapter reference: an existing local folder, or a hub id written as one (``org/name``).

    Something that looks like a local path (absolute, ``./``, ``../``, ``~``, more than one ``/``, or an
    existing file) and is not an existing folder is a ``FileNotFoundError``/``ValueError`` naming it at once,
    instead of minutes of hub retries for a mistyped path.
    """
    text = os.fspath(value)
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        return
    if path.exists():
        raise ValueError(f"{what} {text}: a file, not a model folder")
    local = text.startswith(("/", "./", "../", "~", ".\\")) or text.count("/") != 1 or "\\" in text
    if local or not HUB_ID.fullmatch(text):
        raise FileNotFoundError(f"{what} {text}: no such folder (a hub id is written org/name)")


def read_args(folder: str | os.PathLike) -> dict | None:
    """``folder/args.json`` (what ms-swift saves beside a checkpoint) as a dict, None when the folder has
    none; read strictly (:func:`text4seg.data.jsonl.read_json_object`: a FIFO, a bad or deeply nested
    file, a non-object is a ``ValueError`` naming it, never a silent None)."""
    from text4seg.data.jsonl import read_json_object

    path = Path(folder) / "args.json"
    if not os.path.lexists(path):
        return None
    return read_json_object(path)


def pixel_env(args: dict) -> dict[str, str]:
    """The image-budget environment a checkpoint was trained with: ``{"MAX_PIXELS": str(max_pixels)}`` for a
    Qwen-VL checkpoint whose ``args.json`` records ``max_pixels``, else ``{}``."""
    max_pixels = args.get("max_pixels")
    model_type = str(args.get("model_type") or "")
    if max_pixels is None or model_type not in QWEN_MODEL_TYPES:
        return {}
    return {"MAX_PIXELS": str(int(max_pixels))}


def prepare_engine(
    model_dir: str | os.PathLike,
    *,
    adapters: Sequence[str | os.PathLike] = (),
    environ: MutableMapping[str, str] | None = None,
) -> dict[str, Any]:
    """Make this process able to load ``model_dir`` (plus ``adapters``) as it was trained; returns
    ``{"template", "registered", "env"}``.

    - registers text4seg's ms-swift templates when ``args.json`` names one (``registered``: their names);
    - sets the image budget the checkpoint was trained with in ``environ`` (default ``os.environ``;
      ``env``: what it holds now); raises ``ValueError`` when ``environ`` already holds a different value.

    A folder without ``args.json`` (a released model) needs nothing: ``template`` is None and the rest empty.
    """
    environ = os.environ if environ is None else environ
    from text4seg.checkpoints.align import register_swift_templates

    registered = register_swift_templates()  # cheap and idempotent: a --template may name one of them too
    args = checkpoint_args(model_dir, adapters)
    if args is None:
        return {"template": None, "registered": registered, "env": {}}
    template = args.get("template")
    if (
        isinstance(template, str)
        and template.startswith(PROJECT_TEMPLATE_PREFIX)
        and template not in registered
    ):
        raise ValueError(
            f"{model_dir}: args.json names template {template!r}, not one of text4seg's {registered}"
        )
    env = pixel_env(args)
    for key, value in env.items():
        current = environ.get(key)
        if current is not None and current != value:
            raise ValueError(
                f"{model_dir}: trained with {key}={value} (args.json max_pixels) but the environment sets "
                f"{key}={current}; unset it or set it to {value}"
            )
        environ[key] = value
    return {"template": template, "registered": registered, "env": env}
