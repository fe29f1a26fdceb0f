"""Converting an ORIGINAL-layout LLaVA checkpoint (the released Text4Seg p16/p24 models) to llava-hf.

:func:`convert_llava_original`: a model in the ORIGINAL LLaVA layout (``llava_llama``: a Llama/Vicuna
language model whose keys are ``model.layers.*``, an ``mlp2x_gelu`` projector ``model.mm_projector.{0,2}``,
optionally the CLIP tower under ``model.vision_tower.vision_tower.*``) -> a llava-hf folder
(``LlavaForConditionalGeneration``: ``model.language_model.*``, ``model.multi_modal_projector.linear_{1,2}``,
``model.vision_tower.*``), with the tokenizer extended by ``<image>`` and ``<pad>`` (the embedding and the LM
head padded to a multiple of 64 rows, new rows = the mean of the old ones) and a processor (the CLIP tower's
image processor, ``patch_size``, the "default" feature strategy: layer -2 without CLS). Offline; every source
tensor is used or one ``ValueError`` names the rest. ms-swift 2.x adapters: :mod:`.swift2_lora`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from text4seg._lazy import require
from text4seg.checkpoints.weights import atomic_folder, few, load_tensors, read_json, save_tensors

# original LLaVA key prefix -> llava-hf (transformers 5.x) key prefix; the first match wins
# (transformers 5's CLIPVisionModel dropped the ``vision_model.`` level its 4.x checkpoints carry)
LLAVA_ORIGINAL_TO_HF: tuple[tuple[str, str], ...] = (
    ("model.vision_tower.vision_tower.vision_model.", "model.vision_tower."),
    ("model.vision_tower.vision_tower.", "model.vision_tower."),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.layers.", "model.language_model.layers."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
)
# buffers an original checkpoint may carry that the llava-hf model recomputes (rotary frequencies, CLIP
# position ids): dropped on purpose, by suffix
DROPPED_BUFFERS: tuple[str, ...] = (".rotary_emb.inv_freq", "embeddings.position_ids")
IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
PAD_MULTIPLE = 64


# ------------------------------------------------------------------------------ original LLaVA -> hf
def map_llava_original_key(key: str) -> str | None:
    """The llava-hf name of an original-LLaVA tensor; ``""`` for a buffer dropped on purpose; ``None``
    when the key has no mapping."""
    if key.endswith(DROPPED_BUFFERS):
        return ""
    for old, new in LLAVA_ORIGINAL_TO_HF:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def map_llava_original(tensors: dict[str, Any], where: str) -> dict[str, Any]:
    """Rename every tensor by :func:`map_llava_original_key`; ``ValueError`` listing the unmapped ones."""
    out, unmapped = {}, []
    for k, v in tensors.items():
        new = map_llava_original_key(k)
        if new is None:
            unmapped.append(k)
        elif new:
            out[new] = v
    if unmapped:
        raise ValueError(f"{where}: {len(unmapped)} source tensor(s) have no llava-hf name: {few(unmapped)}")
    return out


def llava_hf_config(
    src_cfg: dict[str, Any], vision_cfg: dict[str, Any], image_token_id: int, pad_id: int, vocab: int
):
    """A ``LlavaConfig`` from an original LLaVA ``config.json`` and the CLIP tower's ``config.json``."""
    transformers = require("transformers")
    where = "config.json"
    projector = src_cfg.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise ValueError(f"{where}: mm_projector_type {projector!r} is not supported (only 'mlp2x_gelu')")
    select = src_cfg.get("mm_vision_select_feature", "patch")
    if select not in ("patch", "cls_patch"):
        raise ValueError(f"{where}: mm_vision_select_feature {select!r} not in ['patch', 'cls_patch']")
    if src_cfg.get("mm_patch_merge_type", "flat") != "flat":
        raise ValueError(f"{where}: mm_patch_merge_type {src_cfg['mm_patch_merge_type']!r} is not 'flat'")
    text = transformers.LlamaConfig(
        **{
            k: src_cfg[k]
            for k in (
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "max_position_embeddings",
                "rms_norm_eps",
                "hidden_act",
                "rope_theta",
                "rope_scaling",
                "attention_bias",
                "tie_word_embeddings",
                "bos_token_id",
                "eos_token_id",
            )
            if src_cfg.get(k) is not None
        },
        vocab_size=vocab,
        pad_token_id=pad_id,
    )
    vc = vision_cfg.get("vision_config", vision_cfg)  # a CLIPModel folder nests it
    vision = transformers.CLIPVisionConfig(
        **{k: v for k, v in vc.items() if k not in ("architectures", "model_type", "transformers_version")}
    )
    return transformers.LlavaConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=image_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default" if select == "patch" else "full",
        vision_feature_layer=int(src_cfg.get("mm_vision_select_layer", -2)),
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(src_cfg.get("tie_word_embeddings", False)),
    )


def pad_rows(weight: Any, rows: int) -> Any:
    """``weight`` with rows appended up to ``rows``, each the mean of the existing rows (the mean of the
    distribution the old llava-hf conversion sampled new token embeddings from; deterministic here)."""
    torch = require("torch")
    if weight.shape[0] >= rows:
        return weight
    mean = weight.float().mean(0, keepdim=True).to(weight.dtype)
    return torch.cat([weight, mean.expand(rows - weight.shape[0], -1)], 0)


CLIP_VISION_PARTS = ("embeddings.", "pre_layrnorm.", "encoder.", "post_layernorm.")


