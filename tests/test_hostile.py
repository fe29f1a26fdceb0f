"""Every command on hostile and broken input, each in a subprocess under a memory and a time limit.

Each case asserts the exit code, a one-line error naming the culprit (file, line or id), no traceback,
nothing written outside ``--out`` and no earlier output lost. Import-light commands (build, stats, mix,
decode, evaluate, train/export --dry-run, predict's checks that run before a model loads) come first;
one case runs predict with a tiny LLaVA (resume over a corrupt results file).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.hostile import (  # noqa: E402
    MEM_LIGHT,
    REPO,
    RUNNER,
    RUNNER_DUMPS,
    cli,
    one_line_error,
    row,
    tree,
    write_jsonl,
)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace: two images, a good built JSONL, a folder, an empty file, a non-UTF-8 file."""
    d = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(d / f"img{i}.png")
    write_jsonl(d / "good.jsonl", [row("a", str(d / "img0.png")), row("b", str(d / "img1.png"))])
    (d / "empty.jsonl").write_text("")
    (d / "latin1.jsonl").write_bytes(b'{"x": "caf\xe9"}\n')
    (d / "adir").mkdir()
    (d / "trunc.jpg").write_bytes((d / "img0.png").read_bytes()[:60])
    model = d / "plain_model"  # a folder without code; the predict cases below fail before it loads
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llava"}')
    return d


