"""``text4seg convert``: released Text4Seg checkpoints -> folders the current stack loads.

* ``text4seg convert llava-original SRC --vision-tower CLIP --out DST``: an original-LLaVA model
  (``llava_llama``, ``mm_projector.*``) -> a llava-hf ``LlavaForConditionalGeneration`` folder with its
  processor and tokenizer (``<image>``, ``<pad>``).
* ``text4seg convert swift2-lora ADAPTER [ADAPTER ...] [--base BASE] --out DST``: ms-swift 2.x LoRA adapters
  merged in order (GRES after RES) into BASE; every LoRA tensor is used or the command fails.

See :mod:`text4seg.checkpoints.convert`, :mod:`text4seg.checkpoints.swift2_lora` and docs/released.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "convert released checkpoints: original LLaVA -> llava-hf, ms-swift 2.x LoRA adapters -> merged model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    lo = sub.add_parser("llava-original", help="original LLaVA layout (llava_llama) -> llava-hf layout")
    lo.add_argument(
        "src", type=Path, help="the original LLaVA model folder (config.json, weights, tokenizer)"
    )
    lo.add_argument(
        "--vision-tower",
        type=Path,
        required=True,
        help="local CLIP folder named by the source's mm_vision_tower (openai/clip-vit-large-patch14-336)",
    )
    lo.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    lo.add_argument(
        "--dtype", choices=["float16", "bfloat16", "float32"], default=None, help="cast the weights"
    )
    sw = sub.add_parser("swift2-lora", help="merge ms-swift 2.x LoRA adapters (in order) into a base model")
    sw.add_argument(
        "adapters", type=Path, nargs="+", help="adapter folders, merged in this order (RES, then GRES)"
    )
    sw.add_argument(
        "--base",
        type=Path,
        default=None,
        help="base model folder (default: the first adapter's base_model_name_or_path when local)",
    )
    sw.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")


def run(args: argparse.Namespace) -> int:
    from text4seg.checkpoints import convert, swift2_lora

    if args.kind == "llava-original":
        convert.convert_llava_original(args.src, args.out, args.vision_tower, dtype=args.dtype)
    else:
        swift2_lora.merge_swift2_lora(args.adapters, args.base, args.out)
    return 0
