"""Tiny random models in the ORIGINAL LLaVA layout, a sentencepiece Llama tokenizer, and the original-layout
forward written from the architecture's definition (LLaVA-1.5: CLIP hidden states of layer -2 without the
CLS token, an ``mlp2x_gelu`` projector, the image features spliced into the embeddings at ``<image>``).

Nothing is downloaded: the tokenizer is a sentencepiece BPE (byte fallback, like Vicuna's) trained here.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
import transformers

IMAGE_TOKEN_INDEX = -200  # the original LLaVA's placeholder id (llava/constants.py)
CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "USER: Please segment only the black dog in the image. ASSISTANT: Sure, here is the mask:",
    "others *16\n others *4| dog *3| others *9\n",
    "Can you segment the man on the left? Where is the cat in this picture?",
]


def train_sentencepiece(folder: Path, vocab: int = 400) -> Path:
    """``folder/tokenizer.model``: a Llama-style sentencepiece BPE (``<unk>`` 0, ``<s>`` 1, ``</s>`` 2,
    byte fallback, dummy prefix), plus a ``tokenizer_config.json`` like LLaVA-1.5's."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20),
        model_writer=model,
        vocab_size=vocab,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    cfg = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": False,
        "model_max_length": 2048,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return folder / "tokenizer.model"


def sp_processor(folder: Path):
    """The sentencepiece processor of ``folder/tokenizer.model`` (what LLaVA's slow LlamaTokenizer ran)."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))


def make_clip(folder: Path, image_size: int = 28, patch: int = 14, hidden: int = 32, seed: int = 1) -> Path:
    """A tiny CLIP vision tower folder (``vision_model.*`` weights, config, a CLIP preprocessor config)."""
    torch.manual_seed(seed)
    cfg = transformers.CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch,
        projection_dim=hidden,
    )
    transformers.CLIPVisionModel(cfg).save_pretrained(folder)
    from safetensors.torch import load_file, save_file

    # the released towers were saved by transformers 4.x: keys under "vision_model."
    sd = load_file(str(folder / "model.safetensors"))
    save_file(
        {f"vision_model.{k}": v for k, v in sd.items()}, str(folder / "model.safetensors"), {"format": "pt"}
    )
    transformers.CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
        resample=3,
    ).save_pretrained(folder)
    return folder


def make_original_llava(
    src: Path, clip: Path, hidden: int = 32, seed: int = 0, with_tower: bool = True
) -> Path:
    """A tiny ``llava_llama`` folder in the original key layout, its tower taken from ``clip``."""
    torch.manual_seed(seed)
    train_sentencepiece(src)
    vocab = sp_processor(src).get_piece_size()
    llama_cfg = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    llama = transformers.LlamaForCausalLM(llama_cfg)
    sd = {k: v.clone() for k, v in llama.state_dict().items()}
    vcfg = transformers.CLIPVisionConfig.from_pretrained(clip)
    sd["model.mm_projector.0.weight"] = torch.randn(hidden, vcfg.hidden_size) * 0.2
    sd["model.mm_projector.0.bias"] = torch.randn(hidden) * 0.1
    sd["model.mm_projector.2.weight"] = torch.randn(hidden, hidden) * 0.2
    sd["model.mm_projector.2.bias"] = torch.randn(hidden) * 0.1
    if with_tower:
        tower = transformers.CLIPVisionModel.from_pretrained(clip).state_dict()
        pre = "model.vision_tower.vision_tower.vision_model."  # as LLaVA (transformers 4.x) saved it
        sd.update({pre + k: v.clone() for k, v in tower.items()})
    from safetensors.torch import save_file

    save_file(sd, str(src / "model.safetensors"), metadata={"format": "pt"})
    cfg = {
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava_llama",
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 256,
        "rms_norm_eps": llama_cfg.rms_norm_eps,
        "hidden_act": "silu",
        "vocab_size": vocab,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "mm_hidden_size": vcfg.hidden_size,
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_projector_type": "mlp2x_gelu",
        "mm_patch_merge_type": "flat",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "image_aspect_ratio": "pad",
    }
    (src / "config.json").write_text(json.dumps(cfg, indent=2))
    return src


class OriginalLlava(torch.nn.Module):
    """The original LLaVA-1.5 forward on original-layout tensors: ``input_ids`` may hold
    :data:`IMAGE_TOKEN_INDEX` once per image, replaced by that image's projected patch features."""

    def __init__(self, src: Path, clip: Path):
        super().__init__()
        from safetensors.torch import load_file

        sd = load_file(str(src / "model.safetensors"))
        cfg = json.loads((src / "config.json").read_text())
        self.layer = cfg["mm_vision_select_layer"]
        self.tower = transformers.CLIPVisionModel(transformers.CLIPVisionConfig.from_pretrained(clip))
        pre = "model.vision_tower.vision_tower.vision_model."
        tower_sd = {k[len(pre) :]: v for k, v in sd.items() if k.startswith(pre)}
        if not tower_sd:
            tower_sd = transformers.CLIPVisionModel.from_pretrained(clip).state_dict()
        self.tower.load_state_dict(tower_sd)
        self.proj = {k: sd[f"model.mm_projector.{k}"] for k in ("0.weight", "0.bias", "2.weight", "2.bias")}
        lcfg = transformers.LlamaConfig(
            **{k: cfg[k] for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers")},
            num_attention_heads=cfg["num_attention_heads"],
            num_key_value_heads=cfg["num_key_value_heads"],
            max_position_embeddings=cfg["max_position_embeddings"],
            rms_norm_eps=cfg["rms_norm_eps"],
            tie_word_embeddings=False,
        )
        self.llm = transformers.LlamaForCausalLM(lcfg)
        llm_sd = {
            k: v for k, v in sd.items() if not k.startswith(("model.mm_projector.", "model.vision_tower."))
        }
        self.llm.load_state_dict(llm_sd)
        self.eval()

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """CLIP hidden states of layer ``mm_vision_select_layer``, CLS dropped, through the projector."""
        hidden = self.tower(pixel_values, output_hidden_states=True).hidden_states[self.layer][:, 1:]
        x = torch.nn.functional.linear(hidden, self.proj["0.weight"], self.proj["0.bias"])
        x = torch.nn.functional.gelu(x)
        return torch.nn.functional.linear(x, self.proj["2.weight"], self.proj["2.bias"])

    @torch.no_grad()
    def forward(self, input_ids: list[int], pixel_values: torch.Tensor) -> torch.Tensor:
        feats = self.image_features(pixel_values)
        embed = self.llm.get_input_embeddings()
        parts, k = [], 0
        text: list[int] = []
        for t in input_ids:
            if t == IMAGE_TOKEN_INDEX:
                if text:
                    parts.append(embed(torch.tensor(text)))
                parts.append(feats[k])
                k, text = k + 1, []
            else:
                text.append(t)
        if text:
            parts.append(embed(torch.tensor(text)))
        return self.llm(inputs_embeds=torch.cat(parts)[None]).logits[0]