# ------------------------------------------------------------------ inputs that name the culprit
BAD_ROWS = {
    "content_null": lambda d: {
        **row("n", str(d / "img0.png")),
        "messages": [{"role": "user", "content": None}],
    },
    "messages_string": lambda d: {**row("m", str(d / "img0.png")), "messages": "hello"},
    "text4seg_string": lambda d: {**row("t", str(d / "img0.png")), "text4seg": "oops"},
    "huge_grid_field": lambda d: row("g", str(d / "img0.png"), grid=(100000, 100000)),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_predict_refuses_a_malformed_row_naming_file_and_line_before_loading_a_model(ws, tmp_path, kind):
    bad = write_jsonl(tmp_path / "in.jsonl", [row("a", str(ws / "img0.png")), BAD_ROWS[kind](ws)])
    out = tmp_path / "out"
    p = cli(["predict", "--model", ws / "plain_model", "--jsonl", bad, "--out", out], tmp_path)
    one_line_error(p, 2, f"{bad}:2")
    assert not out.exists() or tree(out) == {}


PREDICT = ["predict", "--model", "{ws}/plain_model"]


@pytest.mark.parametrize(
    "args,names",
    [
        (["decode", "{ws}/latin1.jsonl", "--out", "{out}"], ["latin1.jsonl:1", "UTF-8"]),
        (["decode", "{ws}/empty.jsonl", "--out", "{out}"], ["empty.jsonl"]),
        (["decode", "{ws}/adir", "--out", "{out}"], ["adir"]),
        (["decode", "--text", "x", "--size", "100000x100000", "--out", "{out}/m.png"], ["100000x100000"]),
        (["decode", "{ws}/good.jsonl", "--grid", "100000", "--out", "{out}"], ["100000"]),
        (["stats", "{ws}/latin1.jsonl"], ["latin1.jsonl:1"]),
        (["stats", "{ws}/adir"], ["adir"]),
        (["mix", "{ws}/latin1.jsonl", "--out", "{out}/mix.jsonl"], ["latin1.jsonl:1"]),
        (["evaluate", "--pred", "{ws}/good.jsonl", "--gt", "{ws}/good.jsonl", "--out", "{out}"],
         ["good.jsonl:1"]),
        (["evaluate", "--pred", "{ws}/empty.jsonl", "--gt", "{ws}/good.jsonl", "--out", "{out}"], ["empty"]),
        ([*PREDICT, "--jsonl", "{ws}/good.jsonl", "--out", "{out}", "--limit", "-1"], ["--limit"]),
        ([*PREDICT, "--jsonl", "{ws}/empty.jsonl", "--out", "{out}"], ["empty.jsonl"]),
        ([*PREDICT, "--jsonl", "{ws}/adir", "--out", "{out}"], ["adir"]),
        ([*PREDICT, "--image", "{ws}/trunc.jpg", "--query", "q", "--out", "{out}"], ["trunc.jpg"]),
    ],
)  # fmt: skip
def test_bad_input_files_give_one_line_naming_them(ws, tmp_path, args, names):
    out = tmp_path / "out"
    p = cli([a.format(ws=ws, out=out) for a in args], tmp_path)
    one_line_error(p, 2, *names)
    assert not out.exists() or tree(out) == {}


def test_predict_skip_bad_passes_unreadable_images_before_the_model_and_counts_them(ws, tmp_path):
    from text4seg.inference.checks import check_images, load_checked_queries

    bad = write_jsonl(
        tmp_path / "in.jsonl", [row("a", str(ws / "img0.png")), row("t", str(ws / "trunc.jpg"))]
    )
    with pytest.raises(ValueError, match=r"trunc.jpg of query 't'"):
        check_images(load_checked_queries(bad))
    good, skipped = check_images(load_checked_queries(bad), skip_bad=True)
    assert [q.id for q in good] == ["a"] and len(skipped) == 1 and "trunc.jpg" in skipped[0]


# ------------------------------------------------------------------ nothing outside --out, nothing lost
def test_predict_refuses_a_symlinked_results_file_and_a_foreign_one(ws, tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").symlink_to(outside)
    args = ["predict", "--model", ws / "plain_model", "--jsonl", ws / "good.jsonl", "--out", out]
    one_line_error(cli(args, tmp_path), 2, "results.jsonl", "symbolic link")
    assert outside.read_text() == "keep me\n"
    (out / "results.jsonl").unlink()
    (out / "results.jsonl").write_text("my notes, not results\n")
    one_line_error(cli(args, tmp_path), 2, "results.jsonl", "not a results file")
    assert (out / "results.jsonl").read_text() == "my notes, not results\n"


def test_decode_refuses_a_symlinked_masks_folder(ws, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "masks").symlink_to(target)
    one_line_error(cli(["decode", ws / "good.jsonl", "--out", out], tmp_path), 2, "masks", "symbolic link")
    assert list(target.iterdir()) == []


def test_predict_rerun_with_other_options_names_them_unless_overwrite(ws, tmp_path):
    from text4seg.inference.outdir import record_options

    out = tmp_path / "out"
    old = {"model": str(ws / "plain_model"), "constrained": False}
    record_options(out, "predict", old)
    with pytest.raises(ValueError, match=r"constrained: False before, True now"):
        record_options(out, "predict", {**old, "constrained": True})
    (out / "results.jsonl").write_text('{"id": "a", "answer": ""}\n')
    record_options(out, "predict", {**old, "constrained": True}, overwrite=True, outputs=["results.jsonl"])
    assert not (out / "results.jsonl").exists()
    assert json.loads((out / "run.json").read_text())["options"]["constrained"] is True


def test_resume_keeps_every_good_line_and_sets_a_corrupt_middle_line_aside(tmp_path):
    from text4seg.data.results import finished_keys

    res = tmp_path / "results.jsonl"
    lines = [
        '{"id": "a", "turn": 0, "answer": ""}',
        '{"id": "b", "tu',
        '{"id": "c", "turn": 0, "answer": ""}',
    ]
    res.write_text("\n".join(lines) + "\n")
    said = []
    assert finished_keys(res, echo=said.append) == {("a", 0), ("c", 0)}
    assert res.read_text().splitlines() == [lines[0], lines[2]]
    assert "line(s) 2" in said[0] and lines[1] in (tmp_path / "results.jsonl.bad-lines.txt").read_text()


# ------------------------------------------------------------------ untrusted checkpoints
def _evil_checkpoint(folder: Path, marker: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "x", "auto_map": {"AutoConfig": "configuration_x.XConfig"}})
    )
    (folder / "configuration_x.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (folder / "adapter_config.json").write_text("{}")
    return folder


def test_a_checkpoint_with_code_is_refused_without_trust_remote_code(ws, tmp_path):
    marker = tmp_path / "MARKER"
    ckpt = _evil_checkpoint(tmp_path / "evil", marker)
    out = tmp_path / "out"
    p = cli(["predict", "--model", ckpt, "--jsonl", ws / "good.jsonl", "--out", out], tmp_path)
    one_line_error(p, 2, str(ckpt), "configuration_x.py", "--trust-remote-code")
    p = cli(["export", ckpt, "--out", out, "--dry-run"], tmp_path)
    one_line_error(p, 2, "configuration_x.py", "--trust-remote-code")
    assert not marker.exists()
    args = ["export", ckpt, "--out", out, "--dry-run", "--trust-remote-code", "--swift", "swift"]
    one_line_error(cli(args, tmp_path), 2, "args.json: missing")  # trusted, but the base is still unknown
    p = cli([*args, "--set", "model=org/base"], tmp_path)
    assert p.returncode == 0, p.stderr


# ------------------------------------------------------------------ wrong numbers with no error
def test_swift_style_rows_keep_their_id_and_evaluate_fails_when_nothing_matches(ws, tmp_path):
    swift_rows = [
        {
            "response": "<seg>" + "box *4\n" * 3 + "box *4</seg>",
            "images": [str(ws / f"img{i}.png")],
            "id": rid,
        }
        for i, rid in enumerate(["a", "b"])
    ]
    src = write_jsonl(tmp_path / "swift.jsonl", swift_rows)
    out = tmp_path / "dec"
    p = cli(["decode", src, "--out", out, "--grid", "4"], tmp_path)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(x) for x in (out / "decoded.jsonl").read_text().splitlines()]
    assert [(r["id"], r["grid"], r["scheme"]) for r in recs] == [("a", [4, 4], "rrle"), ("b", [4, 4], "rrle")]
    p = cli(["evaluate", "--pred", out / "decoded.jsonl", "--gt", ws / "good.jsonl", "--out", out], tmp_path)
    assert p.returncode == 0 and "samples 2 (missing 0, unmatched 0)" in p.stdout, p.stderr
    other = write_jsonl(tmp_path / "other_gt.jsonl", [row("zz", str(ws / "img0.png"))])
    p = cli(["evaluate", "--pred", out / "decoded.jsonl", "--gt", other, "--out", tmp_path / "ev"], tmp_path)
    one_line_error(p, 1, "no prediction", "2 unmatched")


