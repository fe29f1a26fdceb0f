"""The released Text4Seg models' own interface: questions, prompts and image preprocessing, as trained.

The strings live as data in ``text4seg/checkpoints/official_data/*.json`` with their source named (the
released models expect them verbatim). This module turns them into prompts, token ids and pixels:

* :func:`referring_question` / :func:`condition_question`: the official questions (referring: the
  expression lower-cased and stripped, commas optionally removed as the LLaVA-codebase evaluation does;
  semantic: the class names joined by ``"|"``).
* :func:`vicuna_v1_prompt` + :func:`chunked_ids`: original LLaVA's ``conv_vicuna_v1`` prompt with the
  Text4Seg-edited system prompt, tokenised in chunks around ``<image>`` (``tokenizer_image_token``: each
  chunk with its own BOS, every BOS but the first dropped) -- what a model converted by
  ``text4seg convert llava-original`` was trained on.
* :func:`llava_hf_prompt`: LLaVA-1.5-hf's ``USER: <image>\\n{Q}\\nASSISTANT:``.
* :func:`stretch` / :func:`official_pixels`: the whole image resized by PIL to the processor's side
  (BICUBIC for the llava-hf adapters, BILINEAR for the original-LLaVA evaluation), then the processor.
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("official_data")
IMAGE = "<image>"
# family -> PIL resample of the stretch to the processor's side
RESAMPLE = {"llava1_5_hf": "BICUBIC", "llava_original": "BILINEAR"}


@cache
def load(name: str) -> dict[str, Any]:
    """``official_data/<name>.json``."""
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


def questions(kind: str) -> list[str]:
    """The official question templates of ``kind`` (``referring`` or ``condition``)."""
    data = load("questions")
    if kind not in ("referring", "condition"):
        raise ValueError(f"question kind {kind!r} not in ['referring', 'condition']")
    return list(data[kind]["questions"])


def clean_expression(expression: str, strip_commas: bool = False) -> str:
    """The expression as the official builders put it in ``[class_name]``: lower-cased, stripped."""
    text = expression.lower().strip()
    return text.replace(",", "") if strip_commas else text


def referring_question(expression: str, rng: random.Random, strip_commas: bool = False) -> str:
    """One official referring question, drawn by ``rng``, on the cleaned expression."""
    template = rng.choice(questions("referring"))
    return template.replace("[class_name]", clean_expression(expression, strip_commas))


def condition_question(class_names: list[str], rng: random.Random) -> str:
    """One official open-vocabulary question, drawn by ``rng``, listing ``class_names`` joined by ``|``."""
    return rng.choice(questions("condition")).replace("[class_name]", "|".join(class_names))


def vicuna_v1_system(edited: bool = True) -> str:
    """``conv_vicuna_v1``'s system prompt as Text4Seg edited it (``edited``), else ``conv_llava_v1``'s."""
    key = "conv_vicuna_v1_system" if edited else "conv_llava_v1_system"
    return load("prompts")["llava_original"][key]


def vicuna_v1_prompt(question: str, system: str | None = None) -> str:
    """``{system} USER: <image>\\n{question} ASSISTANT:`` (LLaVA's ``SeparatorStyle.TWO``, sep ``" "``)."""
    system = vicuna_v1_system() if system is None else system
    return f"{system} USER: {IMAGE}\n{question} ASSISTANT:"


def llava_hf_prompt(question: str) -> str:
    """LLaVA-1.5-hf's prompt: ``USER: <image>\\n{question}\\nASSISTANT:``."""
    return f"USER: {IMAGE}\n{question}\nASSISTANT:"


def chunked_ids(prompt: str, tokenizer: Any, image_token_id: int) -> list[int]:
    """Token ids of ``prompt`` tokenised in chunks around ``<image>``, as the original LLaVA did: every
    chunk tokenised with BOS, the BOS of every later chunk dropped, ``image_token_id`` between chunks."""
    chunks = [tokenizer(c).input_ids for c in prompt.split(IMAGE)]
    bos = tokenizer.bos_token_id
    ids: list[int] = []
    for k, chunk in enumerate(chunks):
        if k:
            ids.append(image_token_id)
            if chunk[:1] == [bos]:
                chunk = chunk[1:]
        ids.extend(chunk)
    return ids


def stretch(image: Any, side: int, resample: str = "BICUBIC") -> Any:
    """The whole RGB image resized by PIL to ``side x side`` (no aspect kept, nothing cropped)."""
    from PIL import Image

    return image.convert("RGB").resize((side, side), getattr(Image.Resampling, resample))


def processor_side(image_processor: Any) -> int:
    """The square side a CLIP-style processor outputs (its crop size, else its size)."""
    for attr in ("crop_size", "size"):
        size = getattr(image_processor, attr, None) or {}
        get = size.get if isinstance(size, dict) else lambda k, d=None, s=size: getattr(s, k, d)
        for key in ("height", "shortest_edge"):
            if get(key):
                return int(get(key))
    raise ValueError(f"cannot tell the side of {type(image_processor).__name__}")


def official_pixels(image: Any, image_processor: Any, family: str = "llava1_5_hf") -> Any:
    """``pixel_values`` (a torch tensor) of ``image`` as the released ``family`` model was fed."""
    if family not in RESAMPLE:
        raise ValueError(f"family {family!r} not in {sorted(RESAMPLE)}")
    side = processor_side(image_processor)
    return image_processor(images=[stretch(image, side, RESAMPLE[family])], return_tensors="pt")[
        "pixel_values"
    ]
