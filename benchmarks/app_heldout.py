"""The web app scored on the demo's held-out split: does ``text4seg app`` reproduce the demo's numbers?

Starts ``text4seg app --model CKPT --port 0`` (no other flag: scheme, grid, question template and label
bias come from the checkpoint's ``text4seg.json``) in a subprocess, asks it every held-out row through
``gradio_client`` as a user would (the image, the row's label as the expression, the page's defaults),
turns each answer into a result record (:func:`text4seg.inference.answer.query_record`, the step every
predictor shares), scores them with ``text4seg evaluate`` and prints them beside the demo's own
``metrics.json``, with the number of answers identical to the demo's ``pred/test_greedy`` (or
``test_constrained``) results.

    text4seg demo --out demo_out                       # the full demo (about 10 CPU minutes)
    .venv/bin/python benchmarks/app_heldout.py --demo demo_out [--constrained] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from text4seg.data.jsonl import read_jsonl  # noqa: E402
from text4seg.data.queries import queries_from_row  # noqa: E402
from text4seg.evaluation.evaluate import evaluate  # noqa: E402
from text4seg.inference.answer import query_record  # noqa: E402

KEYS = ("ciou", "giou", "n_acc", "t_acc", "parse_valid")


def checkpoint(demo: Path) -> Path:
    """The demo's trained checkpoint (the one holding ``text4seg.json``)."""
    found = sorted(
        demo.glob("train/checkpoint-*/text4seg.json"), key=lambda p: int(p.parent.name.split("-")[1])
    )
    if not found:
        raise SystemExit(
            f"{demo}: no train/checkpoint-*/text4seg.json (run `text4seg demo --out {demo}` first)"
        )
    return found[-1].parent


def start_app(model: Path, tmp: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TMPDIR=str(tmp))
    cmd = [sys.executable, "-m", "text4seg.cli", "app", "--model", str(model), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 600
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"text4seg app: (http://\S+/)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise SystemExit("the app printed no URL:\n" + "".join(seen[-20:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, required=True, help="a `text4seg demo --out` folder")
    ap.add_argument("--split", default="test")
    ap.add_argument("--constrained", action="store_true", help="tick the page's constrained decoding")
    ap.add_argument("--limit", type=int, default=None, help="the first N rows only")
    args = ap.parse_args()
    from gradio_client import Client, handle_file

    ckpt = checkpoint(args.demo)
    gt = args.demo / "data" / f"{args.split}.jsonl"
    rows = list(read_jsonl(gt))[: args.limit]
    mode = "constrained" if args.constrained else "greedy"
    ref_results = args.demo / "pred" / f"{args.split}_{mode}" / "results.jsonl"
    ref = (
        {(r["id"], r["turn"]): r["answer"] for r in read_jsonl(ref_results)} if ref_results.is_file() else {}
    )
    with tempfile.TemporaryDirectory(prefix="app_heldout_") as tmp:
        tmp = Path(tmp)
        proc, url = start_app(ckpt, tmp)
        try:
            client = Client(url, verbose=False)
            t0 = time.perf_counter()
            out = tmp / "results.jsonl"
            same = n = 0
            with open(out, "w", encoding="utf-8") as fh:
                for k, row in enumerate(rows):
                    for q in queries_from_row(row, None, k):
                        (expression,) = q.labels
                        _, _, details, _ = client.predict(
                            handle_file(q.image),
                            expression,
                            "",
                            args.constrained,
                            False,
                            0,
                            api_name="/segment",
                        )
                        (d,) = details
                        if d["question"] != q.question:
                            raise SystemExit(
                                f"row {q.id}: the app asked {d['question']!r}, the row {q.question!r}"
                            )
                        rec = query_record(q, d["answer"], d["num_tokens"], None, False, args.constrained)
                        fh.write(json.dumps(rec.to_json()) + "\n")
                        same += ref.get(q.key) == d["answer"]
                        n += 1
            seconds = time.perf_counter() - t0
            metrics = evaluate(out, gt)
        finally:
            proc.terminate()
            proc.wait(60)
    demo = json.loads((args.demo / "metrics.json").read_text())
    suffix = "_constrained" if args.constrained else ""
    print(f"app on {ckpt} ({mode}), {n} queries of {gt} in {seconds:.0f} s")
    print(f"  {'metric':12s} {'app':>8s} {'demo':>8s}")
    for key in KEYS:
        got = metrics.get(key, ((metrics.get("referring") or {}).get("coarse") or {}).get(key))
        want = demo.get(key + suffix) if args.limit is None else None
        print(f"  {key:12s} {got if got is None else f'{got:8.4f}'} {'' if want is None else f'{want:8.4f}'}")
    if ref:
        print(f"answers identical to the demo's {ref_results}: {same}/{n}")


if __name__ == "__main__":
    main()
