"""``text4seg app`` (Gradio) on a tiny LLaVA, run as the command users run: answers through
``gradio_client`` equal the in-process prediction, the page in headless chromium shows them, the start-up
output is one line, and SIGTERM removes the uploads."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("swift")
pytest.importorskip("gradio")

from support.browser import Page, shots_dir  # noqa: E402
from support.offline import offline, offline_env, one_torch_thread  # noqa: E402

from text4seg.data.jsonl import read_jsonl  # noqa: E402
from text4seg.data.rle import rle_to_mask  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GRID = 4
BUDGET = 60
EXPR = "red circle"
QUESTION = "Please segment {target} here."
BIAS = 4.0  # the checkpoint's label bias for constrained decoding (text4seg.json): the app applies it


def _start(model: Path, root: Path, *extra: str) -> tuple[subprocess.Popen, str, list[str]]:
    """``text4seg app`` in a subprocess (its temporary files under ``root/tmp``); returns the process, the
    URL and the lines it printed before the URL."""
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    env = offline_env(root, TMPDIR=str(tmp), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "text4seg.cli", "app", "--model", str(model), "--port", "0"]
    cmd += ["--max-new-tokens", str(BUDGET), "--model-type", "llava1_5_hf", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        m = re.search(r"text4seg app: (http://\S+/)", line)
        if m:
            return proc, m.group(1), lines
    proc.kill()
    pytest.fail("the app printed no URL:\n" + "\n".join(lines[-30:]))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app over a tiny LLaVA (``text4seg app`` in a subprocess), plus the in-process prediction."""
    from text4seg.checkpoints.trained import TrainedWith, write_trained
    from text4seg.demo.model import make_tiny_llava
    from text4seg.inference.run import predict_image
    from text4seg.serving.segmenter import fill_template

    root = tmp_path_factory.mktemp("app")
    with one_torch_thread(), offline(root):
        model = make_tiny_llava(root / "llava")
        img = root / "shapes.png"
        a = np.full((96, 128, 3), 235, np.uint8)
        yy, xx = np.mgrid[:96, :128]
        a[(yy - 40) ** 2 + (xx - 45) ** 2 < 22**2] = (220, 30, 30)
        a[55:90, 80:120] = (30, 60, 200)
        Image.fromarray(a).save(img)
        question = fill_template(QUESTION, EXPR)
        refs = [
            predict_image(
                model,
                img,
                question,
                root / f"ref{bias}",
                labels=[EXPR],
                grid=(GRID, GRID),
                constrained=True,
                max_new_tokens=BUDGET,
                model_type="llava1_5_hf",
                progress=False,
                overlays=False,
                label_bias=bias,
            )
            for bias in (BIAS, None)
        ]
        (ref_rec,), (unbiased,) = (list(read_jsonl(r)) for r in refs)
        # what the checkpoint was trained with (written after the references: predict would apply it
        # too): the app's grid, question and label bias default to it (no --grid)
        trained = TrainedWith(scheme="rrle", grid=(GRID, GRID), questions=[QUESTION])
        trained.label_bias_constrained = BIAS
        write_trained(model, trained)
    proc, url, lines = _start(model, root)
    try:
        yield {
            "root": root, "url": url, "image": img, "ref": ref_rec, "unbiased": unbiased, "proc": proc,
            "lines": lines,
        }  # fmt: skip
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_start_up_prints_one_line_the_url(app):
    assert len(app["lines"]) == 1, app["lines"]


def test_client_answer_mask_and_repairs_equal_the_in_process_prediction_with_the_checkpoints_bias(app):
    from gradio_client import Client, handle_file

    client = Client(app["url"], verbose=False)
    gallery, files, details, status = client.predict(
        handle_file(str(app["image"])), EXPR, "", True, False, 0, api_name="/segment"
    )
    (r,) = details
    ref = app["ref"]
    assert r["question"] == "Please segment red circle here."  # the checkpoint's template
    assert r["answer"] == ref["answer"] and r["repairs"] == ref["repairs"]
    assert r["answer"] != app["unbiased"]["answer"]  # the checkpoint's label bias made the difference
    assert r["parse_valid"] is True and r["budget"] == BUDGET  # constrained; the operator's cap
    (mask,) = files
    assert np.array_equal(np.asarray(Image.open(mask)) > 127, rle_to_mask(ref["coarse"]))
    assert len(gallery) == 1 and EXPR in status


def test_client_errors_are_one_line(app):
    from gradio_client import Client, handle_file

    client = Client(app["url"], verbose=False)
    bad = app["root"] / "not_an_image.png"
    bad.write_bytes(b"GIF89a...")
    with pytest.raises(Exception, match="not an image PIL can read") as e:
        client.predict(handle_file(str(bad)), EXPR, "", False, False, 0, api_name="/segment")
    assert "\n" not in str(e.value)
    with pytest.raises(Exception, match="--sam-checkpoint"):
        client.predict(handle_file(str(app["image"])), EXPR, "", False, True, 0, api_name="/segment")


