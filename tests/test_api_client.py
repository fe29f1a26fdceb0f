"""``text4seg predict --api``: request bodies and retries against a stdlib fake server, and for real against
``swift deploy`` serving the tiny LLaVA on 127.0.0.1 (same answers as in-process; resume after a kill)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from text4seg.cli import main
from text4seg.data.jsonl import read_jsonl
from text4seg.data.queries import Query
from text4seg.data.records import Sample, write_jsonl
from text4seg.data.rle import mask_to_rle
from text4seg.inference.api_client import REGEX_CAVEAT, ApiError, ApiPredictor

GRID = 4
BUDGET = 24


# ------------------------------------------------------------------------------- a fake chat server
class _Fake:
    """A chat server that fails the first ``fail`` requests with ``status`` and records every body."""

    def __init__(self, fail: int = 0, status: int = 503, owner: str = "vllm"):
        self.fail, self.status, self.owner, self.bodies = fail, status, owner, []
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, obj: dict):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, {"data": [{"id": "m", "owned_by": fake.owner}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.bodies.append(body)
                if fake.fail > 0:
                    fake.fail -= 1
                    return self._send(fake.status, {"error": "busy"})
                text = "<seg>" + "\n ".join(["others *4"] * GRID) + "\n</seg>"
                self._send(
                    200, {"choices": [{"message": {"content": text}}], "usage": {"completion_tokens": 7}}
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "img.png"
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(p)
    return str(p)


def _q(image, i=0, labels=("red circle",)):
    return Query(
        id=f"q{i}", image=image, question="Segment the red circle.", labels=list(labels), grid=(GRID, GRID)
    )


def test_transient_503_is_retried_and_the_record_matches_the_answer(image):
    fake = _Fake(fail=2, status=503)
    try:
        client = ApiPredictor(fake.url, retries=2, backoff=0.01, concurrency=2)
        recs = [r.to_json() for r in client.predict([_q(image, i) for i in range(3)])]
    finally:
        fake.close()
    assert sorted(r["id"] for r in recs) == ["q0", "q1", "q2"]
    assert all(r["parse_valid"] and r["pred_labels"] == [] and r["num_tokens"] == 7 for r in recs)
    assert len(fake.bodies) == 5  # 3 queries + 2 retried failures
    content = fake.bodies[0]["messages"][0]["content"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[1] == {"type": "text", "text": "Segment the red circle."}


def test_non_transient_http_error_stops_with_the_server_message(image):
    fake = _Fake(fail=1, status=400)
    try:
        client = ApiPredictor(fake.url, retries=3, backoff=0.01)
        with pytest.raises(ApiError, match="HTTP 400.*busy"):
            list(client.predict([_q(image)]))
    finally:
        fake.close()
    assert len(fake.bodies) == 1


def test_unreachable_server_fails_after_bounded_retries():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ApiPredictor(f"http://127.0.0.1:{port}", "m", server="vllm", retries=1, backoff=0.01)
    with pytest.raises(ApiError, match="failed after 2 tries"):
        client.ask(Query(id="x", image=__file__, question="q"))


def test_constrained_bodies_carry_the_regex_for_swift_and_the_grammar_for_vllm(image):
    said = []
    swift = ApiPredictor("http://h", "m", server="swift", constrained=True, log=said.append)
    b = swift.body(_q(image))
    assert b["structured_outputs_regex"] and "structured_outputs" not in b
    assert said == [f"api: {REGEX_CAVEAT}"]
    vllm = ApiPredictor("http://h", "m", server="vllm", constrained=True, log=said.append)
    assert set(vllm.body(_q(image))["structured_outputs"]) == {"grammar"}
    regex = ApiPredictor(
        "http://h", "m", server="vllm", constrained=True, structured="regex", log=said.append
    )
    assert regex.body(_q(image))["structured_outputs"] == {"regex": b["structured_outputs_regex"]}
    plain = ApiPredictor("http://h", "m", server="vllm").body(_q(image))
    assert "structured_outputs" not in plain and plain["temperature"] == 0


def test_predict_to_refuses_in_process_options_given_with_a_client(image, tmp_path):
    from text4seg.inference.run import predict_to

    client = ApiPredictor("http://127.0.0.1:9", "m", server="vllm", retries=0)
    with pytest.raises(ValueError, match="batch_size, constrained_engine apply to an in-process model"):
        predict_to(None, [_q(image)], tmp_path, client=client, batch_size=2, constrained_engine="own")
    assert not (tmp_path / "results.jsonl").exists()  # before: ignored, and the server was asked


def test_server_kind_and_model_name_come_from_v1_models(image):
    fake = _Fake(owner="swift")
    try:
        client = ApiPredictor(fake.url + "/v1")
        assert (client.served_model, client.server) == ("m", "swift")
    finally:
        fake.close()


def test_cli_needs_exactly_one_of_model_and_api(tmp_path, capsys):
    rc = main(["predict", "--image", __file__, "--query", "q", "--out", str(tmp_path)])
    assert rc == 2 and "exactly one of --model" in capsys.readouterr().err


# ------------------------------------------------------------------------------- swift deploy, for real
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Deploy:
    """``swift deploy`` of a model folder on a loopback port (transformers backend, CPU)."""

    def __init__(self, model, log_path, env):
        self.model, self.log_path, self.env = model, log_path, env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, wait_s: float = 150.0) -> None:
        """Start on a free port and wait for ``/v1/models``; ms-swift moves to the next port when the one
        asked for is taken, so the URL is read from uvicorn's start-up line in the log."""
        swift = shutil.which("swift", path=os.path.dirname(sys.executable))
        self.port = _free_port()
        cmd = [swift, "deploy", "--model", str(self.model), "--model_type", "llava1_5_hf"]
        cmd += ["--infer_backend", "transformers", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--served_model_name", "tiny", "--max_batch_size", "1"]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        # own session: `swift deploy` runs the server in a child process; stop() kills the whole group
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                m = re.search(rb"Uvicorn running on (http://127\.0\.0\.1:\d+)", fh.read())
            if m:
                self.url = m.group(1).decode()
                try:
                    urllib.request.urlopen(self.url + "/v1/models", timeout=2).read()
                    return
                except OSError:
                    pass
            time.sleep(0.5)
        self.stop()
        tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        pytest.fail(f"swift deploy did not come up on {self.url}:\n{tail}")

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
            self._log.close()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    pytest.importorskip("swift")
    if shutil.which("swift", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("no swift executable beside this Python")
    import torch

    root = tmp_path_factory.mktemp("api")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    env.setdefault("MODELSCOPE_CACHE", str(root / "ms"))
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")])
    with pytest.MonkeyPatch.context() as mp:
        for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "MODELSCOPE_CACHE"):
            mp.setenv(k, env[k])
        n = torch.get_num_threads()
        torch.set_num_threads(1)
        from text4seg.demo.model import make_tiny_llava

        model = make_tiny_llava(root / "llava")
        rng = np.random.default_rng(1)
        samples = []
        for i in range(6):
            img = root / f"img{i}.png"
            Image.fromarray(rng.integers(0, 255, (40 + 4 * i, 56, 3), dtype=np.uint8)).save(img)
            gt = np.zeros((40 + 4 * i, 56), bool)
            gt[5:20, 5 + i : 30] = True
            samples.append(
                Sample(
                    id=f"r{i}",
                    image=str(img),
                    width=56,
                    height=40 + 4 * i,
                    turns=[("Please segment the red circle.", "ok")],
                    task="res",
                    labels=["red circle"],
                    grid=(GRID, GRID),
                    masks=[mask_to_rle(gt)],
                )
            )
        jsonl = root / "built.jsonl"
        write_jsonl(samples, jsonl)
        server = _Deploy(model, root / "deploy.log", env)
        server.start()
        try:
            yield {"root": root, "model": model, "jsonl": jsonl, "server": server}
        finally:
            server.stop()
            torch.set_num_threads(n)


@pytest.fixture(scope="module")
def in_process(deployed):
    from text4seg.inference.run import predict_jsonl

    out = deployed["root"] / "local"
    predict_jsonl(
        deployed["model"], deployed["jsonl"], out, batch_size=1, max_new_tokens=BUDGET,
        model_type="llava1_5_hf", progress=False, overlays=False,
    )  # fmt: skip
    return {(r["id"], r["turn"]): r for r in read_jsonl(out / "results.jsonl")}


def _api_argv(deployed, out, concurrency=3):
    return [
        "predict", "--api", deployed["server"].url, "--served-model", "tiny",
        "--jsonl", str(deployed["jsonl"]), "--out", str(out), "--concurrency", str(concurrency),
        "--max-new-tokens", str(BUDGET),
        "--retries", "1", "--timeout", "60", "--no-progress",  # not --quiet (sets LOG_LEVEL process-wide)
    ]  # fmt: skip


@pytest.mark.slow
def test_swift_deploy_answers_equal_the_in_process_answers(deployed, in_process, tmp_path):
    assert main(_api_argv(deployed, tmp_path)) == 0
    got = {(r["id"], r["turn"]): r for r in read_jsonl(tmp_path / "results.jsonl")}
    assert set(got) == set(in_process) and len(got) == 6
    for key, rec in got.items():
        assert rec["answer"] == in_process[key]["answer"], key
        assert rec["coarse"] == in_process[key]["coarse"]
        assert rec["num_tokens"] == in_process[key]["num_tokens"]
    assert (tmp_path / got[("r0", 0)]["overlay"]).is_file()
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(tmp_path / "results.jsonl"),
                "--gt",
                str(deployed["jsonl"]),
                "--no-progress",
            ]
        )
        == 0
    )


@pytest.mark.slow
def test_killing_the_server_mid_run_then_rerunning_resumes_without_duplicates_or_loss(
    deployed, in_process, tmp_path
):
    server = deployed["server"]
    results = tmp_path / "results.jsonl"
    rc = []
    t = threading.Thread(target=lambda: rc.append(main(_api_argv(deployed, tmp_path, concurrency=2))))
    t.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and t.is_alive():
        if results.exists() and results.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.05)
    server.stop()
    t.join(120)
    assert not t.is_alive()
    first = results.read_bytes().count(b"\n")
    assert rc == [2] and 1 <= first < 6  # the run stopped with an error line after some flushed records
    server.start()
    assert main(_api_argv(deployed, tmp_path)) == 0
    keys = [(r["id"], r["turn"]) for r in read_jsonl(results)]
    assert len(keys) == len(set(keys)) == 6
    for rec in read_jsonl(results):
        assert rec["answer"] == in_process[(rec["id"], rec["turn"])]["answer"]