def test_train_refuses_gpu_counts_that_change_the_global_batch(ws, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", [row("a", str(ws / "img0.png"))])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: org/m\ndataset: {data}\nper_device_train_batch_size: 4\ngradient_accumulation_steps: 4\n"
        "ENV:\n  NPROC_PER_NODE: 8\n"
    )
    base = ["train", recipe, "--dry-run", "--swift", "swift", "--no-check-args", "--no-check-lengths"]
    one_line_error(cli([*base, "--set", "gpus=3"], tmp_path), 2, "global batch of 128", "48")
    one_line_error(cli([*base, "--set", "gpus=0"], tmp_path), 2, "gpus=0")
    p = cli([*base, "--set", "gpus=4"], tmp_path)
    assert p.returncode == 0 and "gradient_accumulation_steps 8" in p.stdout, p.stderr


# ------------------------------------------------------------------ builders: crash and memory
def _refer_with(tmp_path: Path, seg=None, height=None) -> Path:
    from support.fakes import make_refer

    make_refer(tmp_path, "refclef", n_images=2, splits=("val",))
    p = tmp_path / "refclef" / "instances.json"
    inst = json.loads(p.read_text())
    if seg is not None:
        inst["annotations"][0]["segmentation"] = seg
    if height is not None:
        inst["images"][0]["height"] = height
    p.write_text(json.dumps(inst))
    return p


