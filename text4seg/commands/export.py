"""``text4seg export CKPT --out DIR``: merge a LoRA checkpoint into its base model (``swift export``).

The merged folder is a plain model: the GRES recipes start from the merged RES model, and inference needs
no adapter. ``swift export`` re-reads the checkpoint's ``args.json`` (base model, template).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

LLAVA_WHOLE_IMAGE_TEMPLATE = "text4seg_llava1_5_hf"  # = text4seg.training.align.LLAVA_WHOLE_IMAGE_TEMPLATE
HELP = "merge a LoRA checkpoint into its base model: swift export --adapters CKPT --merge_lora true"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint", type=Path, help="LoRA checkpoint folder (OUTPUT_DIR/checkpoint-N, has args.json)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder of the merged model")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra swift export argument (repeatable), e.g. model=/local/base/model",
    )
    p.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    p.add_argument(
        "--swift", default=None, help="the swift executable (default: next to this Python, then PATH)"
    )


def export_command(checkpoint: Path, out: Path, overrides: list[str], swift: str) -> tuple[list[str], dict]:
    """``(argv, env)`` of the ``swift export`` merge for a checkpoint."""
    from text4seg.training import recipes as train

    ckpt = Path(checkpoint)
    if not (ckpt / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{str(ckpt)!r} is not a LoRA checkpoint (no adapter_config.json)")
    recipe = {"adapters": str(ckpt), "merge_lora": True, "output_dir": str(out)}
    recipe = train.apply_overrides(recipe, train.parse_overrides(overrides))
    return train.swift_command(recipe, swift=swift, subcommand="export")


def run(args: argparse.Namespace) -> int:
    from text4seg.training.recipes import format_command, swift_executable

    argv, env = export_command(args.checkpoint, args.out, args.overrides, swift_executable(args.swift))
    print(format_command(argv, env), flush=True)
    if args.dry_run:
        return 0
    code = subprocess.call(argv, env={**os.environ, **env})
    if code == 0 and _trained_template(args.checkpoint) == LLAVA_WHOLE_IMAGE_TEMPLATE:
        from text4seg.training.align import whole_image_saved

        for name in whole_image_saved(args.out):
            print(f"{args.out / name}: set to resize the whole image (no centre crop), as in training")
    return code


def _trained_template(checkpoint: Path) -> str | None:
    """The template named in the checkpoint's args.json (None when unreadable)."""
    try:
        return json.loads((Path(checkpoint) / "args.json").read_text()).get("template")
    except (OSError, ValueError):
        return None
