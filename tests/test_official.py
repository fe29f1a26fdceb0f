"""The released models' interface: official prompt token ids equal the original chunked tokenisation,
official pixels equal PIL-then-processor bit for bit, through ms-swift's registered templates."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from support.tiny_llava_original import make_clip, make_original_llava, sp_processor  # noqa: E402

from text4seg.checkpoints import align, convert, official  # noqa: E402

QUESTION = "Please segment only the black dog in the image."


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("off")
    clip = make_clip(root / "clip")
    src = make_original_llava(root / "src", clip)
    out = root / "hf"
    convert.convert_llava_original(src, out, clip, log=lambda s: None)
    return src, out


def _reference_ids(sp, prompt: str, image_id: int) -> list[int]:
    """haotian-liu/LLaVA tokenizer_image_token on the slow (sentencepiece) tokenizer, written from its
    definition: each chunk encoded with BOS, later chunks' BOS dropped, the image id between."""
    chunks = [[sp.bos_id()] + sp.encode(c) for c in prompt.split("<image>")]
    ids = list(chunks[0])
    for c in chunks[1:]:
        ids += [image_id] + c[1:]
    return ids


def test_official_questions_are_data_with_their_source():
    data = official.load("questions")
    assert "mc-lan/Text4Seg" in data["source"]
    assert len(official.questions("referring")) == 6 and len(official.questions("condition")) == 7
    q = official.referring_question("  The Black, Dog ", random.Random(0), strip_commas=True)
    assert "the black dog" in q and q in {
        t.replace("[class_name]", "the black dog") for t in official.questions("referring")
    }
    assert "cat|dog|TV" in official.condition_question(["cat", "dog", "TV"], random.Random(0))
    with pytest.raises(ValueError, match="'panoptic'"):
        official.questions("panoptic")


def test_vicuna_prompt_is_the_edited_conv_vicuna_v1():
    p = official.vicuna_v1_prompt("Q?")
    assert p == (
        "A chat between a curious user and an artificial intelligence assistant. You are able to "
        "understand the visual content that the user provides, The assistant gives helpful, detailed, and "
        "polite answers to the user's questions. USER: <image>\nQ? ASSISTANT:"
    )
    assert official.llava_hf_prompt("Q?") == "USER: <image>\nQ?\nASSISTANT:"


def test_chunked_ids_with_the_converted_tokenizer_equal_the_original_slow_tokenisation(converted):
    src, out = converted
    tok = transformers.AutoTokenizer.from_pretrained(out)
    image_id = tok.convert_tokens_to_ids("<image>")
    prompt = official.vicuna_v1_prompt(QUESTION)
    assert official.chunked_ids(prompt, tok, image_id) == _reference_ids(sp_processor(src), prompt, image_id)


def _template(model_dir, name, monkeypatch):
    pytest.importorskip("swift")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from swift.model import get_model_processor
    from swift.template import get_template

    align.register_official_templates()
    _, processor = get_model_processor(str(model_dir), model_type="llava1_5_hf", load_model=False)
    return processor, get_template(processor, template_type=name)


def _image(w=45, h=20):
    return Image.fromarray(np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_vicuna_official_template_ids_equal_the_original_chunked_tokenisation(converted, monkeypatch):
    src, out = converted
    processor, template = _template(out, align.LLAVA_VICUNA_OFFICIAL_TEMPLATE, monkeypatch)
    template.set_mode("transformers")
    enc = template.encode(
        {"messages": [{"role": "user", "content": "<image>" + QUESTION}], "images": [_image()]}
    )
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    want = _reference_ids(sp_processor(src), official.vicuna_v1_prompt(QUESTION), image_id)
    k = want.index(image_id)
    n = (28 // 14) ** 2
    want = want[:k] + [image_id] * n + want[k + 1 :]
    assert enc["input_ids"] == want


@pytest.mark.parametrize(
    ("name", "resample"),
    [
        (align.LLAVA_HF_OFFICIAL_TEMPLATE, Image.BICUBIC),
        (align.LLAVA_VICUNA_OFFICIAL_TEMPLATE, Image.BILINEAR),
    ],
)
def test_official_template_pixels_equal_pil_stretch_then_processor_bit_for_bit(
    converted, monkeypatch, name, resample
):
    _, out = converted
    processor, template = _template(out, name, monkeypatch)
    image = _image()
    enc = template.encode(
        {"messages": [{"role": "user", "content": "<image>" + QUESTION}], "images": [image]}
    )
    ip = transformers.CLIPImageProcessor.from_pretrained(out)
    want = ip(images=[image.resize((28, 28), resample)], return_tensors="pt")["pixel_values"]
    assert torch.equal(enc["pixel_values"].float(), want.float())
    assert torch.equal(
        official.official_pixels(image, ip, "llava1_5_hf" if resample == Image.BICUBIC else "llava_original"),
        want,
    )
    # and the stock processor (short side, centre crop) would have shown a different image
    assert not torch.equal(ip(images=[image], return_tensors="pt")["pixel_values"], want)


def test_llava_hf_official_template_prompt_is_the_released_format(converted, monkeypatch):
    _, out = converted
    processor, template = _template(out, align.LLAVA_HF_OFFICIAL_TEMPLATE, monkeypatch)
    template.set_mode("transformers")
    enc = template.encode(
        {"messages": [{"role": "user", "content": "<image>" + QUESTION}], "images": [_image()]}
    )
    text = processor.tokenizer.decode(enc["input_ids"])
    assert text.replace("<image>" * 4, "<image>").endswith(official.llava_hf_prompt(QUESTION))
