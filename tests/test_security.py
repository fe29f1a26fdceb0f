"""Security: no code from a model folder runs untrusted (train, also --dry-run); no request ends the app.

The attacks are the ones reported in issue 25: a model folder whose ``tokenizer_config.json``/``config.json``
names an ``auto_map`` class in a shipped ``tokenization_*.py`` (loading it with ``trust_remote_code=True``, as
ms-swift always does, runs the file), and a question template ``"{target} {target:>30000000}"`` that made
``str.format`` build a 30 MB prompt and the tokenizer abort the server process.
"""

from __future__ import annotations

import json
import time
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
    from text4seg.serving.segmenter import fill_template

    with pytest.raises(ValueError, match="template"):
        fill_template(template, "the cat")


def test_fill_template_replaces_the_one_target_literally():
    from text4seg.serving.segmenter import MAX_EXPRESSION_CHARS, fill_template

    assert fill_template("Where is {target}?", "a {b} c") == "Where is a {b} c?"
    with pytest.raises(ValueError, match=str(MAX_EXPRESSION_CHARS)):
        fill_template("{target}", "x" * (MAX_EXPRESSION_CHARS + 1))


class FakePredictor:
    """Answers every query with an all-``others`` 16x16 grid after ``delay`` s, calling ``watch`` (the app's
    logits processor) once per step for ``steps`` steps; raises on ``"boom"``."""

    refiner = None
    max_new_tokens = None

    def __init__(self, delay: float = 0.0, steps: int = 0, watch=None):
        self.delay, self.steps, self.watch, self.calls = delay, steps, watch, 0

    def generate(self, queries, constrained=False):
        self.calls += 1
        time.sleep(self.delay)
        for _ in range(self.steps):
            self.watch(None, None)
            time.sleep(0.01)
        if any("boom" in q.question for q in queries):
            raise RuntimeError("the model broke")
        return [("Sure.\n<seg>" + "others *16\n" * 15 + "others *16</seg>", 70) for _ in queries]


@pytest.fixture()
def served(monkeypatch):
    """Start the Gradio app over a predictor in this process; returns ``(url, segmenter)``."""
    pytest.importorskip("gradio")
    from text4seg.serving import app as appmod
    from text4seg.serving.segmenter import Segmenter

    def start(predictor, queue: int | None = None, **kw):
        if queue is not None:
            monkeypatch.setattr(appmod, "MAX_QUEUE", queue)
        seg = Segmenter(predictor, **kw)
        demo, url = appmod.launch(seg, appmod.ModelInfo(model="fake"), "127.0.0.1", 0)
        started.append((demo, seg))
        return url, seg

    started: list = []
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    yield start
    for demo, seg in started:
        demo.close()
        seg.close()


def _png(folder: Path, h: int = 24, w: int = 32, name: str = "img.png") -> str:
    path = folder / name
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)
    return str(path)


def _ask(url: str, image: str, expressions: str = "cat", template: str = "", **kw):
    """One /segment request through gradio_client: ``(details, None)`` or ``(None, error text)``."""
    from gradio_client import Client, handle_file

    client = kw.pop("client", None) or Client(url, verbose=False)
    try:
        out = client.predict(
            handle_file(image), expressions, template, False, kw.get("refine", False), kw.get("max_new", 0),
            api_name="/segment",
        )  # fmt: skip
    except Exception as e:  # gradio_client's AppError (a gr.Error), or the queue's refusal
        return None, str(e)
    return out[2], None


def _alive(url: str) -> bool:
    with urllib.request.urlopen(url + "config", timeout=10) as r:
        return r.status == 200