@pytest.mark.parametrize(
    "seg,height,cause",
    [
        ([[0.0, 0.0, float("nan"), 5.0, 5.0, 5.0]], None, "polygon_not_finite"),
        ([[0.0, 0.0, 1e15, 5.0, 5.0, 1e15]], None, "polygon_out_of_range"),
        ({"size": [2, 2], "counts": [-5, 9]}, None, "rle_size_mismatch"),
        (None, 10**9, None),
    ],
)
def test_build_on_hostile_geometry_names_the_annotation_within_a_memory_limit(tmp_path, seg, height, cause):
    _refer_with(tmp_path, seg, height)
    out = tmp_path / "out" / "val.jsonl"
    args = ["build", "refclef", "--root", tmp_path, "--split", "val", "--out", out, "--no-stats"]
    p = cli(args, tmp_path, timeout=60)
    one_line_error(p, 2, "instances.json")
    assert not out.exists()
    p = cli([*args, "--skip-bad"], tmp_path, timeout=60)
    if cause == "polygon_not_finite":  # json wrote NaN, which is not JSON: the file itself is refused
        one_line_error(p, 2, "instances.json", "NaN is not JSON")
        return
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    if cause:
        assert f'"{cause}": 1' in p.stdout + p.stderr or f"'{cause}': 1" in p.stdout + p.stderr


def test_negative_rle_counts_are_a_bad_annotation(tmp_path):
    from data_builders.coco import SegmentationError, segmentation_rles

    with pytest.raises(SegmentationError) as exc:
        segmentation_rles({"size": [2, 2], "counts": [-5, 9]}, 2, 2)
    assert exc.value.cause == "rle_bad_counts"


# ------------------------------------------------------------------ Ctrl-C, pipes, permissions
@pytest.mark.parametrize(
    "sig,code,word",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl_c", "sigterm"],
)
def test_ctrl_c_or_sigterm_during_a_build_prints_one_line_and_leaves_no_temporary_file(
    tmp_path, sig, code, word
):
    out = tmp_path / "out"
    args = ["build", "synthetic", "--root", tmp_path / "imgs", "--split", "train", "--out", out / "t.jsonl"]
    args += ["--num-images", "100000", "--no-stats"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER_DUMPS, str(MEM_LIGHT), *map(str, args)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300  # wait until it writes images (start-up is slow on a loaded machine)
    while not ((tmp_path / "imgs").exists() and any((tmp_path / "imgs").rglob("*.png"))):
        assert proc.poll() is None and time.monotonic() < deadline, "the build never started writing images"
        time.sleep(0.1)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # seen once in a full-suite run, never alone: keep its stack
        proc.send_signal(signal.SIGUSR1)  # faulthandler (RUNNER_DUMPS) prints every thread's stack
        time.sleep(2)
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the build did not exit within 120 s of {sig.name}; its stacks:\n{err[-4000:]}")
    assert proc.returncode == code and "Traceback" not in err and word in err, err[-2000:]
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name] and not (out / "t.jsonl").exists()
    assert not list((tmp_path / "imgs").glob("*.png"))  # the images of the unfinished set are gone


def test_piping_into_head_prints_no_broken_pipe_error(ws, tmp_path):
    big = write_jsonl(tmp_path / "big.jsonl", [row(f"r{i}", str(ws / "img0.png")) for i in range(2000)])
    cmd = f"{sys.executable} -c {RUNNER!r} {MEM_LIGHT} stats {big} --json | head -c 10"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run(
        ["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert "BrokenPipe" not in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_written_files_get_the_usual_permissions(tmp_path):
    from text4seg.data.records import write_jsonl as write_rows

    old = os.umask(0o022)
    try:
        write_rows([{"a": 1}], tmp_path / "x.jsonl")
    finally:
        os.umask(old)
    assert (tmp_path / "x.jsonl").stat().st_mode & 0o777 == 0o644


def test_an_unknown_builder_option_is_one_line_naming_it_and_nothing_is_written(tmp_path):
    out = tmp_path / "o.jsonl"
    p = cli(["build", "synthetic", "--out", out, "--limit", "2", "--num-imagess", "5"], tmp_path)
    one_line_error(p, 2, "--num-imagess")
    assert not out.exists()
