"""``text4seg predict`` (in-process and ``--api``) on hostile input, each case through the real CLI in a
subprocess under a memory and a time limit: a server that lies (a 10 GiB ``Content-Length``, one byte
every second, an answer far over its bound, JSON of the wrong shape, HTML), decompression bombs and FIFOs
as images, hard-linked outputs, bad options and rows found before any model (torch never imported), and
SAM checkpoints that would run code when unpickled."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.hostile import (
    MEM_LIGHT,
    MEM_TORCH,
    REPO,
    ChatServer,
    cli,
    one_line_error,
    row,
    tree,
    write_jsonl,
)

ANSWER = "Sure.\n<seg>" + "box *4\n" * 3 + "box *4</seg>"
OK = {"choices": [{"message": {"content": ANSWER}}], "usage": {"completion_tokens": 7}}


# ------------------------------------------------------------------------------- inputs
def png_bomb(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit PNG of side x side pixels (all black) that weighs about 48 KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    co, line = zlib.compressobj(9), b"\0" * (1 + (side + 7) // 8)
    idat = b"".join(co.compress(line) for _ in range(side)) + co.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Two 32x48 images, a good built JSONL, a bomb, a FIFO, a model folder without code or weights."""
    d = tmp_path_factory.mktemp("hostile_predict")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(d / f"img{i}.png")
    write_jsonl(d / "good.jsonl", [row("a", str(d / "img0.png")), row("b", str(d / "img1.png"))])
    png_bomb(d / "bomb.png")
    os.mkfifo(d / "fifo.png")
    (d / "plain_model").mkdir()
    (d / "plain_model" / "config.json").write_text('{"model_type": "llava"}')
    return d


# ------------------------------------------------------------------------------- a hostile chat server
def _json(obj):
    return lambda h: h.send(json.dumps(obj).encode())


def _raw(data: bytes, ctype: str = "application/json"):
    return lambda h: h.send(data, ctype)


def _trickle(h):  # announces 1000 bytes, sends one per second
    h.send_response(200)
    h.send_header("Content-Length", "1000")
    h.end_headers()
    for _ in range(1000):
        try:
            h.wfile.write(b" ")
            h.wfile.flush()
        except OSError:
            return
        time.sleep(1.0)


def _api(url: str) -> list:
    return ["predict", "--api", url, "--served-model", "m", "--server", "vllm", "--no-progress"]


# ------------------------------------------------------------------------------- 1. the server's answers
def test_api_ten_gib_content_length_is_refused_not_allocated(ws, tmp_path):
    with ChatServer(lambda h: h.send(b"{", length=10 << 30)) as s:
        p = cli([*_api(s.url), "--jsonl", ws / "good.jsonl", "--out", tmp_path / "out"], tmp_path)
    one_line_error(p, 2, "10737418240 bytes", "over the limit", "chat/completions")


def test_api_timeout_is_a_deadline_for_a_server_trickling_one_byte_per_second(ws, tmp_path):
    args = [*_api("{}"), "--jsonl", ws / "good.jsonl", "--out", tmp_path / "out", "--timeout", "3"]
    with ChatServer(_trickle) as s:
        t0 = time.monotonic()
        p = cli([a if a != "{}" else s.url for a in [*args, "--retries", "0"]], tmp_path, timeout=60)
        took = time.monotonic() - t0
    one_line_error(p, 2, "failed after 1 tries", "within 3 s")
    assert took < 20, took  # before: no end (each 1-byte read came within the per-read timeout)