@pytest.mark.slow
def test_browser_upload_type_submit_shows_the_in_process_mask(app, tmp_path):
    out = shots_dir(tmp_path)
    with Page(app["url"], tmp_path / "profile", size=(1400, 1000)) as page:
        page.wait_for("!!document.querySelector('#upload input[type=file]')", timeout=120)
        assert "llava" in page.js("document.getElementById('model-info').textContent")
        info = page.js("document.getElementById('model-info').textContent")
        assert f"grid {GRID}x{GRID}" in info and "scheme rrle" in info and "text4seg.json" in info, info
        assert page.js("document.querySelector('#template textarea').value") == QUESTION
        page.set_files("#upload input[type=file]", [str(app["image"])])
        page.wait_for("!!document.querySelector('#preview img')")
        page.js(_type_into("#expressions textarea", EXPR + "\nblue square"))
        page.js("document.querySelector('#constrained input').click()")
        page.js("document.querySelector('#submit').click()")
        page.wait_for("document.querySelectorAll('#overlays img').length >= 2", timeout=300)
        page.wait_for("document.querySelectorAll('#masks a').length >= 2")
        status = page.js("document.querySelector('#status textarea').value")
        widths = page.js("[...document.querySelectorAll('#overlays img')].map(i => i.clientWidth)")
        page.screenshot(out / "app.png")
        page.js("location.reload()")
        page.wait_for("!!document.querySelector('#upload input[type=file]')", timeout=120)
        page.set_files("#upload input[type=file]", [str(_garbage(tmp_path))])
        refused = page.wait_for(
            "document.querySelector('#size textarea').value.startsWith('refused') && "
            "document.querySelector('#size textarea').value"
        )
        time.sleep(1)  # the toast fades in
        page.screenshot(out / "app_error.png")
    assert EXPR in status and "blue square" in status
    assert "garbage.png" in refused and "not an image PIL can read" in refused and "/tmp" not in refused
    assert max(widths) >= 600, widths  # the overlay fills the wide column, not a 320 px thumbnail
    assert Image.open(out / "app.png").size[0] >= 1000


def test_a_flag_disagreeing_with_the_checkpoint_is_one_line_before_loading(app):
    from support.hostile import cli, one_line_error

    model = app["root"] / "llava"
    t0 = time.monotonic()
    p = cli(["app", "--model", model, "--port", "0", "--scheme", "full"], app["root"])
    one_line_error(p, 2, "--scheme full", "text4seg.json", "--force-options")
    p = cli(["app", "--model", model, "--port", "0", "--grid", "8"], app["root"])
    one_line_error(p, 2, "--grid 8x8", "text4seg.json", "--force-options")
    assert time.monotonic() - t0 < 60


def test_sigterm_stops_the_app_and_removes_its_uploads(app):
    """Run last: ends the module's server."""
    tmp = app["root"] / "tmp"
    assert any(p.name.startswith("text4seg_app_") for p in tmp.iterdir())  # the uploads of the tests above
    app["proc"].send_signal(signal.SIGTERM)
    rest = app["proc"].communicate(timeout=60)[0]
    assert app["proc"].returncode == 0, rest[-2000:]
    assert "Traceback" not in rest
    assert not [p for p in tmp.iterdir() if p.name.startswith("text4seg_app_")]


def _type_into(selector: str, text: str) -> str:
    """JavaScript setting a Gradio textbox's value the way typing does (an input event for Svelte)."""
    return (
        f"(() => {{ const t = document.querySelector({selector!r}); t.value = {text!r}; "
        "t.dispatchEvent(new Event('input', {bubbles: true})); return true; })()"
    )


def _garbage(folder: Path) -> Path:
    path = folder / "garbage.png"
    path.write_bytes(os.urandom(300))
    return path


@pytest.mark.slow
def test_browser_shows_progress_while_generating_and_stop_cancels(tmp_path):
    """A slow fake model (one decoding step per 20 ms, 3000 steps) behind the real page: the page shows
    the token count as it goes, Stop ends the request at the next step, and the next request runs."""
    from text4seg.serving.app import ModelInfo, launch
    from text4seg.serving.segmenter import Segmenter, Watch

    watch = Watch()
    pred = SlowPredictor(watch, steps=3000)
    seg = Segmenter(pred, watch=watch)
    demo, url = launch(seg, ModelInfo(model="slow-fake"), "127.0.0.1", 0)
    out = shots_dir(tmp_path)
    img = tmp_path / "img.png"
    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(img)
    try:
        with Page(url, tmp_path / "profile", size=(1400, 1000)) as page:
            page.wait_for("!!document.querySelector('#upload input[type=file]')", timeout=120)
            page.set_files("#upload input[type=file]", [str(img)])
            page.wait_for("!!document.querySelector('#preview img')")
            page.js(_type_into("#expressions textarea", "cat"))
            page.js("document.querySelector('#submit').click()")
            shown = page.wait_for(
                "(document.body.innerText.match(/token \\d+ of ≤\\d+/) || [null])[0]", timeout=60
            )
            page.screenshot(out / "app_progress.png")
            page.js("document.querySelector('#stop').click()")
            page.wait_for("document.querySelector('#status textarea').value === 'stopped'", timeout=30)
            steps_at_stop = watch.step
            time.sleep(0.5)
            page.screenshot(out / "app_stopped.png")
        assert pred.finished == 0 and steps_at_stop < 3000 and watch.step <= steps_at_stop + 1
        assert re.fullmatch(r"token \d+ of ≤\d+", shown)
        pred.steps = 0
        assert seg.segment(str(img), "cat")[0]["expression"] == "cat"  # the model is free again
    finally:
        demo.close()
        seg.close()


class SlowPredictor:
    """Calls the app's ``watch`` once per decoding step (``steps`` steps of ``step_s`` s), then answers an
    all-``others`` 16x16 grid; ``finished`` counts the answers given."""

    refiner = None
    max_new_tokens = None

    def __init__(self, watch, steps: int = 3000, step_s: float = 0.02):
        self.watch, self.steps, self.step_s, self.finished = watch, steps, step_s, 0

    def generate(self, queries, constrained=False):
        for _ in range(self.steps):
            self.watch(None, None)
            time.sleep(self.step_s)
        self.finished += 1
        return [("Sure.\n<seg>" + "others *16\n" * 15 + "others *16</seg>", 70) for _ in queries]
