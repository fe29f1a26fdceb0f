"""text4seg.training.lengths: rows over a recipe's max_length are found by file and line, before training;
and the recipe headers' image-token arithmetic is what the released processors do."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from text4seg.training import lengths
from text4seg.training import recipes as train
from text4seg.training.recipe_file import load_recipe

REPO = Path(__file__).resolve().parents[1]
COCO_SIZES = [(640, 480), (480, 640), (500, 375), (375, 500)]


class CharTemplate:
    """A stand-in template: one token per character of the messages (the rows' lengths are known)."""

    def encode(self, row):
        n = sum(len(m["content"]) for m in row["messages"])
        return {"input_ids": [0] * n, "labels": [-100] * n}


def _data(tmp_path: Path, sizes: list[int], name: str = "d.jsonl") -> Path:
    rows = [{"messages": [{"role": "user", "content": "x" * n}], "images": []} for n in sizes]
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_over_max_length_are_reported_by_file_and_line_longest_first(tmp_path):
    a, b = _data(tmp_path, [10, 50, 20], "a.jsonl"), _data(tmp_path, [70, 5], "b.jsonl")
    recipe = {"dataset": [str(a), str(b)], "max_length": 40}
    report = lengths.check_lengths(recipe, template=CharTemplate(), sample=None)
    assert [(Path(r.file).name, r.line, r.length) for r in report.over] == [
        ("b.jsonl", 1, 70),
        ("a.jsonl", 2, 50),
    ]
    assert report.rows_checked == report.rows_total == 5 and report.longest.length == 70
    with pytest.raises(lengths.RowsTooLongError) as err:
        lengths.enforce(report)
    msg = str(err.value)
    assert msg.startswith(f"{b}:1: encodes to 70 tokens > max_length 40")
    assert "2 row(s) over" in msg and "ms-swift would drop" in msg and "--set allow_dropped_rows=true" in msg
    assert f"{a}:2: 50 tokens > max_length 40" in msg
    assert lengths.enforce(report, allow_dropped_rows=True) is report


def test_a_recipe_whose_rows_fit_passes_and_says_so(tmp_path):
    data = _data(tmp_path, [10, 12])
    report = lengths.enforce(
        lengths.check_lengths(
            {"dataset": [str(data)], "max_length": 12}, template=CharTemplate(), sample=None
        )
    )
    assert report.over == [] and report.summary().endswith("max_length 12: none over")
    assert "(every row)" in report.summary()


def test_truncating_recipes_are_reported_as_cut_not_dropped(tmp_path):
    data = _data(tmp_path, [30])
    recipe = {"dataset": [str(data)], "max_length": 8, "truncation_strategy": "left"}
    with pytest.raises(lengths.RowsTooLongError, match=r"ms-swift would cut \(left\)"):
        lengths.enforce(lengths.check_lengths(recipe, template=CharTemplate()))


def test_the_sample_is_deterministic_spans_the_file_and_keeps_the_longest_texts():
    rows = [(line, 10) for line in range(1, 101)]
    rows[41] = (42, 999)  # the longest text, not on the evenly spaced grid
    picked = lengths.sample_lines(rows, 10)
    assert picked == lengths.sample_lines(rows, 10)
    assert picked[0] == 1 and picked[-1] == 100 and 42 in picked and len(picked) == 11
    assert lengths.sample_lines(rows, None) == list(range(1, 101))
    assert lengths.sample_lines(rows[:5], 10) == [1, 2, 3, 4, 5]


def test_a_sampled_report_says_other_rows_may_be_over(tmp_path):
    data = _data(tmp_path, [5] * 30 + [100])
    report = lengths.check_lengths(
        {"dataset": [str(data)], "max_length": 50}, template=CharTemplate(), sample=10
    )
    assert report.rows_total == 31 and report.rows_checked < 31 and report.over[0].line == 31
    with pytest.raises(lengths.RowsTooLongError, match="in a sample of the rows"):
        lengths.enforce(report)


def test_the_override_accepting_dropped_rows_never_reaches_ms_swift():
    recipe = train.apply_overrides({"model": "m"}, train.parse_overrides(["allow_dropped_rows=true"]))
    stripped, allow = lengths.pop_allow(recipe)
    assert allow is True and lengths.ALLOW_KEY not in stripped
    argv, _ = train.swift_command(stripped)
    assert not any(lengths.ALLOW_KEY in a for a in argv)
    assert lengths.pop_allow({"allow_dropped_rows": "no"})[1] is False
    assert lengths.pop_allow({"model": "m"}) == ({"model": "m"}, False)


def _recipes(prefix: str) -> list[Path]:
    return sorted((REPO / "recipes").glob(f"{prefix}*.yaml"))


@pytest.mark.parametrize("path", _recipes("internvl3"), ids=lambda p: p.stem)
def test_internvl_header_arithmetic_is_what_the_released_processor_does(path):
    pytest.importorskip("transformers")
    from PIL import Image

    from text4seg.checkpoints import align

    ip = align.released_image_processor("internvl")
    tokens = set()
    for size in COCO_SIZES:
        out = ip(images=[Image.new("RGB", size)], crop_to_patches=True, return_tensors="np")
        tokens.add(int(out["num_patches"][0]) * 256)
    assert tokens == {3328}
    text, recipe = path.read_text(), load_recipe(path)
    assert "13 x 256 = 3,328 image tokens" in text
    assert recipe["template"] == "internvl_hf"  # the released tiling, unchanged
    left = recipe["max_length"] - 3328
    assert f"max_length is {recipe['max_length']:,}: {left:,} tokens left" in text and left >= 768


@pytest.mark.parametrize("path", _recipes("qwen"), ids=lambda p: p.stem)
def test_qwen_recipes_record_the_pixel_budget_they_train_with(path):
    vision_process = pytest.importorskip("qwen_vl_utils.vision_process")
    recipe = load_recipe(path)
    assert recipe["max_pixels"] == recipe["ENV"]["MAX_PIXELS"]  # args.json carries it to inference
    factor = 32 if "qwen3" in path.stem else 28
    if path.stem.endswith("_video"):  # 256 visual tokens per frame, as the header says
        assert (
            recipe["max_pixels"] == 256 * factor * factor
            and "256 visual tokens per frame" in path.read_text()
        )
        return
    assert recipe["max_pixels"] == 576 * factor * factor
    h, w = vision_process.smart_resize(480, 640, factor=factor, max_pixels=recipe["max_pixels"])
    stated = re.search(r"640x480: (\d+) tokens", path.read_text())
    assert stated and int(stated.group(1)) == (h // factor) * (w // factor)


@pytest.mark.slow
def test_internvl_rows_at_the_old_max_length_are_all_reported(tmp_path, monkeypatch):
    """The defect: 640x480 images are 13 tiles = 3,328 image tokens; at max_length 2048 ms-swift dropped
    every row silently. Measured with ms-swift's internvl_hf template on a tiny InternVL3-hf."""
    pytest.importorskip("swift")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from support.tiny_families import make_tiny_internvl3

    from data_builders import build_jsonl

    data = tmp_path / "d.jsonl"
    options = {"image_size": "640x480", "semantic_rate": 0, "turns": 1}
    build_jsonl(
        "synthetic", data, root=tmp_path / "img", split="train", limit=2, options=options, stats=False
    )
    path = REPO / "recipes" / "internvl3_8b_res.yaml"
    model = make_tiny_internvl3(tmp_path / "m")
    recipe = train.apply_overrides(load_recipe(path), {"model": str(model), "dataset": [str(data)]})
    template = lengths.build_template(recipe)
    fits = lengths.check_lengths(recipe, template=template)
    assert fits.over == [] and 3328 < fits.longest.length <= recipe["max_length"]
    old = lengths.check_lengths({**recipe, "max_length": 2048}, template=template)
    assert [r.line for r in old.over] == [1, 2]
    with pytest.raises(
        lengths.RowsTooLongError, match=rf"{data}:\d: encodes to 3\d{{3}} tokens > max_length 2048"
    ):
        lengths.enforce(old)
    # the call `text4seg train` makes: it stops, unless the user accepts the loss (a key ms-swift never sees)
    with pytest.raises(lengths.RowsTooLongError):
        lengths.guard({**recipe, "max_length": 2048}, template=template)
    stripped, report = lengths.guard(
        {**recipe, "max_length": 2048, lengths.ALLOW_KEY: True}, template=template
    )
    assert lengths.ALLOW_KEY not in stripped and len(report.over) == 2