def test_api_answer_far_over_its_bound_is_cut_there_and_counted(ws, tmp_path):
    from text4seg.descriptors import MAX_FREE, max_answer_tokens

    out = tmp_path / "out"
    long = {**OK, "choices": [{"message": {"content": ANSWER + "x" * 2_000_000}}]}
    with ChatServer(_json(long)) as s:
        p = cli([*_api(s.url), "--jsonl", ws / "good.jsonl", "--out", out], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "cut_answers: 2" in p.stdout
    bound = max_answer_tokens("rrle", (4, 4), ["box"], MAX_FREE)
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(len(r["answer"]) == bound for r in recs)
    assert (out / "results.jsonl").stat().st_size < 40_000  # before: 4 MB of 'x'


ODD = {
    "json_list": (_raw(b"[1, 2]"), "no choices[0].message.content"),
    "choices_null": (_json({"choices": None}), "no choices[0].message.content"),
    "content_number": (_json({"choices": [{"message": {"content": 5}}]}), "not a string"),
    "not_json": (_raw(b"hello"), "not JSON"),
    "html_200": (_raw(b"<html><body>Welcome to nginx</body></html>", "text/html"), "not JSON"),
    "tokens_string": (_json({**OK, "usage": {"completion_tokens": "x"}}), "completion_tokens"),
}


@pytest.mark.parametrize("kind", sorted(ODD))
def test_api_odd_replies_are_one_line_naming_the_url_and_query(ws, tmp_path, kind):
    reply, says = ODD[kind]
    out = tmp_path / "out"
    with ChatServer(reply) as s:
        p = cli([*_api(s.url), "--jsonl", ws / "good.jsonl", "--out", out], tmp_path)
    one_line_error(p, 2, says, "chat/completions", "query (")
    assert not (out / "results.jsonl").exists() or (out / "results.jsonl").read_text() == ""


def test_api_usage_of_the_wrong_type_is_ignored_not_a_traceback(ws, tmp_path):
    with ChatServer(_json({**OK, "usage": "many"})) as s:
        p = cli([*_api(s.url), "--jsonl", ws / "good.jsonl", "--out", tmp_path / "out"], tmp_path)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]


