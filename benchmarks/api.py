"""Throughput of ``text4seg predict --api`` against ``swift deploy`` (tiny LLaVA, CPU, transformers backend).

Starts ``swift deploy`` on 127.0.0.1 (a free port; its own process group, killed at the end), then runs
:class:`text4seg.inference.api_client.ApiPredictor` on the same N queries at concurrency 1 and 4 (no
overlays, no SAM; one warm-up query first) and prints samples/s and the ratio. On CPU with a 2-core
machine the server's batching (``--max_batch_size``) is what concurrency can buy.

    .venv/bin/python benchmarks/api.py [--n 16] [--max-new-tokens 48] [--max-batch-size 4]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from text4seg.data.queries import Query  # noqa: E402
from text4seg.inference.api_client import ApiPredictor  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deploy(model: Path, log: Path, max_batch_size: int, wait_s: float = 300.0):
    swift = shutil.which("swift", path=os.path.dirname(sys.executable)) or "swift"
    cmd = [swift, "deploy", "--model", str(model), "--model_type", "llava1_5_hf", "--infer_backend"]
    cmd += ["transformers", "--host", "127.0.0.1", "--port", str(_free_port()), "--served_model_name", "tiny"]
    cmd += ["--max_batch_size", str(max_batch_size)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    fh = open(log, "ab")  # noqa: SIM115 (the server's log for its lifetime)
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < wait_s and proc.poll() is None:
        m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if m:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(m.group(1) + "/v1/models", timeout=2).read()
                return proc, m.group(1), time.monotonic() - t0
        time.sleep(0.5)
    stop(proc)
    raise SystemExit(f"swift deploy did not start; log: {log}")


def stop(proc) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="queries per run")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--max-batch-size", type=int, default=4, help="swift deploy --max_batch_size")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    from text4seg.demo.model import make_tiny_llava

    tmp = Path(tempfile.mkdtemp(prefix="t4s_api_bench_"))
    model = make_tiny_llava(tmp / "llava")
    rng = np.random.default_rng(0)
    queries = []
    for i in range(args.n):
        p = tmp / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(p)
        queries.append(
            Query(id=f"q{i}", image=str(p), question="Please segment the red circle.", grid=(16, 16))
        )
    proc, url, start_s = deploy(model, tmp / "deploy.log", args.max_batch_size)
    try:
        print(
            f"api benchmark: tiny LLaVA, swift deploy --infer_backend transformers (CPU, max_batch_size "
            f"{args.max_batch_size}), {args.n} queries x {args.max_new_tokens} new tokens; "
            f"deploy start-up {start_s:.1f} s; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
        )
        rates = {}
        for c in args.concurrency:
            client = ApiPredictor(url, "tiny", concurrency=c, max_new_tokens=args.max_new_tokens, log=None)
            list(client.predict(queries[:1], overlays=False))  # warm-up
            t0 = time.perf_counter()
            recs = list(client.predict(queries, overlays=False))
            dt = time.perf_counter() - t0
            toks = sum(r["num_tokens"] or 0 for r in recs)
            rates[c] = len(recs) / dt
            print(f"  concurrency {c}: {rates[c]:.2f} samples/s, {toks / dt:.0f} tokens/s ({dt:.1f} s)")
        if len(rates) > 1:
            lo, hi = min(rates), max(rates)
            print(f"  concurrency {hi} / {lo}: {rates[hi] / rates[lo]:.2f}x")
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
