"""text4seg.training.recipe_file and .recipes, and the ``text4seg train`` / ``text4seg export`` commands
(no training here)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from text4seg.cli import main
from text4seg.training import datacheck
from text4seg.training import recipes as train
from text4seg.training.recipe_file import load_recipe

ANSWER = "Sure.\n<seg>others *16\n" + " others *16\n" * 15 + "</seg>"


def _row(image: str | None, user: str = "<image>Segment the red circle.", answer: str = ANSWER) -> dict:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
        "images": [image] if image else [],
        "text4seg": {"id": "x"},
    }


@pytest.fixture()
def image(tmp_path: Path) -> str:
    path = tmp_path / "img.png"
    Image.new("RGB", (8, 8)).save(path)
    return str(path)


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _recipe(tmp_path: Path, data: Path, **extra) -> Path:
    text = "# test recipe\nENV:\n  NPROC_PER_NODE: 8\nmodel: org/m\nmodel_type: qwen2_5_vl\n"
    text += f"dataset:\n  - {data}\n"
    text += "per_device_train_batch_size: 4\ngradient_accumulation_steps: 4\n"
    text += "".join(f"{k}: {v}\n" for k, v in extra.items())
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_overrides_are_yaml_typed_and_caps_keys_go_to_env():
    o = train.parse_overrides(
        ["lora_rank=32", "dataset=[a.jsonl, b.jsonl]", "model=/x/y", "MAX_PIXELS=100", "gpus=4"]
    )
    assert o == {
        "lora_rank": 32,
        "dataset": ["a.jsonl", "b.jsonl"],
        "model": "/x/y",
        "ENV.MAX_PIXELS": 100,
        "ENV.NPROC_PER_NODE": 4,
    }
    with pytest.raises(ValueError, match="'lora_rank'"):
        train.parse_overrides(["lora_rank"])


def test_changing_gpus_keeps_the_global_batch_unless_accumulation_is_set():
    recipe = {
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 4,
        "ENV": {"NPROC_PER_NODE": 8},
    }
    assert train.global_batch(recipe) == 128
    four = train.apply_overrides(recipe, train.parse_overrides(["gpus=4"]))
    assert four["gradient_accumulation_steps"] == 8 and train.global_batch(four) == 128
    two_nodes = train.apply_overrides(recipe, train.parse_overrides(["nnodes=2"]))
    assert two_nodes["gradient_accumulation_steps"] == 2 and train.global_batch(two_nodes) == 128
    explicit = train.apply_overrides(
        recipe, train.parse_overrides(["gpus=4", "gradient_accumulation_steps=1"])
    )
    assert explicit["gradient_accumulation_steps"] == 1
    assert recipe["gradient_accumulation_steps"] == 4  # the input is not mutated
    assert "ENV" not in train.apply_overrides({"ENV": {"X": 1}}, {"ENV.X": None})


def test_swift_command_spreads_lists_lowercases_bools_and_respects_the_environment():
    recipe = {
        "ENV": {"NPROC_PER_NODE": 8, "MAX_PIXELS": 3136},
        "dataset": ["a.jsonl", "b.jsonl"],
        "bf16": True,
    }
    argv, env = train.swift_command(recipe, swift="swift", environ={"MAX_PIXELS": "1"})
    assert argv == ["swift", "sft", "--dataset", "a.jsonl", "b.jsonl", "--bf16", "true"]
    assert env == {"NPROC_PER_NODE": "8"}  # MAX_PIXELS already set: ms-swift's rule, the environment wins
    assert (
        train.format_command(argv, env) == "NPROC_PER_NODE=8 swift sft --dataset a.jsonl b.jsonl --bf16 true"
    )


def test_a_good_data_file_validates_and_reports_its_row_count(tmp_path, image):
    data = _write(tmp_path / "d.jsonl", [_row(image), _row(image)])
    assert datacheck.validate_jsonl(data) == 2
    assert datacheck.validate_data({"dataset": [f"{data}#1"], "val_dataset": "hub/id"}) == {str(data): 2}


@pytest.mark.parametrize(
    ("row_kwargs", "message"),
    [
        ({"image": "/nonexistent/x.png"}, "image '/nonexistent/x.png' does not exist"),
        ({"user": "<image><image>two tags"}, "2 <image> tag(s) in the messages but 1 image(s)"),
        ({"user": "no tag"}, "0 <image> tag(s) in the messages but 1 image(s)"),
        ({"answer": "  "}, "empty assistant answer"),
    ],
)
def test_a_bad_row_is_reported_with_file_and_line(tmp_path, image, row_kwargs, message):
    kwargs = {"image": image, **row_kwargs}
    img = kwargs.pop("image")
    data = _write(tmp_path / "d.jsonl", [_row(image), _row(img, **kwargs)])
    with pytest.raises(datacheck.DataFileError) as err:
        datacheck.validate_jsonl(data)
    assert str(err.value).startswith(f"{data}:2: ")
    assert message in str(err.value)


def test_broken_json_and_missing_file_are_reported(tmp_path, image):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(_row(image)) + "\n{oops\n")
    with pytest.raises(datacheck.DataFileError, match=r"d\.jsonl:2: not valid JSON"):
        datacheck.validate_jsonl(data)
    with pytest.raises(datacheck.DataFileError, match="does not exist"):
        datacheck.validate_jsonl(tmp_path / "missing.jsonl")


def _fake_swift(tmp_path: Path) -> Path:
    """A stand-in ``swift`` that records that it ran."""
    script = tmp_path / "swift"
    script.write_text(
        f"#!{sys.executable}\nimport pathlib, sys\n"
        "pathlib.Path(sys.argv[0] + '.ran').write_text(' '.join(sys.argv[1:]))\n"
    )
    script.chmod(0o755)
    return script


def test_train_command_stops_on_bad_data_before_swift_starts(tmp_path, image, capsys):
    data = _write(tmp_path / "d.jsonl", [_row(image), _row(image), _row(image, answer="")])
    swift = _fake_swift(tmp_path)
    code = main(["train", str(_recipe(tmp_path, data)), "--no-check-args", "--swift", str(swift)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{data}:3: messages[1] is an empty assistant answer" in err
    assert not Path(str(swift) + ".ran").exists()


def test_train_command_prints_then_runs_the_swift_command_with_overrides(
    tmp_path, image, capsys, monkeypatch
):
    monkeypatch.delenv("NPROC_PER_NODE", raising=False)
    data = _write(tmp_path / "d.jsonl", [_row(image)])
    swift = _fake_swift(tmp_path)
    recipe = _recipe(tmp_path, data)
    code = main(
        [
            "train",
            str(recipe),
            "--no-check-args",
            "--no-check-lengths",
            "--swift",
            str(swift),
            "--set",
            "model=org/other",
            "--set",
            "gpus=2",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if str(swift) in ln][0]
    assert line.startswith("NPROC_PER_NODE=2 ")
    assert "--model org/other" in line and "--gradient_accumulation_steps 16" in line
    ran = Path(str(swift) + ".ran").read_text()
    assert ran == line.split(str(swift) + " ", 1)[1]  # the printed command is the command that ran


def test_train_command_rejects_a_key_ms_swift_does_not_know(tmp_path, image, capsys):
    data = _write(tmp_path / "d.jsonl", [_row(image)])
    code = main(["train", str(_recipe(tmp_path, data, lora_rnak=8)), "--dry-run"])
    assert code == 2
    assert "does not accept ['lora_rnak']" in capsys.readouterr().err


def test_export_command_wraps_swift_export_merge_lora(tmp_path, capsys):
    ckpt = tmp_path / "checkpoint-10"
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text("{}")
    args = ["export", str(ckpt), "--out", str(tmp_path / "merged"), "--dry-run", "--swift", "swift"]
    assert main(args) == 2  # no args.json: the base model is unknown
    assert "args.json: missing" in capsys.readouterr().err
    (ckpt / "args.json").write_text('{"model": "org/base"}')  # what swift sft writes beside a checkpoint
    assert main(args) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == f"swift export --adapters {ckpt} --merge_lora true --output_dir {tmp_path / 'merged'}"
    assert main(["export", str(tmp_path), "--out", "m", "--dry-run"]) == 2  # not a LoRA checkpoint


def test_import_text4seg_train_does_not_import_heavy_modules():
    code = (
        "import sys, text4seg.training.recipe_file, text4seg.training.recipes, text4seg.checkpoints.align, "
        "text4seg.training.lengths, text4seg.checkpoints.settings; "
        "print(sorted(m for m in ('torch', 'transformers', 'swift') if m in sys.modules))"
    )
    out = os.popen(f"{sys.executable} -c {json.dumps(code)}").read().strip()
    assert out == "[]"


def test_recipe_plugin_paths_resolve_from_any_working_directory(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parents[1]
    recipe_path = repo / "recipes" / "llava1_5_7b_res.yaml"
    monkeypatch.chdir(tmp_path)
    recipe = train.resolve_plugins(load_recipe(recipe_path), recipe_path)
    assert recipe["external_plugins"] == str(repo / "recipes" / "text4seg_plugin.py")
    assert train.resolve_plugins({"model": "x"}, recipe_path) == {"model": "x"}


def test_train_stops_before_swift_when_rows_would_be_dropped_unless_the_user_accepts(tmp_path, capsys):
    """`text4seg train` encodes the rows with the recipe's own template (a tiny LLaVA here) and stops on rows
    over max_length (ms-swift would drop them silently); allow_dropped_rows=true accepts and never reaches
    ms-swift's arguments."""
    pytest.importorskip("swift")
    from text4seg.demo.model import make_tiny_llava

    model = make_tiny_llava(tmp_path / "llava")
    img = tmp_path / "img.png"
    Image.new("RGB", (64, 48)).save(img)
    data = _write(tmp_path / "d.jsonl", [_row(str(img)), _row(str(img), answer=ANSWER * 20)])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {model}\nmodel_type: llava1_5_hf\ntemplate: llava1_5_hf\ndataset:\n  - {data}\n"
        "max_length: 200\nper_device_train_batch_size: 1\ngradient_accumulation_steps: 1\n"
    )
    assert main(["train", str(recipe), "--dry-run"]) == 2
    err = capsys.readouterr().err  # (ms-swift logs while loading the processor, then our report)
    line = [ln for ln in err.splitlines() if ln.startswith("text4seg train: error: ")]
    assert len(line) == 1 and f"{data}:2: encodes to" in line[0] and "allow_dropped_rows" in line[0]
    assert err.strip().splitlines()[-1].startswith(f"{data}:2: ")  # then each row over, by file:line
    assert main(["train", str(recipe), "--dry-run", "--set", "allow_dropped_rows=true"]) == 0
    out = capsys.readouterr().out
    assert "1 over" in out or "over max_length" in out
    command = [ln for ln in out.splitlines() if " sft " in ln or ln.rstrip().endswith("sft")]
    assert command and "allow_dropped_rows" not in command[-1]
