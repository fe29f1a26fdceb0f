"""Tiny random models of every recipe family, with the RELEASED image settings and the real Qwen tokenizer.

Only the widths and depths are tiny; what decides the number of image tokens and what the model sees is
the released checkpoint's: the image processor (from :data:`text4seg.checkpoints.align.RELEASED`), the
vision patch / merge / tile geometry, and the tokenizer (Qwen2.5's BPE with the special tokens at their
real ids, so ms-swift's hard-coded ids hold). Each factory writes a folder ms-swift loads by path
(``--model DIR --model_type TYPE --check_model false``) and returns it.

- :func:`make_tiny_qwen2_5_vl_released`: ``qwen2_5_vl`` (patch 14, merge 2; min/max pixels as released).
- :func:`make_tiny_qwen3_vl`: ``qwen3_vl`` (patch 16, merge 2, deepstack; size 65,536..16,777,216 px).
- :func:`make_tiny_internvl3`: ``internvl`` / template ``internvl_hf`` (448 px tiles, 1-12 + thumbnail,
  patch 14, pixel shuffle 0.5: 256 tokens a tile).
- :func:`make_tiny_llava_released`: ``llava1_5_hf`` at 336 px, patch 14 (576 tokens), centre-cropping as
  released (the recipes' template uncrops it).
"""

from __future__ import annotations

import json
from pathlib import Path

from support.tiny_qwen import (
    QWEN2_VL_CHAT_TEMPLATE,
    make_tiny_qwen2_5_vl,
    qwen_tokenizer_fast,
)
from text4seg.checkpoints.align import RELEASED
from text4seg.demo.model import make_tiny_llava

QWEN_VOCAB = 151936
# InternVL3-hf / Qwen3 tokens after Qwen2.5's 22 specials (ids from 151665)
INTERNVL_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>", "<video>")
QWEN3_TOKENS = ("<tool_response>", "</tool_response>", "<think>", "</think>")


def _rewrite_image_processor(model: Path, settings: dict) -> None:
    """Set ``settings`` in the image-processor entries of the saved configs (the release's values)."""
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = model / name
        if not path.is_file():
            continue
        cfg = json.loads(path.read_text())
        ip = cfg.get("image_processor", cfg) if name == "processor_config.json" else cfg
        ip.update(json.loads(json.dumps(settings)))
        path.write_text(json.dumps(cfg, indent=2))


def make_tiny_qwen2_5_vl_released(out_dir: str | Path, seed: int = 0) -> Path:
    """Tiny Qwen2.5-VL whose image processor has the released pixel range (3,136..12,845,056)."""
    model = make_tiny_qwen2_5_vl(out_dir, seed=seed, image_size=56)
    _, settings = RELEASED["qwen2_5_vl"]
    _rewrite_image_processor(
        model, {"min_pixels": settings["min_pixels"], "max_pixels": settings["max_pixels"]}
    )
    _rewrite_image_processor(
        model, {"size": {"shortest_edge": settings["min_pixels"], "longest_edge": settings["max_pixels"]}}
    )
    return model


def make_tiny_qwen3_vl(out_dir: str | Path, seed: int = 0) -> Path:
    """Tiny ``Qwen3VLForConditionalGeneration`` (2 text layers, 1 vision layer), released processor."""
    import torch
    import transformers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hidden, heads = 64, 4
    config = transformers.Qwen3VLConfig(
        text_config={
            "vocab_size": QWEN_VOCAB,
            "hidden_size": hidden,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "head_dim": hidden // heads,
            "max_position_embeddings": 8192,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5e6,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "pad_token_id": 151643,
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [0],
        },
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = transformers.Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=False
    )
    model.save_pretrained(out)
    tokenizer = qwen_tokenizer_fast(QWEN3_TOKENS)
    _, settings = RELEASED["qwen3_vl"]
    ip = transformers.Qwen2VLImageProcessor(**json.loads(json.dumps(settings)))
    vp = transformers.Qwen3VLVideoProcessor(
        patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = transformers.Qwen3VLProcessor(
        image_processor=ip, tokenizer=tokenizer, video_processor=vp, chat_template=QWEN2_VL_CHAT_TEMPLATE
    )
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    ip.save_pretrained(out)
    return out


def make_tiny_internvl3(out_dir: str | Path, seed: int = 0) -> Path:
    """Tiny ``InternVLForConditionalGeneration`` (InternVL3-hf layout) with the released GotOcr2 processor:
    448 px tiles, patch 14, pixel shuffle 0.5 -> 256 ``<IMG_CONTEXT>`` tokens a tile."""
    import torch
    import transformers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = qwen_tokenizer_fast(
        INTERNVL_TOKENS,
        {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    image_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    hidden = 64
    config = transformers.InternVLConfig(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": [448, 448],
            "patch_size": [14, 14],
            "use_mean_pooling": False,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": QWEN_VOCAB,
            "hidden_size": hidden,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 8192,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "pad_token_id": 151643,
        },
        image_token_id=image_token_id,
        image_seq_length=256,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = transformers.InternVLForConditionalGeneration(config).eval()
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=False
    )
    model.save_pretrained(out)
    _, settings = RELEASED["internvl"]
    ip = transformers.GotOcr2ImageProcessor(**json.loads(json.dumps(settings)))
    vp = transformers.InternVLVideoProcessor()
    processor = transformers.InternVLProcessor(
        image_processor=ip,
        tokenizer=tokenizer,
        video_processor=vp,
        image_seq_length=256,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    ip.save_pretrained(out)
    return out


def make_tiny_llava_released(out_dir: str | Path, seed: int = 0, corpus=()) -> Path:
    """Tiny LLaVA-1.5-HF at the released 336 px / patch 14 (576 image tokens), centre-cropping as released."""
    model = make_tiny_llava(out_dir, seed=seed, image_size=336, patch_size=14, corpus=corpus)
    _, settings = RELEASED["llava1_5_hf"]
    _rewrite_image_processor(model, {"size": settings["size"], "do_center_crop": True})
    return model
