"""A tiny random SAM built from ``segment_anything.modeling`` parts (no weights exist offline)."""

from __future__ import annotations

from functools import partial

from text4seg._lazy import require


def make_tiny_sam(img_size: int = 256, embed_dim: int = 64, depth: int = 2, seed: int = 0):
    """A random tiny SAM (~0.2M parameters at the defaults) for tests and benchmarks. Not for use."""
    torch = require("torch")
    modeling = require("segment_anything.modeling")
    torch.manual_seed(seed)
    prompt_dim, patch = 32, 16
    emb = img_size // patch
    sam = modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            img_size=img_size,
            patch_size=patch,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=2,
            mlp_ratio=2,
            out_chans=prompt_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=False,
            window_size=0,
        ),
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(emb, emb),
            input_image_size=(img_size, img_size),
            mask_in_chans=4,
        ),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(
                depth=1, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=1,
            iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()
