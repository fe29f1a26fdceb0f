"""text4seg.checkpoints.settings.prepare_engine: what a checkpoint's args.json needs before loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from text4seg.checkpoints import settings
from text4seg.checkpoints.align import PROJECT_TEMPLATES


def _ckpt(folder: Path, **args) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "args.json").write_text(json.dumps(args))
    return folder


def test_a_qwen_checkpoint_brings_its_pixel_budget_to_inference(tmp_path):
    model = _ckpt(tmp_path / "merged", model_type="qwen2_5_vl", template="qwen2_5_vl", max_pixels=451584)
    environ: dict[str, str] = {}
    done = settings.prepare_engine(model, environ=environ)
    assert environ == {"MAX_PIXELS": "451584"} and done["env"] == environ
    assert done["template"] == "qwen2_5_vl" and done["registered"] == list(PROJECT_TEMPLATES)
    assert settings.prepare_engine(model, environ=environ)["env"] == environ  # same value: fine


def test_a_different_budget_in_the_environment_is_an_error_naming_both(tmp_path):
    model = _ckpt(tmp_path / "m", model_type="qwen3_vl", template="qwen3_vl", max_pixels=589824)
    with pytest.raises(ValueError, match=r"trained with MAX_PIXELS=589824 .* sets MAX_PIXELS=100"):
        settings.prepare_engine(model, environ={"MAX_PIXELS": "100"})


def test_checkpoints_without_a_budget_or_args_json_need_nothing(tmp_path):
    environ: dict[str, str] = {}
    released = tmp_path / "released"
    released.mkdir()
    assert settings.prepare_engine(released, environ=environ) == {
        "template": None,
        "registered": list(PROJECT_TEMPLATES),
        "env": {},
    }
    internvl = _ckpt(tmp_path / "internvl", model_type="internvl", template="internvl_hf", max_pixels=None)
    assert settings.prepare_engine(internvl, environ=environ)["env"] == {} and environ == {}


def test_an_adapters_args_json_wins_as_in_ms_swift(tmp_path):
    base = _ckpt(tmp_path / "base", model_type="qwen2_5_vl", template="qwen2_5_vl", max_pixels=1)
    adapter = _ckpt(tmp_path / "ckpt", model_type="qwen2_5_vl", template="qwen2_5_vl", max_pixels=451584)
    assert settings.checkpoint_args(base, [adapter])["max_pixels"] == 451584
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "args.json").write_text("[1]")
    with pytest.raises(ValueError, match="args.json:1: a JSON list, expected an object"):
        settings.checkpoint_args(tmp_path / "bad")


def test_a_checkpoint_naming_the_project_template_gets_it_registered(tmp_path):
    pytest.importorskip("swift")
    from swift.template import TEMPLATE_MAPPING

    model = _ckpt(tmp_path / "m", model_type="llava1_5_hf", template="text4seg_llava1_5_hf")
    done = settings.prepare_engine(model, environ={})
    assert done["registered"] == list(PROJECT_TEMPLATES)
    assert all(t in TEMPLATE_MAPPING for t in PROJECT_TEMPLATES)
    unknown = _ckpt(tmp_path / "u", model_type="llava1_5_hf", template="text4seg_nope")
    with pytest.raises(ValueError, match="names template 'text4seg_nope'"):
        settings.prepare_engine(unknown, environ={})
