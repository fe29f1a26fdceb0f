"""``text4seg app``: the HTTP API and the page, driven in headless chromium, against the in-process path."""

from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("swift")

from support.browser import Page, shots_dir  # noqa: E402
from support.offline import offline, one_torch_thread  # noqa: E402

from text4seg.data.records import read_jsonl  # noqa: E402
from text4seg.data.rle import rle_to_mask  # noqa: E402

GRID = 4
BUDGET = 60
EXPR = "red circle"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app over a tiny LLaVA on 127.0.0.1 (a free port), plus the in-process prediction of one image."""
    from text4seg.demo.model import make_tiny_llava
    from text4seg.inference.predict import Predictor, predict_image
    from text4seg.serving.app import DEFAULT_TEMPLATE, Segmenter, serve

    root = tmp_path_factory.mktemp("app")
    with one_torch_thread(), offline(root):
        model = make_tiny_llava(root / "llava")
        img = root / "shapes.png"
        a = np.full((96, 128, 3), 235, np.uint8)
        yy, xx = np.mgrid[:96, :128]
        a[(yy - 40) ** 2 + (xx - 45) ** 2 < 22**2] = (220, 30, 30)
        a[55:90, 80:120] = (30, 60, 200)
        Image.fromarray(a).save(img)
        ref = predict_image(
            model, img, DEFAULT_TEMPLATE.format(target=EXPR), root / "ref", labels=[EXPR], grid=(GRID, GRID),
            constrained=True, max_new_tokens=BUDGET, model_type="llava1_5_hf", progress=False, overlays=False,
        )  # fmt: skip
        (ref_rec,) = read_jsonl(ref)
        predictor = Predictor(model, max_new_tokens=BUDGET, model_type="llava1_5_hf")
        seg = Segmenter(predictor, (GRID, GRID))
        server = serve(seg, "127.0.0.1", 0)
        t = threading.Thread(target=server.serve_forever, daemon=True)
        t.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            yield {"root": root, "url": url, "image": img, "ref": ref_rec}
        finally:
            server.shutdown()
            server.server_close()
            seg.close()


def _post(url: str, body: dict):
    req = urllib.request.Request(
        url + "/api/segment", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def _png_mask(data_url: str) -> np.ndarray:
    raw = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw))) > 127


def test_api_mask_answer_and_repairs_equal_the_in_process_prediction(app):
    url = "data:image/png;base64," + base64.b64encode(app["image"].read_bytes()).decode()
    code, out = _post(app["url"], {"image": url, "expressions": [EXPR], "constrained": True})
    assert code == 200
    (r,) = out["results"]
    ref = app["ref"]
    assert r["answer"] == ref["answer"] and r["repairs"] == ref["repairs"]
    assert r["parse_valid"] is True  # constrained decoding
    assert np.array_equal(_png_mask(r["mask"]), rle_to_mask(ref["coarse"]))
    assert r["refined_mask"] is None


def test_bad_requests_get_one_line_errors_not_tracebacks(app):
    code, out = _post(app["url"], {"image": "data:image/png;base64,AAAA", "expressions": [EXPR]})
    assert (
        code == 400 and out["error"].startswith("the upload") and "not an image PIL can read" in out["error"]
    )
    code, out = _post(app["url"], {"image": "http://x/y.png", "expressions": [EXPR]})
    assert code == 400 and "data:image" in out["error"]
    url = "data:image/png;base64," + base64.b64encode(app["image"].read_bytes()).decode()
    code, out = _post(app["url"], {"image": url, "expressions": [EXPR], "refine": True})
    assert code == 400 and "--sam-checkpoint" in out["error"]


@pytest.mark.slow
def test_browser_upload_type_submit_shows_the_in_process_mask(app, tmp_path):
    with Page(app["url"], tmp_path / "profile") as page:
        # the tab may still show about:blank at first; /health then disables the SAM switch (no SAM here)
        page.wait_for("!!document.getElementById('refine') && document.getElementById('refine').disabled")
        page.set_files("#image", [str(app["image"])])
        page.wait_for("document.getElementById('preview').src.startsWith('data:image')")
        page.js(
            f"document.getElementById('expressions').value = {json.dumps(EXPR + chr(10) + 'blue square')}"
        )
        page.js("document.getElementById('constrained').checked = true")
        page.js("document.getElementById('submit').click()")
        state = page.wait_for(
            "['done', 'error'].includes(document.getElementById('results').dataset.state) && "
            "document.getElementById('results').dataset.state"
        )
        assert state == "done", page.js("document.getElementById('status').textContent")
        assert page.js("document.querySelectorAll('.card').length") == 2
        mask = _png_mask(page.js("document.querySelector('.card .mask-download').href"))
        answer = page.js("document.querySelector('.card pre.answer').textContent")
        shot = page.screenshot(shots_dir(tmp_path) / "app.png")
    assert answer == app["ref"]["answer"]
    assert np.array_equal(mask, rle_to_mask(app["ref"]["coarse"]))
    assert Image.open(shot).size[0] >= 1000