def test_a_chunked_answer_without_length_is_read_up_to_the_limit_only():
    from text4seg.inference.api_client import ApiError, _http_bytes

    def endless(h):  # chunked, no Content-Length, 64 KiB chunks without end
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        try:
            for _ in range(10_000):
                h.wfile.write(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        except OSError:
            return

    with ChatServer(endless) as s, pytest.raises(ApiError, match="over the limit of 1048576 bytes"):
        _http_bytes(s.url + "/v1/chat/completions", {"x": 1}, timeout=30, limit=1 << 20)


# ------------------------------------------------------------------------------- 2. images
def test_decompression_bomb_is_one_line_and_skip_bad_skips_and_counts_it(ws, tmp_path):
    jsonl = write_jsonl(
        tmp_path / "in.jsonl", [row("a", str(ws / "img0.png")), row("b", str(ws / "bomb.png"))]
    )
    with ChatServer(_json(OK)) as s:
        p = cli([*_api(s.url), "--jsonl", jsonl, "--out", tmp_path / "o1"], tmp_path)
        one_line_error(p, 2, "bomb.png", "query 'b'", "over the limit")
        p = cli([*_api(s.url), "--jsonl", jsonl, "--out", tmp_path / "o2", "--skip-bad"], tmp_path)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "skipped_bad: 1" in p.stdout and "bomb.png" in p.stdout
    recs = [json.loads(x) for x in (tmp_path / "o2" / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in recs] == ["a"]


@pytest.mark.parametrize("how", ["jsonl", "image"])
def test_a_fifo_as_image_is_refused_at_once_not_read(ws, tmp_path, how):
    src = ["--jsonl", write_jsonl(tmp_path / "in.jsonl", [row("f", str(ws / "fifo.png"))])]
    if how == "image":
        src = ["--image", ws / "fifo.png", "--query", "Segment the box."]
    p = cli([*_api("http://127.0.0.1:9"), *src, "--out", tmp_path / "out"], tmp_path, timeout=30)
    one_line_error(p, 2, "fifo.png", "not a regular file")


def test_every_image_reader_of_predict_refuses_a_bomb(ws):
    from text4seg.data.images import image_size
    from text4seg.data.overlay import overlay_image
    from text4seg.data.queries import Query
    from text4seg.inference.answer import query_size
    from text4seg.inference.refine import _load_rgb
    from text4seg.inference.video import decode_video_answer

    bomb = str(ws / "bomb.png")
    assert image_size(ws / "img0.png") == (48, 32)
    for read in (
        lambda: query_size(Query(id="b", image=bomb, question="q")),
        lambda: _load_rgb(bomb),
        lambda: overlay_image(bomb, np.zeros((4, 4), bool)),
        lambda: decode_video_answer("", [Path(bomb)], [0], (4, 4), "rrle", "frames"),
    ):
        with pytest.raises(ValueError, match="bomb.png"):
            read()


# ------------------------------------------------------------------------------- 3. links in --out
def test_a_hard_linked_results_file_is_refused_and_its_other_name_untouched(ws, tmp_path):
    with ChatServer(_json(OK)) as s:
        first = tmp_path / "first"
        p = cli([*_api(s.url), "--jsonl", ws / "good.jsonl", "--out", first, "--limit", "1"], tmp_path)
        assert p.returncode == 0, p.stderr[-2000:]
        kept = (first / "results.jsonl").read_bytes()
        out = tmp_path / "out"
        out.mkdir()
        os.link(first / "results.jsonl", out / "results.jsonl")  # a valid results file under two names
        p = cli([*_api(s.url), "--jsonl", ws / "good.jsonl", "--out", out], tmp_path)
    one_line_error(p, 2, "results.jsonl", "hard link")
    assert (first / "results.jsonl").read_bytes() == kept  # before: the second query appended to it


def test_symlinked_overlays_folder_is_refused_and_nothing_written_outside(ws, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "overlays").symlink_to(elsewhere)
    with ChatServer(_json(OK)) as s:
        p = cli([*_api(s.url), "--jsonl", ws / "good.jsonl", "--out", out], tmp_path)
    one_line_error(p, 2, "overlays", "symbolic link")
    assert tree(elsewhere) == {}


def test_video_expression_id_cannot_leave_out(tmp_path):
    from text4seg.inference.video import check_video_out

    with pytest.raises(ValueError, match="expression-id"):
        check_video_out(tmp_path / "out", "v", "../../x")
    (tmp_path / "out" / "Annotations").mkdir(parents=True)
    (tmp_path / "out" / "Annotations" / "v").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="symbolic link"):
        check_video_out(tmp_path / "out", "v", "0")


# ------------------------------------------------------------------------------- 4 + 6. before any model
NO_TORCH = (
    "import resource, sys; lim = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_AS, (lim, lim)); "
    "from text4seg.cli import main; rc = main(sys.argv[2:]); "
    "sys.exit(97 if 'torch' in sys.modules else rc)"
)


def cli_no_torch(args, cwd: Path) -> subprocess.CompletedProcess:
    """``text4seg ARGS`` in a subprocess that exits 97 if torch got imported."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("TEXT4SEG_DEBUG", None)
    cmd = [sys.executable, "-c", NO_TORCH, str(MEM_LIGHT), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


BAD_OPTIONS = {
    "scheme": (["--scheme", "bogus"], ["--scheme", "bogus"]),
    "grid": (["--grid", "0"], ["--grid"]),
    "template": (["--template", "bogus_tpl"], ["--template", "bogus_tpl"]),
    "model_type": (["--model-type", "bogus_type"], ["--model-type", "bogus_type"]),
    "batch_size": (["--batch-size", "0"], ["--batch-size"]),
    "sam_missing": (["--sam-checkpoint", "{ws}/no_sam.pth"], ["--sam-checkpoint", "no_sam.pth"]),
    "adapters_missing": (["--adapters", "{ws}/no_lora"], ["--adapters", "no_lora"]),
    "adapters_not_lora": (["--adapters", "{ws}"], ["--adapters", "adapter_config.json"]),
}


@pytest.mark.parametrize("kind", sorted(BAD_OPTIONS))
def test_a_bad_option_is_one_line_before_torch_is_imported(ws, tmp_path, kind):
    extra, names = BAD_OPTIONS[kind]
    args = ["predict", "--model", ws / "plain_model", "--jsonl", ws / "good.jsonl", "--out", tmp_path / "out"]
    t0 = time.monotonic()
    p = cli_no_torch([*args, *(a.format(ws=ws) for a in extra)], tmp_path)
    one_line_error(p, 2, *names)  # (rc 97: torch was imported)
    assert time.monotonic() - t0 < 10
    assert not (tmp_path / "out").exists() or tree(tmp_path / "out") == {}


# before PredictOptions each of these was ignored without a word: the run wrote run.json and went on to
# load the model or to ask the server (video: --constrained and --label were dropped)
NOT_APPLYING = {
    "api_constrained_engine": (
        "api",
        ["--constrained", "--constrained-engine", "own"],
        ["--constrained-engine"],
    ),
    "api_batch_size": ("api", ["--batch-size", "2"], ["--batch-size 2", "--concurrency"]),
    "api_adapters": ("api", ["--adapters", "{ws}/plain_model"], ["--adapters", "not --api"]),
    "model_concurrency": ("model", ["--concurrency", "8"], ["--concurrency 8", "--api run"]),
    "model_timeout": ("model", ["--timeout", "5"], ["--timeout 5", "--api run"]),
    "jsonl_grid": ("model", ["--grid", "8"], ["--grid 8x8", "carries its own grid"]),
    "jsonl_label": ("model", ["--label", "box"], ["--label", "--image run"]),
    "jsonl_frames": ("model", ["--frames", "4"], ["--frames 4", "--video run"]),
    "video_constrained": ("video", ["--constrained"], ["--constrained", "not --video"]),
    "image_shard": ("image", ["--shard", "0/2"], ["--shard '0/2'", "--jsonl run"]),
}


@pytest.mark.parametrize("kind", sorted(NOT_APPLYING))
def test_an_option_that_does_not_apply_to_the_run_is_one_line_before_torch(ws, tmp_path, kind):
    path, extra, names = NOT_APPLYING[kind]
    model = ["predict", "--model", ws / "plain_model"]
    source = {
        "api": [*_api("http://127.0.0.1:9"), "--jsonl", ws / "good.jsonl"],
        "model": [*model, "--jsonl", ws / "good.jsonl"],
        "video": [*model, "--video", ws, "--query", "Track the box."],
        "image": [*model, "--image", ws / "img0.png", "--query", "Segment the box."],
    }[path]
    p = cli_no_torch([*source, "--out", tmp_path / "out", *(a.format(ws=ws) for a in extra)], tmp_path)
    one_line_error(p, 2, *names)  # (rc 97: torch was imported)
    assert not (tmp_path / "out").exists()


# run.json as predict wrote it before PredictOptions (an --api run of good.jsonl)
OLD_RUN_OPTIONS = {
    "adapters": [], "constrained": False, "grid": [16, 16], "image": None, "jsonl": "{jsonl}", "label": None,
    "max_new_tokens": None, "model": None, "model_type": None, "query": None, "root": None,
    "sam_checkpoint": None, "sam_type": "vit_h", "scheme": "rrle", "served_model": "m", "shard": None,
    "template": None,
}  # fmt: skip


def test_a_run_json_of_the_earlier_format_is_recognised_and_a_changed_option_named(ws, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    opts = {k: str(ws / "good.jsonl") if v == "{jsonl}" else v for k, v in OLD_RUN_OPTIONS.items()}
    old = json.dumps({"command": "predict", "options": opts}, indent=2) + "\n"
    (out / "run.json").write_text(old)
    with ChatServer(_json(OK)) as s:
        p = cli([*_api(s.url), "--jsonl", ws / "good.jsonl", "--out", out], tmp_path)
        assert p.returncode == 0, p.stderr[-2000:]
        assert (out / "run.json").read_text() == old  # the same options: resumed, not rewritten
        assert len((out / "results.jsonl").read_text().splitlines()) == 2
        p = cli([*_api(s.url), "--jsonl", ws / "good.jsonl", "--out", out, "--constrained"], tmp_path)
    one_line_error(p, 2, "constrained: False before, True now", "--overwrite")


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_api_timeout_must_be_a_positive_finite_number(ws, tmp_path, value):
    args = [*_api("http://127.0.0.1:9"), "--jsonl", ws / "good.jsonl", "--out", tmp_path / "out"]
    one_line_error(cli_no_torch([*args, "--timeout", value], tmp_path), 2, "--timeout", value)


BAD_ROWS = {
    "id_list": (lambda r: r["text4seg"].update(id=["a"]), "text4seg.id"),
    "scheme_unknown": (lambda r: r["text4seg"].update(scheme="bogus"), "text4seg.scheme"),
    "scheme_number": (lambda r: r["text4seg"].update(scheme=5), "text4seg.scheme"),
    "text4seg_string": (lambda r: r.update(text4seg="oops"), "'text4seg'"),
    "images_dict": (lambda r: r.update(images={"path": "x.png"}), "'images'"),
    "image_entry_without_path": (lambda r: r.update(images=[{"url": "x"}]), "images[0]"),
    "size_huge": (lambda r: r["text4seg"].update(width=10**12, height=10**12), "text4seg.height x width"),
    "size_float": (lambda r: r["text4seg"].update(width=48.5), "text4seg.width"),
    "labels_nested": (lambda r: r["text4seg"].update(labels=[["x"]]), "text4seg.labels"),
    "task_list": (lambda r: r["text4seg"].update(task=["res"]), "text4seg.task"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_a_row_of_wrong_types_is_one_line_naming_file_line_and_field_before_torch(ws, tmp_path, kind):
    change, field = BAD_ROWS[kind]
    bad = row("z", str(ws / "img1.png"))
    change(bad)
    jsonl = write_jsonl(tmp_path / "in.jsonl", [row("a", str(ws / "img0.png")), bad])
    args = ["predict", "--model", ws / "plain_model", "--jsonl", jsonl, "--out", tmp_path / "out"]
    one_line_error(cli_no_torch(args, tmp_path), 2, f"{jsonl}:2", field)
    assert not (tmp_path / "out").exists() or tree(tmp_path / "out") == {}


# ------------------------------------------------------------------------------- 5. SAM checkpoints
class _Evil:
    """Unpickling this object opens (creates) the marker file: any code could run instead."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_sam_checkpoints_that_run_code_or_are_not_sam_are_one_line_and_run_nothing(ws, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    marker = tmp_path / "MARKER"
    cases = {
        "evil.pth": ({"image_encoder.x": _Evil(str(marker))}, "would import or run code"),
        "foreign.pth": ({"foo": torch.zeros(2)}, "not a SAM state dict"),
        "list.pth": ([1, 2], "not a state dict"),
        "text.pth": (None, "not a torch checkpoint"),
    }
    for name, (obj, says) in cases.items():
        path = tmp_path / name
        if obj is None:
            path.write_text("not a checkpoint\n")
        else:
            torch.save(obj, path)
        assert not marker.exists()  # (saving does not run it)
        out = tmp_path / f"out_{name}"
        args = [*_api("http://127.0.0.1:9"), "--jsonl", ws / "good.jsonl", "--out", out]
        p = cli([*args, "--sam-checkpoint", path, "--sam-type", "vit_b"], tmp_path, mem=MEM_TORCH)
        one_line_error(p, 2, name, says)
        assert not marker.exists(), name
        assert not out.exists() or tree(out) == {}  # refused before run.json


def test_a_sam_state_dict_of_the_wrong_shape_is_one_line_naming_the_file(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("segment_anything")
    from text4seg.inference.refine import load_sam

    path = tmp_path / "short.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"short.pth does not fit SAM vit_b"):
        load_sam(path, "vit_b")
