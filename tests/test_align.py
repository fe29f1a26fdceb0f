"""The region each supported processor shows the model covers the whole image the grid was computed on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from text4seg.checkpoints import align  # noqa: E402

SHAPES = [(640, 320), (300, 600), (500, 500)]  # wide, tall, square
PLUGIN = Path(__file__).resolve().parents[1] / "recipes" / "text4seg_plugin.py"


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "internvl"])
@pytest.mark.parametrize("size", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_released_processor_shows_the_whole_image(family, size):
    worst = align.check_whole_image(family, align.released_image_processor(family), *size)
    assert all(abs(v * 16 - 1) < 0.5 for v in worst.values()), worst


@pytest.mark.parametrize("size", SHAPES[:2], ids=lambda s: f"{s[0]}x{s[1]}")
def test_released_llava_processor_centre_crops_and_the_check_catches_it(size):
    ip = align.released_image_processor("llava1_5_hf")
    assert align.crops_image(ip)
    with pytest.raises(ValueError, match="does not see the whole image"):
        align.check_whole_image("llava1_5_hf", ip, *size)


@pytest.mark.parametrize("size", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_whole_image_clip_makes_llava_see_the_whole_image(size):
    ip = align.whole_image_clip(align.released_image_processor("llava1_5_hf"))
    assert not align.crops_image(ip) and dict(ip.size) == {"height": 336, "width": 336}
    align.check_whole_image("llava1_5_hf", ip, *size)


def test_tiny_llava_processor_shows_the_whole_image(tmp_path):
    from transformers import AutoProcessor

    from text4seg.demo.model import make_tiny_llava

    ip = AutoProcessor.from_pretrained(make_tiny_llava(tmp_path / "m", image_size=64)).image_processor
    assert not align.crops_image(ip)
    align.check_whole_image("llava1_5_hf", ip, 128, 48)


def test_ms_swift_plugin_template_uncrops_a_centre_cropping_llava_checkpoint(tmp_path, monkeypatch):
    """Through ms-swift itself: a checkpoint whose processor centre-crops (as released), loaded with the
    recipes' template ``text4seg_llava1_5_hf``, yields pixel values showing the whole image."""
    pytest.importorskip("swift")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from swift.model import get_model_processor
    from swift.template import get_template
    from swift.utils import import_external_file

    from text4seg.demo.model import make_tiny_llava

    model_dir = make_tiny_llava(tmp_path / "m", image_size=64)
    for name in ("preprocessor_config.json", "processor_config.json"):  # make it crop, like the release
        cfg = json.loads((model_dir / name).read_text())
        ip = cfg.get("image_processor", cfg)
        ip.update({"size": {"shortest_edge": 64}, "do_center_crop": True})
        (model_dir / name).write_text(json.dumps(cfg))
    import_external_file(str(PLUGIN))
    _, processor = get_model_processor(str(model_dir), model_type="llava1_5_hf", load_model=False)
    assert align.crops_image(processor.image_processor)
    template = get_template(processor, template_type="text4seg_llava1_5_hf")
    image = align.probe_image(128, 48)
    encoded = template.encode(
        {
            "messages": [{"role": "user", "content": "<image>x"}, {"role": "assistant", "content": "y"}],
            "images": [image],
        }
    )
    ip = processor.image_processor
    view = align._unnormalize(encoded["pixel_values"][0].float().numpy(), ip.image_mean, ip.image_std)
    bands = align.edge_bands(view)
    assert all(abs(v * 16 - 1) < 0.5 for v in bands.values()), bands
    shutil.rmtree(model_dir)


def test_whole_image_saved_fixes_a_stale_centre_cropping_config(tmp_path):
    released = {
        "size": {"shortest_edge": 336},
        "crop_size": {"height": 336, "width": 336},
        "do_center_crop": True,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(released))
    (tmp_path / "processor_config.json").write_text(
        json.dumps({"image_processor": dict(released), "patch_size": 14})
    )
    assert align.whole_image_saved(tmp_path) == ["preprocessor_config.json", "processor_config.json"]
    pre = json.loads((tmp_path / "preprocessor_config.json").read_text())
    proc = json.loads((tmp_path / "processor_config.json").read_text())
    for cfg in (pre, proc["image_processor"]):
        assert cfg["do_center_crop"] is False and cfg["size"] == {"height": 336, "width": 336}
    assert proc["patch_size"] == 14
    assert align.whole_image_saved(tmp_path) == []  # idempotent
