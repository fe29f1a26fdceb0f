"""``text4seg.json``: a checkpoint knows how it was trained (scheme, grid, questions, answers, label bias).

Written by ``text4seg train`` (output_dir and every checkpoint), carried by ``export``, the defaults of
``predict``; a flag that disagrees is a one-line error unless ``--force-options``.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from support.hostile import cli, one_line_error, row, write_jsonl

from text4seg.checkpoints.trained import (
    TRAINED_NAME,
    Collector,
    TrainedWith,
    read_trained,
    resolve,
    write_trained,
)


def built_row(rid: str, image: str, label: str, question: str, scheme="compact", grid=(32, 32)) -> dict:
    """A built row asking ``question`` about ``label`` with the given scheme and grid."""
    r = row(rid, image, grid=grid)
    r["messages"] = [
        {"role": "user", "content": f"<image>{question}"},
        {"role": "assistant", "content": "Here is the mask.\n<seg>x</seg>"},
    ]
    r["text4seg"].update(labels=[label], asked=[label], scheme=scheme, task="res")
    r["text4seg"]["source"] = {"dataset": "shapes"}
    return r


def png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (48, 32)).save(path)
    return path


def ckpt(folder: Path, **kw) -> Path:
    """A checkpoint folder holding only a text4seg.json (nothing loads it: the errors come first)."""
    folder.mkdir(parents=True, exist_ok=True)
    fields = {"scheme": "compact", "grid": (32, 32), "questions": ["Segment {target}."], **kw}
    write_trained(folder, TrainedWith(**fields))
    return folder


def test_the_file_round_trips_and_an_adapter_wins_over_its_model(tmp_path):
    model = ckpt(tmp_path / "model", label_bias=1.5)
    adapter = ckpt(tmp_path / "adapter", scheme="full", grid=(16, 16))
    got = read_trained(model)
    assert (got.scheme, got.grid, got.questions, got.label_bias) == (
        "compact",
        (32, 32),
        ["Segment {target}."],
        1.5,
    )
    assert got.text4seg_version and got.path == str(model / TRAINED_NAME)
    assert read_trained(model, [adapter]).scheme == "full"
    assert read_trained(model / TRAINED_NAME).grid == (32, 32)  # the file itself
    assert read_trained(tmp_path) is None  # a released model: no defaults
    on_disk = json.loads((model / TRAINED_NAME).read_text())
    assert on_disk["grid"] == [32, 32] and "path" not in on_disk and on_disk["format"] == 1


def test_resolve_takes_the_trained_value_and_refuses_a_disagreeing_flag_unless_forced():
    assert resolve("--scheme", None, "rrle") == "rrle"
    assert resolve("--grid", (16, 16), [16, 16]) == (16, 16)
    assert resolve("--scheme", "compact", None) == "compact"
    assert resolve("--scheme", "compact", "rrle", force=True) == "compact"
    with pytest.raises(ValueError) as exc:
        resolve("--scheme", "compact", "rrle", where="CKPT/text4seg.json")
    assert str(exc.value) == (
        "--scheme compact disagrees with CKPT/text4seg.json (rrle); pass --force-options to use it anyway"
    )


@pytest.mark.parametrize(
    "content, field",
    [
        ('{"scheme": "nope", "grid": [16, 16]}', "scheme"),
        ('{"scheme": "rrle", "grid": [16]}', "grid"),
        ('{"scheme": "rrle", "grid": [16, 16], "questions": ["no target"]}', "{target}"),
        ('{"scheme": "rrle", "grid": [16, 16], "label_bias": "1"}', "label_bias"),
        ('{"scheme": "rrle", "grid": [16, 16], "label_bias": NaN}', "NaN"),
        ("[1, 2]", "object"),
    ],
)
def test_a_bad_trained_file_is_one_line_naming_it_before_the_model_loads(tmp_path, content, field):
    model = tmp_path / "model"
    model.mkdir()
    (model / TRAINED_NAME).write_text(content)
    png(tmp_path / "a.png")
    proc = cli(["predict", "--model", str(model), "--image", "a.png", "--query", "q", "--out", "o"], tmp_path)
    one_line_error(proc, 2, TRAINED_NAME, field)
    assert not (tmp_path / "o").exists()


def test_a_fifo_as_trained_file_is_refused_without_blocking(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    os.mkfifo(model / TRAINED_NAME)
    png(tmp_path / "a.png")
    proc = cli(
        ["predict", "--model", str(model), "--image", "a.png", "--query", "q", "--out", "o"],
        tmp_path,
        timeout=60,
    )
    one_line_error(proc, 2, TRAINED_NAME, "regular file")


def test_predict_refuses_a_grid_or_scheme_the_checkpoint_was_not_trained_with(tmp_path):
    model = ckpt(tmp_path / "model")
    png(tmp_path / "a.png")
    base = ["predict", "--model", str(model), "--image", "a.png", "--query", "q", "--out", "o"]
    err = one_line_error(cli([*base, "--scheme", "rrle"], tmp_path), 2, "--scheme rrle", TRAINED_NAME)
    assert "(compact)" in err and "--force-options" in err
    err = one_line_error(cli([*base, "--grid", "16"], tmp_path), 2, "--grid 16x16", "(32x32)")


def test_predict_on_a_jsonl_trained_otherwise_is_one_line_naming_the_row(tmp_path):
    model = ckpt(tmp_path / "model")
    img = png(tmp_path / "a.png")
    write_jsonl(tmp_path / "t.jsonl", [built_row("r0", str(img), "dog", "Segment dog.", scheme="rrle")])
    proc = cli(["predict", "--model", str(model), "--jsonl", "t.jsonl", "--out", "o"], tmp_path)
    one_line_error(proc, 2, "t.jsonl", "'r0'", "text4seg.scheme rrle", "(compact)")


def test_defaults_come_from_the_checkpoint(tmp_path):
    from text4seg.inference.options import PredictOptions

    model = ckpt(tmp_path / "model", label_bias=1.5, label_bias_constrained=0.5)
    png(tmp_path / "a.png")
    opts = PredictOptions(model=str(model), image=str(tmp_path / "a.png"), labels=["dog"])
    opts.apply_trained()
    assert (opts.grid, opts.scheme, opts.query, opts.label_bias) == ((32, 32), "compact", "Segment dog.", 1.5)
    opts = PredictOptions(model=str(model), image=str(tmp_path / "a.png"), labels=["dog"], constrained=True)
    opts.apply_trained()
    assert opts.label_bias == 0.5
    plain = PredictOptions(model=str(tmp_path), image=str(tmp_path / "a.png"), query="q")
    plain.apply_trained()
    assert (plain.grid, plain.scheme, plain.label_bias) == ((16, 16), "rrle", None)
    forced = PredictOptions(
        model=str(model), image="a.png", query="q", scheme="rrle", grid=(16, 16), force_options=True
    )
    forced.apply_trained()
    assert (forced.grid, forced.scheme) == ((16, 16), "rrle")


def test_api_predict_reads_trained_with_and_refuses_what_it_cannot_apply(tmp_path):
    model = ckpt(tmp_path / "model", label_bias=1.5)
    png(tmp_path / "a.png")
    base = ["predict", "--api", "http://127.0.0.1:9", "--image", "a.png", "--query", "q", "--out", "o"]
    proc = cli([*base, "--trained-with", str(model)], tmp_path)  # no tokenizer to name the label tokens
    one_line_error(proc, 2, "label bias 1.5", TRAINED_NAME, "tokenizer", "--model")
    proc = cli([*base, "--trained-with", str(model), "--server", "swift"], tmp_path)
    one_line_error(proc, 2, "label bias 1.5", "swift deploy", "logit_bias")
    proc = cli([*base, "--trained-with", str(model), "--scheme", "rrle"], tmp_path)
    one_line_error(proc, 2, "--scheme rrle", "(compact)")
    proc = cli([*base, "--trained-with", str(tmp_path / "nowhere")], tmp_path)
    one_line_error(proc, 2, "--trained-with", "nowhere")


def _with_tokenizer(folder: Path) -> Path:
    """``folder`` plus the demo's kind of tokenizer: byte-level BPE and one token per answer cell."""
    from transformers import PreTrainedTokenizerFast

    from text4seg.demo.model import cell_tokens, train_bpe

    bpe = train_bpe(300, ["Segment red circle. others *4| red circle *2"] * 20, cell_tokens(["red circle"]))
    PreTrainedTokenizerFast(tokenizer_object=bpe).save_pretrained(folder)
    return folder


