"""The one tiny LLaVA-1.5-HF factory (CLIP ViT + 2-layer MLP projector + Llama), built from a config with
random weights and no download: the demo's model, and the model of the tests and benchmarks.

:func:`make_tiny_llava` writes a folder that ms-swift loads by path (``--model DIR --model_type
llava1_5_hf --check_model false``): ``model.safetensors`` (float32, seeded), ``config.json``,
``generation_config.json`` (greedy), the tokenizer, ``processor_config.json`` /
``preprocessor_config.json`` and ``chat_template.json`` (llava-hf/llava-1.5's "USER: <image>\\n{text}
ASSISTANT:").

Whole-image rule: the image processor resizes the *whole* image to ``image_size x image_size`` (no centre
crop, no aspect preservation), the region a text4seg grid describes. An image becomes
``(image_size // patch_size) ** 2`` image tokens.

Tokenizer: a byte-level BPE of ``vocab`` tokens trained in-process on ``corpus`` (GPT-2's
pre-tokenisation), ids 0..4 = ``<unk> <s> </s> <pad> <image>``; ``extra_tokens`` are then added whole
(the demo adds one token per answer cell, :func:`cell_tokens`). torch, transformers and tokenizers are
imported inside the functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from text4seg._lazy import require
from text4seg.checkpoints.align import CLIP_MEAN, CLIP_STD

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
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<image>")  # ids 0..4
# The tokenizer's training text when the caller gives none: the R-RLE vocabulary and prompt words.
BASE_CORPUS: tuple[str, ...] = (
    "others *16\n others *4| red circle *3| others *9\n",
    "<seg>others *16\n</seg> Sure, here is the segmentation mask:",
    "Please segment the red circle in this image. Can you segment the blue square?",
    "red green blue yellow white black purple orange cyan magenta circle square triangle ellipse rectangle",
    "small large left right top bottom middle center upper lower the a an of in on at with and",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32",
)


def cell_tokens(labels: Sequence[str]) -> list[str]:
    """One token per answer cell: ``L``, ``"| " + L`` and ``"\\n " + L`` for ``others`` and every label,
    then ``<seg>`` and ``</seg>``."""
    out = []
    for lab in ["others", *labels]:
        out += [lab, "| " + lab, "\n " + lab]
    return out + ["<seg>", "</seg>"]


def train_bpe(vocab: int, corpus: Sequence[str], extra_tokens: Sequence[str] = ()) -> Any:
    """A ``tokenizers.Tokenizer``: byte-level BPE of ``vocab`` tokens on ``corpus``, then ``extra_tokens``."""
    tokenizers = require("tokenizers")
    min_vocab = len(SPECIAL_TOKENS) + 256
    if vocab < min_vocab:
        raise ValueError(f"vocab={vocab!r} must be >= {min_vocab} (5 special tokens + 256 bytes)")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer)
    if extra_tokens:
        tok.add_tokens([tokenizers.AddedToken(t, normalized=False) for t in extra_tokens])
    return tok


def make_tiny_llava(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 64,
    patch_size: int = 8,
    vocab: int = 384,
    corpus: Sequence[str] = (),
    extra_tokens: Sequence[str] = (),
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
    rope_theta: float = 10000.0,
    max_position_embeddings: int = 4096,
    image_mean: Sequence[float] = CLIP_MEAN,
    image_std: Sequence[float] = CLIP_STD,
) -> Path:
    """Build a random tiny LLaVA-1.5-HF and save it to ``out_dir``; returns ``Path(out_dir)``.

    ``corpus``: the tokenizer's training text (empty: :data:`BASE_CORPUS`); ``extra_tokens``: strings
    added as whole tokens after the BPE. ``vision_feature_layer`` / ``vision_feature_select_strategy``
    are LLaVA's (``-2`` / ``"default"`` as released; ``0`` feeds the layer-normed patch embeddings).
    ``image_mean`` / ``image_std``: the processor's normalisation (CLIP's by default). Weights float32,
    ``torch.manual_seed(seed)`` right before the model is built: the same arguments give the same bytes.
    """
    if image_size <= 0 or patch_size <= 0 or image_size % patch_size:
        raise ValueError(
            f"image_size={image_size!r} must be a positive multiple of patch_size={patch_size!r}"
        )
    allowed = ("default", "full")
    if vision_feature_select_strategy not in allowed:
        raise ValueError(
            f"vision_feature_select_strategy={vision_feature_select_strategy!r} not in {allowed}"
        )
    torch = require("torch")
    transformers = require("transformers")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    bpe = train_bpe(vocab, list(corpus) or list(BASE_CORPUS), extra_tokens)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        chat_template=LLAVA_1_5_CHAT_TEMPLATE,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
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
            max_position_embeddings=max_position_embeddings,
            rope_theta=rope_theta,
            bos_token_id=ids["<s>"],
            eos_token_id=ids["</s>"],
            pad_token_id=ids["<pad>"],
            tie_word_embeddings=False,
        ),
        image_token_index=ids["<image>"],
        image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy=vision_feature_select_strategy,
    )
    torch.manual_seed(seed)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    model.save_pretrained(out)  # generation_config.json from the config: bos/eos/pad, greedy

    image_processor = transformers.CLIPImageProcessor(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        do_center_crop=False,
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(image_mean),
        image_std=list(image_std),
    )
    processor = transformers.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy=vision_feature_select_strategy,
        chat_template=LLAVA_1_5_CHAT_TEMPLATE,
        num_additional_image_tokens=1,
        image_token="<image>",
    )
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)  # preprocessor_config.json, for tools that read it directly
    template = out / "chat_template.json"  # some transformers versions write chat_template.jinja only
    if not template.exists():
        template.write_text(json.dumps({"chat_template": LLAVA_1_5_CHAT_TEMPLATE}, indent=2) + "\n")
    return out


def make_demo_model(out: Path, labels: Sequence[str], corpus: Sequence[str], cfg: Any) -> Path:
    """The demo's model: :func:`make_tiny_llava` with ``cfg.model_options()`` (a
    :class:`~text4seg.demo.config.DemoConfig`) and one token per answer cell of ``labels``."""
    return make_tiny_llava(out, corpus=corpus, extra_tokens=cell_tokens(labels), **cfg.model_options())