def _vision_tensors(vision_tower: Path) -> dict[str, Any]:
    """The CLIP tower's vision tensors under llava-hf names (``model.vision_tower.*``): ``vision_model.*``
    of a CLIPModel / 4.x CLIPVisionModel folder, or the bare keys of a 5.x CLIPVisionModel; the text tower
    and projections of a CLIPModel are not part of LLaVA and are skipped."""
    out = {}
    for k, v in load_tensors(vision_tower).items():
        name = k.removeprefix("vision_model.")
        if name.startswith(CLIP_VISION_PARTS) and not k.endswith(DROPPED_BUFFERS):
            out["model.vision_tower." + name] = v
    if not out:
        raise ValueError(
            f"{vision_tower}: no CLIP vision tensors ('vision_model.*'); is it a CLIP model folder?"
        )
    return out


def _expected_keys(config: Any) -> set[str]:
    """The state-dict keys of ``LlavaForConditionalGeneration(config)`` (built on the meta device)."""
    torch = require("torch")
    transformers = require("transformers")
    with torch.device("meta"):
        model = transformers.LlavaForConditionalGeneration(config)
    keys = set(model.state_dict())
    if config.tie_word_embeddings:
        keys.discard("lm_head.weight")
    return keys


def convert_llava_original(
    src: Path, out: Path, vision_tower: Path, dtype: str | None = None, log: Callable[[str], None] = print
) -> Path:
    """Convert an original-LLaVA folder ``src`` to a llava-hf folder ``out`` (see the module docstring).

    ``vision_tower``: the local CLIP folder the checkpoint was built on (``mm_vision_tower``, e.g. a
    download of openai/clip-vit-large-patch14-336): its ``config.json`` gives the tower's shape, its
    ``preprocessor_config.json`` the image processor, and its weights fill the tower when ``src`` does not
    carry one. ``dtype``: cast floating tensors (``float16``/``bfloat16``/``float32``); default keep.
    """
    transformers = require("transformers")
    torch = require("torch")
    src, vision_tower = Path(src), Path(vision_tower)
    src_cfg = read_json(src / "config.json")
    mt = src_cfg.get("model_type")
    if mt not in ("llava_llama", "llava"):
        raise ValueError(f"{src / 'config.json'}: model_type {mt!r} is not an original LLaVA ('llava_llama')")
    if mt == "llava" and "text_config" in src_cfg:
        raise ValueError(
            f"{src / 'config.json'}: already a llava-hf model (has text_config); nothing to convert"
        )
    vision_cfg = read_json(vision_tower / "config.json")
    tensors = map_llava_original(load_tensors(src), str(src))
    if not any(k.startswith("model.vision_tower.") for k in tensors):
        log(f"convert: {src} has no vision tower; taking it from {vision_tower}")
        tensors.update(_vision_tensors(vision_tower))

    tokenizer = _llava_tokenizer(src)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    rows = -(-len(tokenizer) // PAD_MULTIPLE) * PAD_MULTIPLE
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        if name in tensors:
            tensors[name] = pad_rows(tensors[name], rows)
    config = llava_hf_config(src_cfg, vision_cfg, image_id, pad_id, rows)
    expected = _expected_keys(config)
    missing, extra = expected - set(tensors), set(tensors) - expected
    if extra:
        raise ValueError(
            f"{src}: {len(extra)} mapped tensor(s) have no place in the llava-hf model: {few(extra)}"
        )
    if missing:
        raise ValueError(f"{src}: the llava-hf model needs tensor(s) the source lacks: {few(missing)}")
    if dtype:
        target = getattr(torch, dtype)
        tensors = {k: (v.to(target) if v.is_floating_point() else v) for k, v in tensors.items()}
        config.dtype = dtype
    else:
        config.dtype = str(next(iter(tensors.values())).dtype).replace("torch.", "")
    processor = transformers.LlavaProcessor(
        image_processor=_clip_image_processor(vision_tower, config.vision_config.image_size),
        tokenizer=tokenizer,
        patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,
    )
    with atomic_folder(out) as tmp:
        config.architectures = ["LlavaForConditionalGeneration"]
        config.save_pretrained(tmp)
        save_tensors(tensors, tmp)
        processor.save_pretrained(tmp)
        gen = src / "generation_config.json"
        if gen.is_file():
            shutil.copyfile(gen, tmp / "generation_config.json")
        (tmp / "text4seg_conversion.json").write_text(
            json.dumps(
                {"from": "llava-original", "source": str(src), "vision_tower": str(vision_tower)}, indent=2
            )
            + "\n"
        )
    log(f"convert: wrote {out} ({len(tensors)} tensors, vocab {len(tokenizer)} padded to {rows})")
    return Path(out)


def _llava_tokenizer(src: Path) -> Any:
    """The source's tokenizer with ``<image>`` (special, not normalised) and ``<pad>`` added."""
    transformers = require("transformers")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{src}: cannot load the tokenizer ({exc})") from None
    added = transformers.AddedToken(IMAGE_TOKEN, special=True, normalized=False)
    tok.add_tokens([added], special_tokens=True)
    if tok.convert_tokens_to_ids(PAD_TOKEN) in (None, tok.unk_token_id):
        tok.add_special_tokens({"pad_token": PAD_TOKEN})
    else:
        tok.pad_token = PAD_TOKEN
    return tok


def _clip_image_processor(vision_tower: Path, side: int) -> Any:
    """The CLIP tower's image processor (its ``preprocessor_config.json``), else LLaVA-1.5's settings at
    ``side``."""
    transformers = require("transformers")
    if (vision_tower / "preprocessor_config.json").is_file():
        return transformers.CLIPImageProcessor.from_pretrained(str(vision_tower), local_files_only=True)
    from text4seg.checkpoints.align import CLIP_MEAN, CLIP_STD

    return transformers.CLIPImageProcessor(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        do_center_crop=True,
        resample=3,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