def test_hostile_requests_get_one_line_and_the_server_lives_on(served, tmp_path):
    pred = FakePredictor()
    url, _ = served(pred)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # ~50 KB on disk, 400 M pixels decoded
    gif = tmp_path / "fake.png"
    gif.write_bytes(b"GIF89a...")
    img = _png(tmp_path)
    cases = {
        "format spec": (img, "cat", "{target} {target:>30000000}", "template"),
        "attribute": (img, "cat", "{target.__class__}", "template"),
        "long expression": (img, "x" * 5000, "", "5000 characters"),
        "too many expressions": (img, "\n".join("abcdefghij"), "", "at most 8 expressions"),
        "no expression": (img, " \n ", "", "at least one expression"),
        "bomb": (str(bomb), "cat", "", "pixels"),
        "not an image": (str(gif), "cat", "", "not an image PIL can read"),
        "model failure": (img, "boom", "", "internal error: RuntimeError: the model broke"),
    }
    for name, (image, exprs, template, words) in cases.items():
        details, error = _ask(url, image, exprs, template)
        assert details is None and words in error, (name, error)
        assert "\n" not in error and len(error) < 500 and "Traceback" not in error, name
        assert _alive(url), name
    assert pred.calls == 1  # only the model failure reached the model: every other check came first
    assert _ask(url, img)[0][0]["expression"] == "cat"


def test_an_upload_over_the_size_limit_is_refused_before_it_is_stored(served, tmp_path, monkeypatch):
    import httpx

    from text4seg.serving import app as appmod

    monkeypatch.setattr(appmod, "MAX_UPLOAD", 1000)
    url, seg = served(FakePredictor())
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(big)
    details, error = _ask(url, str(big))  # gradio_client checks the limit the page announces
    assert details is None and "exceeds the maximum file size of 1000 bytes" in error, error
    with big.open("rb") as f:  # a client that ignores it: the server refuses the upload itself
        reply = httpx.post(
            url + "gradio_api/upload", files={"files": ("big.png", f, "image/png")}, timeout=30
        )
    assert reply.status_code == 413 and "1000" in reply.text, (reply.status_code, reply.text[:300])
    assert not list((seg.workdir / "gradio").rglob("big.png"))
    assert _alive(url)


def test_max_new_tokens_is_bounded_by_the_answer_budget(served, tmp_path):
    from text4seg.descriptors import max_answer_tokens

    url, _ = served(FakePredictor())
    bound = max_answer_tokens("rrle", (16, 16), ["cat"])
    assert _ask(url, _png(tmp_path), max_new=10**9)[0][0]["budget"] == bound
    assert _ask(url, _png(tmp_path), max_new=50)[0][0]["budget"] == 50
    assert _ask(url, _png(tmp_path), max_new=0)[0][0]["budget"] == bound


def test_twenty_concurrent_users_all_get_an_answer(served, tmp_path):
    url, _ = served(FakePredictor(delay=0.02))
    img = _png(tmp_path)
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: _ask(url, img), range(20)))
    assert [e for _, e in replies] == [None] * 20
    assert all(d[0]["expression"] == "cat" for d, _ in replies)


def test_users_beyond_the_queue_are_told_it_is_full_not_reset(served, tmp_path):
    url, _ = served(FakePredictor(delay=0.5), queue=2)
    img = _png(tmp_path)
    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda _: _ask(url, img), range(10)))
    answered = [d for d, _ in replies if d is not None]
    refused = [e for d, e in replies if d is None]
    assert len(answered) >= 2 and refused, replies
    assert all("queue is full" in e.lower() for e in refused), refused
    assert _alive(url)


def test_stop_cancels_a_running_request_and_the_next_one_runs(served, tmp_path):
    from gradio_client import Client, handle_file

    from text4seg.serving.segmenter import Watch

    watch = Watch()
    pred = FakePredictor(steps=3000, watch=watch)  # ~30 s unless cancelled
    url, seg = served(pred, watch=watch)
    client = Client(url, verbose=False)
    job = client.submit(handle_file(_png(tmp_path)), "cat", "", False, False, 0, api_name="/segment")
    deadline = time.monotonic() + 30
    while watch.step < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    client.predict(api_name="/stop")
    try:
        job.result(timeout=30)
        ended = "answered"
    except Exception as e:  # concurrent.futures.CancelledError, or the app's "stopped" line
        ended = f"{type(e).__name__}: {e}"
    assert "Cancelled" in ended or "stopped" in ended, ended
    assert time.monotonic() - t0 < 10 and watch.step < 3000
    pred.steps = 0
    assert _ask(url, _png(tmp_path), client=client)[0][0]["expression"] == "cat"


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
