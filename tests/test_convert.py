"""``text4seg convert``: original LLaVA -> llava-hf gives the original forward's logits; ms-swift 2.x LoRA
adapters merge with every tensor used (equal to a correctly keyed PEFT merge); bad inputs are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from support.hostile import MEM_TORCH, cli, one_line_error  # noqa: E402
from support.tiny_llava_original import (  # noqa: E402
    IMAGE_TOKEN_INDEX,
    OriginalLlava,
    make_clip,
    make_original_llava,
)

from text4seg.checkpoints import convert, swift2_lora  # noqa: E402


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    root = tmp_path_factory.mktemp("orig")
    clip = make_clip(root / "clip")
    src = make_original_llava(root / "src", clip)
    return src, clip


@pytest.fixture(scope="module")
def converted(original, tmp_path_factory):
    src, clip = original
    out = tmp_path_factory.mktemp("conv") / "hf"
    convert.convert_llava_original(src, out, clip, log=lambda s: None)
    return out


def test_every_original_key_has_a_llava_hf_name_and_a_foreign_key_has_none():
    assert convert.map_llava_original_key("model.layers.3.mlp.up_proj.weight") == (
        "model.language_model.layers.3.mlp.up_proj.weight"
    )
    assert (
        convert.map_llava_original_key("model.mm_projector.2.bias")
        == "model.multi_modal_projector.linear_2.bias"
    )
    assert convert.map_llava_original_key(
        "model.vision_tower.vision_tower.vision_model.post_layernorm.weight"
    ) == ("model.vision_tower.post_layernorm.weight")
    assert convert.map_llava_original_key("model.layers.0.self_attn.rotary_emb.inv_freq") == ""
    assert convert.map_llava_original_key("model.mm_projector.1.weight") is None
    assert convert.map_llava_original_key("model.seg_head.weight") is None


def test_converted_llava_gives_the_original_forward_logits(original, converted):
    src, clip = original
    ref = OriginalLlava(src, clip)
    model = transformers.LlavaForConditionalGeneration.from_pretrained(converted).eval()
    proc = transformers.AutoProcessor.from_pretrained(converted)
    tok = proc.tokenizer
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<image>")
    assert tok.pad_token == "<pad>" and tok.pad_token_id == model.config.text_config.pad_token_id
    assert model.config.text_config.vocab_size % 64 == 0
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8))
    pixels = proc.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    n_img = (28 // 14) ** 2
    pre = tok("A chat USER:").input_ids
    post = tok("\nPlease segment the dog. ASSISTANT:", add_special_tokens=False).input_ids
    original_ids = pre + [IMAGE_TOKEN_INDEX] + post
    hf_ids = pre + [model.config.image_token_id] * n_img + post
    want = ref(original_ids, pixels)
    with torch.no_grad():
        got = model(input_ids=torch.tensor([hf_ids]), pixel_values=pixels).logits[0]
    vocab = want.shape[-1]
    assert got.shape[0] == want.shape[0] == len(pre) + n_img + len(post)
    torch.testing.assert_close(got[:, :vocab], want, rtol=1e-4, atol=1e-5)
    # the processor expands one <image> into the tower's patch count (CLS not counted)
    enc = proc(text=["USER: <image>\nhi ASSISTANT:"], images=[image], return_tensors="pt")
    assert int((enc["input_ids"] == model.config.image_token_id).sum()) == n_img


def test_a_checkpoint_without_its_tower_takes_the_clip_folder_and_matches(tmp_path, original):
    _, clip = original
    src = make_original_llava(tmp_path / "src", clip, with_tower=False, seed=3)
    out = tmp_path / "hf"
    convert.convert_llava_original(src, out, clip, log=lambda s: None)
    model = transformers.LlavaForConditionalGeneration.from_pretrained(out).eval()
    want = transformers.CLIPVisionModel.from_pretrained(clip).state_dict()
    got = model.model.vision_tower.state_dict()
    for k, v in want.items():
        if k in got:
            torch.testing.assert_close(got[k], v)
    ref = OriginalLlava(src, clip)
    pixels = torch.randn(1, 3, 28, 28)
    ids = [1, 5, 6, IMAGE_TOKEN_INDEX, 7, 8]
    hf = [1, 5, 6] + [model.config.image_token_id] * 4 + [7, 8]
    with torch.no_grad():
        got_logits = model(input_ids=torch.tensor([hf]), pixel_values=pixels).logits[0]
    want_logits = ref(ids, pixels)
    torch.testing.assert_close(got_logits[:, : want_logits.shape[-1]], want_logits, rtol=1e-4, atol=1e-5)


def test_convert_cli_refuses_an_unmapped_source_tensor_in_one_line_and_writes_nothing(tmp_path, original):
    from safetensors.torch import load_file, save_file

    src, clip = original
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in src.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    sd = load_file(str(src / "model.safetensors"))
    sd["model.seg_head.weight"] = torch.zeros(2, 2)
    save_file(sd, str(bad / "model.safetensors"))
    out = tmp_path / "out"
    proc = cli(
        ["convert", "llava-original", bad, "--vision-tower", clip, "--out", out], tmp_path, mem=MEM_TORCH
    )
    one_line_error(proc, 2, "model.seg_head.weight", "no llava-hf name")
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_convert_cli_writes_a_loadable_folder_and_refuses_an_existing_out(tmp_path, original):
    src, clip = original
    out = tmp_path / "hf"
    proc = cli(
        ["convert", "llava-original", src, "--vision-tower", clip, "--out", out], tmp_path, mem=MEM_TORCH
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "processor_config.json",
    } <= names or {
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "preprocessor_config.json",
    } <= names, names
    assert json.loads((out / "config.json").read_text())["model_type"] == "llava"
    again = cli(
        ["convert", "llava-original", src, "--vision-tower", clip, "--out", out], tmp_path, mem=MEM_TORCH
    )
    one_line_error(again, 2, str(out), "already exists")


# ------------------------------------------------------------------------------------ swift2-lora merge
def _tiny_llava_hf(folder, seed=0):
    """A tiny llava-hf (transformers 5) model saved to ``folder``; returns the model."""
    torch.manual_seed(seed)
    cfg = transformers.LlavaConfig(
        text_config=transformers.LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=96
        ),
        vision_config=transformers.CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=28,
            patch_size=14,
        ),
        image_token_id=95,
    )
    model = transformers.LlavaForConditionalGeneration(cfg).eval()
    model.save_pretrained(folder)
    return model


def _v4_name(name: str) -> str:
    """A transformers 5 llava-hf module name as transformers 4.x (and so ms-swift 2.x) spelled it."""
    for new, old in (
        ("model.language_model.", "language_model.model."),
        ("model.vision_tower.", "vision_tower.vision_model."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
    ):
        if name.startswith(new):
            return old + name[len(new) :]
    return name


def _swift2_adapter(folder, model, r=4, alpha=8, seed=0, extra=()):
    """An ms-swift 2.x style adapter on every Linear but lm_head ('ALL'), 4.x module names, no adapter
    name in the keys; returns {transformers 5 module name: (A, B)}."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    loras, tensors = {}, {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and name != "lm_head":
            a = torch.randn(r, mod.in_features, generator=g) * 0.1
            b = torch.randn(mod.out_features, r, generator=g) * 0.1
            loras[name] = (a, b)
            tensors[f"base_model.model.{_v4_name(name)}.lora_A.weight"] = a
            tensors[f"base_model.model.{_v4_name(name)}.lora_B.weight"] = b
    for name in extra:
        tensors[f"base_model.model.{name}.lora_A.weight"] = torch.zeros(r, 32)
        tensors[f"base_model.model.{name}.lora_B.weight"] = torch.zeros(32, r)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    cfg = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": 0.05,
        "bias": "none",
        "target_modules": sorted({n.rsplit(".", 1)[-1] for n in loras}),  # 2.x: ALL -> last names
        "base_model_name_or_path": "llava-hf/llava-1.5-7b-hf",
        "task_type": None,
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": False,
    }
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    return loras


