"""Hostile files fed to ``text4seg stats``, ``mix`` and ``train --dry-run`` (recipes and their data files),
each through the real CLI in a subprocess under a memory limit: one line naming the file and the line or
field, exit 2, no traceback, no output and no temporary file left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.hostile import REPO, RUNNER, cli, one_line_error, write_jsonl

from text4seg.data.jsonl import AtomicWriter

MEM_SMALL = 1 << 30  # address space: the interpreter and numpy fit, a 1 GB line does not

GOOD = {
    "messages": [
        {"role": "user", "content": "<image>Segment it."},
        {"role": "assistant", "content": "Sure."},
    ],
    "images": ["img.png"],
    "text4seg": {"id": "a", "task": "res", "labels": ["box"]},
}


def _good(tmp_path: Path, name: str = "good.jsonl", n: int = 5) -> Path:
    return write_jsonl(
        tmp_path / name, [{**GOOD, "text4seg": {**GOOD["text4seg"], "id": str(i)}} for i in range(n)]
    )


def _no_tmp(folder: Path) -> None:
    assert not [p.name for p in folder.rglob("*.tmp")]


# ------------------------------------------------------------------ the JSONL reader: size, depth, bytes
def test_a_one_gigabyte_line_without_newline_is_one_line_naming_file_and_line_within_a_memory_limit(tmp_path):
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as fh:  # sparse: costs no disk
        fh.write(json.dumps(GOOD).encode() + b"\n")
        fh.truncate(1 << 30)
    for args in (["stats", big], ["mix", big, "--out", tmp_path / "out.jsonl"]):
        p = cli(args, tmp_path, mem=MEM_SMALL, timeout=60)
        one_line_error(p, 2, f"{big}:2", "longer than")
    assert not (tmp_path / "out.jsonl").exists()
    _no_tmp(tmp_path)


HOSTILE_LINES = {
    "deep_nesting": ("[" * 100_000 + "]" * 100_000, "nested too deep"),
    "deep_nesting_in_object": ('{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deep"),
    "nan": ('{"messages": [], "x": NaN}', "NaN is not JSON"),
    "infinity": ('{"messages": [{"role": "assistant", "content": "a"}], "w": -Infinity}', "-Infinity"),
    "not_utf8": (b'{"messages": "caf\xe9"}', "not UTF-8"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_LINES))
@pytest.mark.parametrize("command", ["stats", "mix", "train"])
def test_deep_nesting_nan_and_bad_bytes_are_one_line_naming_file_and_line(tmp_path, kind, command):
    text, message = HOSTILE_LINES[kind]
    bad = tmp_path / "bad.jsonl"
    good_line = json.dumps(GOOD).encode()
    bad.write_bytes(good_line + b"\n" + (text if isinstance(text, bytes) else text.encode()) + b"\n")
    (tmp_path / "img.png").write_bytes(b"")  # datacheck only checks that the image exists
    if command == "stats":
        args = ["stats", bad]
    elif command == "mix":
        args = ["mix", bad, "--out", tmp_path / "out.jsonl"]
    else:
        (tmp_path / "r.yaml").write_text(f"model: org/m\ndataset: {bad}\n")
        args = ["train", "r.yaml", "--dry-run", "--no-check-args", "--no-check-lengths"]
    one_line_error(cli(args, tmp_path, mem=MEM_SMALL), 2, f"{bad}:2", message)
    assert not (tmp_path / "out.jsonl").exists()


WRONG_TYPES = {
    "messages_string": ({"messages": "hello"}, "messages"),
    "messages_of_ints": ({"messages": [1, 2]}, "messages[0]"),
    "images_dict": ({"images": {"a": 1}}, "images"),
    "text4seg_string": ({"text4seg": "oops"}, "text4seg"),
}
STATS_ONLY = {
    "id_list": ({"text4seg": {"id": ["a"], "labels": []}}, "text4seg.id"),
    "labels_int": ({"text4seg": {"id": "a", "labels": 5}}, "text4seg.labels"),
    "labels_dict": ({"text4seg": {"id": "a", "labels": {"a": 1}}}, "text4seg.labels"),
    "task_list": ({"text4seg": {"id": "a", "labels": [], "task": ["res"]}}, "text4seg.task"),
    "content_list_of_ints": ({"messages": [{"role": "assistant", "content": [1, 2]}]}, "messages[0].content"),
}


# mix copies rows verbatim: it checks only the ms-swift fields; stats reads text4seg's too
CASES = [("stats", k) for k in sorted({**WRONG_TYPES, **STATS_ONLY})] + [
    ("mix", k) for k in sorted(WRONG_TYPES)
]


@pytest.mark.parametrize("command,kind", CASES)
def test_wrong_types_in_a_row_are_one_line_naming_file_line_and_field(tmp_path, kind, command):
    change, field = {**WRONG_TYPES, **STATS_ONLY}[kind]
    bad = write_jsonl(tmp_path / "bad.jsonl", [GOOD, {**GOOD, **change}])
    args = ["stats", bad] if command == "stats" else ["mix", bad, "--out", tmp_path / "out.jsonl"]
    one_line_error(cli(args, tmp_path), 2, f"{bad}:2", field)
    assert not (tmp_path / "out.jsonl").exists()


# ------------------------------------------------------------------ recipes
def test_a_yaml_alias_bomb_is_one_short_line_within_a_memory_limit(tmp_path):
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    prev = "a"
    for c in "bcdefghi":
        bomb += f"{c}: &{c} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = c
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("model: org/m\n" + bomb)
    assert recipe.stat().st_size < 1000
    p = cli(["train", recipe, "--dry-run", "--no-check-args", "--no-check-lengths"], tmp_path, mem=MEM_SMALL)
    line = one_line_error(p, 2, "bomb.yaml", "alias")
    assert len(line) < 400


@pytest.mark.parametrize(
    "body,field",
    [
        ("max_length: abc", "max_length"),
        ("dataset: 5", "dataset"),
        ("dataset: [null, 3]", "dataset"),
        ("ENV: [1]", "ENV"),
        ("ENV:\n  NPROC_PER_NODE: [1]", "NPROC_PER_NODE"),
        ("ENV:\n  NPROC_PER_NODE: abc\nper_device_train_batch_size: 1\ngradient_accumulation_steps: 2",
         "NPROC_PER_NODE"),
        ("per_device_train_batch_size: abc\ngradient_accumulation_steps: 2", "per_device_train_batch_size"),
        ("per_device_train_batch_size: 1\ngradient_accumulation_steps: [2]", "gradient_accumulation_steps"),
        ("external_plugins: 5", "external_plugins"),
        ("learning_rate: [1]", "learning_rate"),
        ("5: x", "key 5"),
        ("dataset: a.jsonl\ndataset: b.jsonl", "given twice"),
        ("a: &a [1, *a]", "recursive"),
        ("model: " + "[" * 50_000 + "]" * 50_000, "nested too deep"),
        ("max_length: " + "x" * 100_000, "max_length"),
    ],
)  # fmt: skip
def test_a_recipe_field_of_the_wrong_type_is_one_line_naming_recipe_and_field(tmp_path, body, field):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: org/m\n{body}\n" if not body.startswith("model:") else body + "\n")
    p = cli(["train", recipe, "--dry-run", "--no-check-args", "--no-check-lengths"], tmp_path)
    line = one_line_error(p, 2, "r.yaml", field)
    assert len(line) < 500


@pytest.mark.parametrize(
    "override,field",
    [("max_length=abc", "max_length"), ("gpus=[1]", "NPROC_PER_NODE"), ("dataset=5", "dataset"),
     ("gradient_accumulation_steps=abc", "gradient_accumulation_steps")],
)  # fmt: skip
def test_a_wrong_typed_override_is_one_line_naming_it(tmp_path, override, field):
    data = _good(tmp_path)
    (tmp_path / "img.png").write_bytes(b"")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: org/m\ndataset: {data}\nper_device_train_batch_size: 1\ngradient_accumulation_steps: 4\n"
    )
    base = ["train", recipe, "--dry-run", "--no-check-args", "--no-check-lengths"]
    one_line_error(cli([*base, "--set", override], tmp_path), 2, override, field)
    assert cli(base, tmp_path).returncode == 0


# ------------------------------------------------------------------ mix: counts and sources
def test_mix_refuses_total_zero_an_empty_source_linked_duplicates_and_an_absurd_total(tmp_path):
    good = _good(tmp_path)
    other = _good(tmp_path, "other.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    (tmp_path / "sym.jsonl").symlink_to(good)
    os.link(good, tmp_path / "hard.jsonl")
    out = tmp_path / "out.jsonl"
    cases = [
        (["--total", "0"], [good], ["--total", "0"]),
        ([], [good, tmp_path / "empty.jsonl"], ["empty.jsonl", "no rows"]),
        ([], [good, tmp_path / "sym.jsonl"], ["sym.jsonl", "same file"]),
        ([], [good, tmp_path / "hard.jsonl"], ["hard.jsonl", "same file"]),
        (["--total", str(10**12)], [good, other], ["--total 1000000000000", "good.jsonl", "--total 10000"]),
    ]
    for flags, sources, names in cases:
        one_line_error(cli(["mix", *sources, "--out", out, *flags], tmp_path), 2, *names)
        assert not out.exists()
    p = cli(["mix", good, other, "--out", out, "--total", "10000"], tmp_path)  # the bound itself is fine
    assert p.returncode == 0 and len(out.read_text().splitlines()) == 10000, p.stderr
    _no_tmp(tmp_path)


def test_a_sigterm_during_mix_leaves_no_temporary_file_and_no_output(tmp_path):
    src = _good(tmp_path, n=5000)
    out = tmp_path / "out" / "mixed.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    args = ["mix", src, "--out", out, "--total", str(5000 * 1000)]
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(4 << 30), *map(str, args)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(out.parent.glob("*.tmp")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(out.parent.glob("*.tmp")), "mix never started writing"
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143 and "Traceback" not in err, err[-2000:]
    assert list(out.parent.iterdir()) == []


# ------------------------------------------------------------------ the atomic writer
def test_the_atomic_writer_removes_its_temporary_file_on_any_base_exception(tmp_path):
    target = tmp_path / "f.jsonl"
    target.write_text("old\n")
    for exc in (KeyboardInterrupt, SystemExit, ValueError):
        with pytest.raises(exc), AtomicWriter(target) as w:
            w.write("new")
            raise exc()
    assert target.read_text() == "old\n"
    w = AtomicWriter(tmp_path / "sub" / "g.jsonl")
    w.write("x")
    w.path = tmp_path / "no" / "such" / "folder" / "g.jsonl"  # the rename fails: the temp file must go
    with pytest.raises(OSError):
        w.commit()
    assert not w.tmp.exists()
    _no_tmp(tmp_path)