def test_api_predict_sends_the_checkpoints_label_bias_as_vllm_logit_bias(tmp_path):
    from support.hostile import ChatServer
    from transformers import AutoTokenizer

    from text4seg.inference.bias import label_token_ids

    pytest.importorskip("transformers")
    model = _with_tokenizer(ckpt(tmp_path / "model", label_bias=1.5))
    png(tmp_path / "a.png")
    answer = {"choices": [{"message": {"content": "<seg></seg>"}}], "usage": {"completion_tokens": 2}}
    args = ["--image", "a.png", "--label", "red circle", "--trained-with", str(model), "--out"]
    with ChatServer(lambda h: h.send(json.dumps(answer).encode())) as s:
        proc = cli(["predict", "--api", s.url, *args, "o"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        (body,) = [json.loads(b) for b in s.bodies]
    ids = label_token_ids(AutoTokenizer.from_pretrained(model), ["red circle"])
    assert len(ids) == 3 and body["logit_bias"] == {str(i): 1.5 for i in ids}  # L, "| L", "\n L"
    assert body["messages"][0]["content"][-1]["text"] == "Segment red circle."  # the checkpoint's question
    with ChatServer(lambda h: h.send(json.dumps(answer).encode()), owner="swift") as s:
        proc = cli(["predict", "--api", s.url, *args, "o2"], tmp_path)  # --server auto: asks the server
        one_line_error(proc, 2, "label bias 1.5", "swift deploy", "logit_bias")
        assert s.bodies == []  # refused before any request went out


def test_collector_records_templates_answers_scheme_and_grid(tmp_path):
    c = Collector()
    c.add(built_row("a", "x.png", "red circle", "Segment red circle."))
    c.add(built_row("b", "x.png", "blue circle", "Segment blue circle."))
    c.add(built_row("c", "x.png", "dog", "Where is the dog?"))
    c.add({"messages": []})  # a plain ms-swift row: counted apart
    got = c.result()
    assert got.questions == ["Segment {target}.", "Where is the {target}?"]
    assert got.answers == ["Here is the mask."]
    assert (got.scheme, got.grid, got.tasks, got.source) == ("compact", (32, 32), ["res"], "shapes")
    assert c.plain == 1 and not c.mixed()
    assert Collector().result() is None


FAKE_SWIFT = """#!{python}
import os, sys, pathlib
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--output_dir") + 1])
for folder in (out / "checkpoint-2", out / "v0-x" / "checkpoint-4"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "args.json").write_text('{{"model": "org/base"}}')
    (folder / "adapter_config.json").write_text("{{}}")
if "--merge_lora" in args:
    out.mkdir(parents=True, exist_ok=True)
(out / "argv.txt").write_text(" ".join(args))
"""


def fake_swift(tmp_path: Path) -> Path:
    path = tmp_path / "swift"
    path.write_text(FAKE_SWIFT.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_train_writes_the_file_into_output_dir_and_every_checkpoint_and_export_carries_it(tmp_path):
    img = png(tmp_path / "a.png")
    rows = [built_row(f"r{i}", str(img), f"c{i}", f"Segment c{i}.") for i in range(3)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    (tmp_path / "r.yaml").write_text("model: org/base\ndataset: train.jsonl\noutput_dir: out\nmax_steps: 2\n")
    swift = fake_swift(tmp_path)
    common = ["--swift", str(swift), "--no-check-args", "--no-check-lengths"]
    proc = cli(["train", "r.yaml", "--dry-run", *common], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "--callbacks text4seg_trained" in proc.stdout and "text4seg_plugin.py" in proc.stdout
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    proc = cli(["train", "r.yaml", *common], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for folder in ("out", "out/checkpoint-2", "out/v0-x", "out/v0-x/checkpoint-4"):
        got = read_trained(tmp_path / folder)
        assert got is not None, folder
        assert (got.scheme, got.grid, got.questions) == ("compact", (32, 32), ["Segment {target}."])
    proc = cli(["export", "out/checkpoint-2", "--out", "merged", "--swift", str(swift)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read_trained(tmp_path / "merged").scheme == "compact"


def test_export_refuses_a_bad_trained_file_before_merging(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "adapter_config.json").write_text("{}")
    (ck / "args.json").write_text('{"model": "org/base"}')
    (ck / TRAINED_NAME).write_text('{"scheme": 3}')
    proc = cli(["export", "ck", "--out", "merged", "--swift", str(fake_swift(tmp_path))], tmp_path)
    one_line_error(proc, 2, TRAINED_NAME, "scheme")
    assert not (tmp_path / "merged").exists()