def _peft_merge(model, loras, r=4, alpha=8):
    """The reference: PEFT with correctly keyed (transformers 5) module names, merged and unloaded."""
    peft = pytest.importorskip("peft")
    cfg = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=sorted(loras), lora_dropout=0.0)
    pm = peft.get_peft_model(model, cfg)
    sd = {}
    for name, (a, b) in loras.items():
        sd[f"base_model.model.{name}.lora_A.weight"] = a
        sd[f"base_model.model.{name}.lora_B.weight"] = b
    res = peft.set_peft_model_state_dict(pm, sd)
    assert not [k for k in res.unexpected_keys if "lora" in k]
    return pm.merge_and_unload()


def test_swift2_adapter_merge_uses_every_tensor_and_equals_a_correctly_keyed_peft_merge(tmp_path):
    base = tmp_path / "base"
    model = _tiny_llava_hf(base)
    loras = _swift2_adapter(tmp_path / "res", model)
    assert any(n.startswith("model.multi_modal_projector.") for n in loras)
    assert any(n.startswith("model.vision_tower.") for n in loras)
    out = tmp_path / "merged"
    proc = cli(
        ["convert", "swift2-lora", tmp_path / "res", "--base", base, "--out", out], tmp_path, mem=MEM_TORCH
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"merged {len(loras)} LoRA modules" in proc.stdout
    got = transformers.LlavaForConditionalGeneration.from_pretrained(out).state_dict()
    want = _peft_merge(
        transformers.LlavaForConditionalGeneration.from_pretrained(base).eval(), loras
    ).state_dict()
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=k)
    w0 = model.state_dict()["model.multi_modal_projector.linear_1.weight"]
    assert not torch.allclose(got["model.multi_modal_projector.linear_1.weight"], w0)  # the projector moved


