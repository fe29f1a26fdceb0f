"""Security: no code from a model folder runs untrusted (train, also --dry-run); no request ends the app.

The attacks are the ones reported in issue 25: a model folder whose ``tokenizer_config.json``/``config.json``
names an ``auto_map`` class in a shipped ``tokenization_*.py`` (loading it with ``trust_remote_code=True``, as
ms-swift always does, runs the file), and a question template ``"{target} {target:>30000000}"`` that made
``str.format`` build a 30 MB prompt and the tokenizer abort the server process.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.hostile import cli, one_line_error, row, write_jsonl

EVIL = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


def evil_model(folder: Path, marker: Path, config: str = "tokenizer_config.json") -> Path:
    """A model folder whose ``config`` maps a tokenizer class to a shipped file that writes ``marker``."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llava"}))
    auto = {"auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}}
    cfg = folder / config
    cfg.write_text(json.dumps({**(json.loads(cfg.read_text()) if cfg.exists() else {}), **auto}))
    (folder / "tokenization_evil.py").write_text(
        EVIL.format(marker=str(marker)) + "class EvilTokenizer: ...\n"
    )
    return folder


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(tmp_path / "img.png")
    return write_jsonl(tmp_path / "train.jsonl", [row("a", str(tmp_path / "img.png"))])


@pytest.mark.parametrize("config", ["tokenizer_config.json", "config.json"])
@pytest.mark.parametrize("checks", [[], ["--no-check-lengths", "--no-check-args"]])
def test_train_dry_run_refuses_a_model_folder_with_code_and_runs_none_of_it(tmp_path, data, config, checks):
    marker = tmp_path / "MARKER"
    model = evil_model(tmp_path / "model", marker, config)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {model}\ndataset: {data}\nmax_length: 512\n")
    p = cli(["train", recipe, "--dry-run", "--swift", "swift", *checks], tmp_path)
    line = one_line_error(p, 2, str(model), "tokenization_evil.py", "--trust-remote-code")
    assert f"{config} auto_map -> tokenization_evil.EvilTokenizer" in line
    assert not marker.exists()


def test_train_refuses_code_in_the_base_model_of_an_adapter_and_in_a_reference_model(tmp_path, data):
    marker = tmp_path / "MARKER"
    base = evil_model(tmp_path / "base", marker)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text("{}")
    (ckpt / "args.json").write_text(json.dumps({"model": str(base)}))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {plain}\nadapters: [{ckpt}]\ndataset: {data}\n")
    args = ["train", recipe, "--dry-run", "--swift", "swift", "--no-check-lengths", "--no-check-args"]
    one_line_error(cli(args, tmp_path), 2, str(base), "tokenization_evil.py")
    recipe.write_text(f"model: {plain}\nref_model: {base}\ndataset: {data}\nrlhf_type: grpo\n")
    one_line_error(cli(args, tmp_path), 2, str(base))
    assert not marker.exists()


def test_train_with_trust_remote_code_gets_past_the_trust_check(tmp_path, data):
    model = evil_model(tmp_path / "model", tmp_path / "MARKER")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {model}\ndataset: {data}\n")
    args = ["train", recipe, "--dry-run", "--swift", "swift", "--no-check-lengths", "--no-check-args"]
    p = cli([*args, "--trust-remote-code"], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"--model {model}" in p.stdout


def test_app_has_trust_remote_code_and_refuses_code_before_loading(tmp_path):
    marker = tmp_path / "MARKER"
    model = evil_model(tmp_path / "model", marker)
    t0 = time.monotonic()
    p = cli(["app", "--model", model, "--port", "0"], tmp_path)
    one_line_error(p, 2, str(model), "--trust-remote-code")
    assert time.monotonic() - t0 < 60 and not marker.exists()
    assert "--trust-remote-code" in cli(["app", "--help"], tmp_path).stdout


# ------------------------------------------------------------------ the app: templates, limits, load
@pytest.mark.parametrize(
    "template",
    [
        "{target} {target:>30000000}",
        "{target:>30000000}",
        "{target.__class__.__mro__}",
        "{target[0]}",
        "{0} {target}",
        "{target} {target}",
        "no placeholder",
        "{target}" + "x" * 600,
        "{{target}}",
    ],
)
def test_a_template_is_plain_text_with_one_literal_target(template):
    from text4seg.serving.app import fill_template

    with pytest.raises(ValueError, match="template"):
        fill_template(template, "the cat")


def test_fill_template_replaces_the_one_target_literally():
    from text4seg.serving.app import MAX_EXPRESSION_CHARS, fill_template

    assert fill_template("Where is {target}?", "a {b} c") == "Where is a {b} c?"
    with pytest.raises(ValueError, match=str(MAX_EXPRESSION_CHARS)):
        fill_template("{target}", "x" * (MAX_EXPRESSION_CHARS + 1))


class FakePredictor:
    """Answers every query with an all-``others`` 16x16 grid after ``delay`` s; raises on ``"boom"``."""

    refiner = None

    def __init__(self, delay: float = 0.0):
        self.delay, self.calls = delay, 0

    def generate(self, queries, constrained=False):
        self.calls += 1
        time.sleep(self.delay)
        if any("boom" in q.question for q in queries):
            raise RuntimeError("the model broke")
        return [("Sure.\n<seg>" + "others *16\n" * 15 + "others *16</seg>", 70) for _ in queries]


@pytest.fixture()
def served(monkeypatch):
    from text4seg.serving import app as appmod

    def start(predictor, waiting: int | None = None):
        if waiting is not None:
            monkeypatch.setattr(appmod, "MAX_WAITING", waiting)
        seg = appmod.Segmenter(predictor)
        server = appmod.serve(seg, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append((server, seg))
        return f"http://127.0.0.1:{server.server_address[1]}"

    started: list = []
    yield start
    for server, seg in started:
        server.shutdown()
        server.server_close()
        seg.close()


def _png(h: int = 24, w: int = 32) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _post(url: str, body: dict | bytes, timeout: float = 60) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + "/api/segment", data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def _alive(url: str) -> bool:
    with urllib.request.urlopen(url + "/health", timeout=10) as r:
        return json.load(r)["ok"] is True


def test_hostile_requests_get_one_line_and_the_server_lives_on(served):
    pred = FakePredictor()
    url = served(pred)
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")  # ~50 KB on disk, 400 M pixels decoded
    spec = "{target} {target:>30000000}"
    cases = {
        "format spec": ({"image": _png(), "expressions": ["cat"], "template": spec}, 400),
        "attribute": ({"image": _png(), "expressions": ["cat"], "template": "{target.__class__}"}, 400),
        "template type": ({"image": _png(), "expressions": ["cat"], "template": ["{target}"]}, 400),
        "long expression": ({"image": _png(), "expressions": ["x" * 5000]}, 400),
        "expressions type": ({"image": _png(), "expressions": {"a": 1}}, 400),
        "bomb": ({"image": "data:image/png;base64," + base64.b64encode(bomb.getvalue()).decode(),
                  "expressions": ["cat"]}, 400),
        "not an image": ({"image": "data:image/png;base64," + base64.b64encode(b"GIF89a...").decode(),
                          "expressions": ["cat"]}, 400),
        "not JSON": (b"{" * 100000, 400),
        "a list": (b"[1, 2]", 400),
        "model failure": ({"image": _png(), "expressions": ["boom"]}, 500),
    }  # fmt: skip
    for name, (body, code) in cases.items():
        got, reply = _post(url, body)
        assert got == code, (name, got, reply)
        assert isinstance(reply["error"], str) and "\n" not in reply["error"] and len(reply["error"]) < 400, (
            name
        )
        assert _alive(url), name
    assert pred.calls == 1  # only the model failure reached the model: every other check came first
    assert _post(url, {"image": _png(), "expressions": ["cat"]})[0] == 200


def test_a_body_over_the_limit_is_413_without_reading_it(served, monkeypatch):
    from text4seg.serving import app as appmod

    monkeypatch.setattr(appmod, "MAX_BODY", 1000)
    url = served(FakePredictor())
    code, reply = _post(url, {"image": _png(), "expressions": ["cat"], "pad": "x" * 2000})
    assert code == 413 and "1..1000 bytes" in reply["error"]
    assert _alive(url)


def test_twenty_concurrent_users_all_get_an_answer(served):
    url = served(FakePredictor(delay=0.02))
    body = {"image": _png(), "expressions": ["cat"]}
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: _post(url, body)[0], range(20)))
    assert codes == [200] * 20


def test_users_beyond_the_queue_get_busy_not_a_reset_connection(served):
    url = served(FakePredictor(delay=0.3), waiting=2)
    body = {"image": _png(), "expressions": ["cat"]}
    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda _: _post(url, body), range(12)))
    codes = sorted(c for c, _ in replies)
    assert set(codes) == {200, 503} and codes.count(200) >= 3, codes
    assert all("busy" in r["error"] for c, r in replies if c == 503)


def test_app_checks_the_port_and_the_sam_file_before_loading_a_model(tmp_path):
    import socket

    model = tmp_path / "plain"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
        one_line_error(cli(["app", "--model", model, "--port", port], tmp_path), 2, f"127.0.0.1:{port}")
    p = cli(["app", "--model", model, "--port", "0", "--sam-checkpoint", tmp_path / "none.pth"], tmp_path)
    one_line_error(p, 2, "none.pth")


def test_export_refuses_code_in_a_base_model_given_with_set(tmp_path):
    marker = tmp_path / "MARKER"
    base = evil_model(tmp_path / "base", marker)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text("{}")
    args = ["export", ckpt, "--out", tmp_path / "merged", "--dry-run", "--swift", "swift"]
    one_line_error(cli([*args, "--set", f"model={base}"], tmp_path), 2, str(base), "tokenization_evil.py")
    assert not marker.exists()