def test_chained_res_then_gres_adapters_merge_in_order(tmp_path):
    base = tmp_path / "base"
    model = _tiny_llava_hf(base)
    res = _swift2_adapter(tmp_path / "res", model, seed=1)
    gres = _swift2_adapter(tmp_path / "gres", model, seed=2, r=2, alpha=4)
    out = tmp_path / "merged"
    swift2_lora.merge_swift2_lora([tmp_path / "res", tmp_path / "gres"], base, out, log=lambda s: None)
    got = transformers.LlavaForConditionalGeneration.from_pretrained(out).state_dict()
    step1 = _peft_merge(transformers.LlavaForConditionalGeneration.from_pretrained(base).eval(), res)
    want = _peft_merge(step1, gres, r=2, alpha=4).state_dict()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-5, msg=k)


def test_swift2_adapter_with_a_module_the_base_lacks_fails_in_one_line_naming_it(tmp_path):
    base = tmp_path / "base"
    model = _tiny_llava_hf(base)
    _swift2_adapter(tmp_path / "res", model, extra=["language_model.model.seg_head"])
    out = tmp_path / "merged"
    proc = cli(
        ["convert", "swift2-lora", tmp_path / "res", "--base", base, "--out", out], tmp_path, mem=MEM_TORCH
    )
    one_line_error(proc, 2, "language_model.model.seg_head", "unused")
    assert not out.exists()


def test_swift2_adapter_refuses_dora_and_non_lora_tensors_in_one_line(tmp_path):
    base = tmp_path / "base"
    model = _tiny_llava_hf(base)
    _swift2_adapter(tmp_path / "a", model)
    cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    with pytest.raises(ValueError, match="use_dora"):
        swift2_lora.merge_swift2_lora([tmp_path / "a"], base, tmp_path / "o1", log=lambda s: None)
    from safetensors.torch import load_file, save_file

    _swift2_adapter(tmp_path / "b", model)
    sd = load_file(str(tmp_path / "b" / "adapter_model.safetensors"))
    sd["base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] = torch.ones(
        32
    )
    save_file(sd, str(tmp_path / "b" / "adapter_model.safetensors"))
    with pytest.raises(ValueError, match="lora_magnitude_vector"):
        swift2_lora.merge_swift2_lora([tmp_path / "b"], base, tmp_path / "o2", log=lambda s: None)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
