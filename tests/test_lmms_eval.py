"""lmms-eval tasks (lmms_tasks/, docs/lmms-eval.md) score masks exactly as ``text4seg evaluate`` does.

The real ``lmms-eval`` entry point of the separate environment ``.venv-lmms`` (``make lmms-venv``; lmms-eval
pins packages that would break the main environment) runs ``text4seg_refcoco_val`` on a JSONL built by
``text4seg build`` from a tiny synthetic REFER fixture, against lmms-eval's ``openai`` backend pointed at a
tiny OpenAI-compatible server on 127.0.0.1 (a thread here) that answers from a table keyed by question:
perfect, partial, empty and unparsable answers. The same answers go through ``text4seg decode`` and
``text4seg evaluate``; cIoU, gIoU, N-acc, T-acc and the strict-parse share must agree to 1e-9.
Offline: HF_HUB_OFFLINE/HF_DATASETS_OFFLINE, a private HF cache, data read by ``dataset_path: json``.

Locally the test skips when ``.venv-lmms`` is absent; under ``TEXT4SEG_REQUIRE_EXTRAS=1`` (``make test``) it
fails instead (CI builds the environment with ``make lmms-venv`` first).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from support.fakes import make_refer
from support.hostile import REPO, cli

LMMS_VENV = REPO / ".venv-lmms"
LMMS_EVAL = LMMS_VENV / "bin" / "lmms-eval"
LMMS_STAMP = LMMS_VENV / ".installed"  # written last by `make lmms-venv`: a half-built environment is absent
REQUIRE = os.environ.get("TEXT4SEG_REQUIRE_EXTRAS", "") not in ("", "0")
TASK = "text4seg_refcoco_val"
METRICS = ("ciou", "giou", "n_acc", "t_acc", "parse_valid")

pytest.importorskip("pycocotools")


def _need_lmms_env() -> None:
    if LMMS_STAMP.exists() and LMMS_EVAL.exists():
        return
    why = f"{LMMS_STAMP} is absent: build it with `make lmms-venv` (lmms-eval 0.7.3 in its own environment)"
    if REQUIRE:
        pytest.fail(f"TEXT4SEG_REQUIRE_EXTRAS: {why}", pytrace=False)
    pytest.skip(why)


# ------------------------------------------------------------------------------- the fake model server
class _Answers(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions``: the answer of the request's question text, from ``server.answers``."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        content = body["messages"][-1]["content"]
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        text = "".join(p.get("text", "") for p in parts if p.get("type") == "text")
        images = sum(p.get("type") == "image_url" for p in parts)
        self.server.seen.append({"question": text, "images": images})
        answer = self.server.answers.get(text)
        if answer is None:
            self.send_error(404, f"no answer for {text!r}")
            return
        reply = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def answer_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    server.answers, server.seen = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------ fixture
def _question(row: dict) -> str:
    return " ".join(row["messages"][0]["content"].replace("<image>", " ").split())


def _answers(rows: list[dict]) -> list[str]:
    """One answer per row, cycling through the kinds: partial, perfect, empty, unparsable, repaired (row 0,
    the fixture's no-target row, gets the partial answer: a false positive on an empty ground truth)."""
    kinds = []
    for i, row in enumerate(rows):
        ref = row["messages"][1]["content"]
        head, body = ref.split("<seg>", 1)
        lines = body.removesuffix("</seg>").split("\n")
        label = row["text4seg"]["labels"][0]
        kind = (i + 1) % 5
        if kind == 0:  # perfect: the reference answer
            kinds.append(ref)
        elif kind == 1:  # partial: the top half of the image claimed as the target, the rest background
            half = [f"{label} *16"] * 8 + ["others *16"] * 8
            kinds.append(head + "<seg>" + "\n ".join(half) + "</seg>")
        elif kind == 2:  # empty: every cell background (the model's rejection)
            kinds.append("No such object.\n<seg>" + "\n ".join(["others *16"] * 16) + "</seg>")
        elif kind == 3:  # unparsable: prose, no descriptors at all
            kinds.append("I am sorry, I cannot help with that request.")
        else:  # truncated mid-answer: the lenient parser repairs it (not a strict parse)
            kinds.append(head + "<seg>" + "\n".join(lines[:10]) + f"\n {label} *16")
    return kinds


def _build(tmp_path: Path) -> tuple[Path, list[dict]]:
    """The task folder copied into ``tmp_path`` with ``text4seg_data/refcoco_val.jsonl`` built beside it."""
    make_refer(
        tmp_path / "refer", "refcoco", "unc", n_images=4, refs_per_image=2, sents_per_ref=1,
        splits=("val",), image_size=(48, 64), degenerate=True,
    )  # fmt: skip
    tasks = tmp_path / "tasks"
    shutil.copytree(REPO / "lmms_tasks", tasks, ignore=shutil.ignore_patterns("__pycache__", "text4seg_data"))
    built = tasks / "text4seg_data" / "refcoco_val.jsonl"
    built.parent.mkdir()
    args = ["build", "refcoco", "--root", tmp_path / "refer", "--split", "val", "--out", built, "--no-stats"]
    proc = cli([*args, "--quiet", "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(x) for x in built.read_text().splitlines()]
    return built, rows


def _lmms_eval(tmp_path: Path, port: int) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "lmms_out"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "TEXT4SEG_DEBUG"))
    }
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        LMMS_EVAL_DATASETS_CACHE=str(tmp_path / "hf" / "datasets"),
        OPENAI_API_KEY="EMPTY",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        TOKENIZERS_PARALLELISM="false",
    )
    model_args = (
        f"model=fake,base_url=http://127.0.0.1:{port}/v1,api_key=EMPTY,max_retries=1,num_concurrent=2"
    )
    cmd = [str(LMMS_EVAL), "--model", "openai", "--model_args", model_args, "--tasks", TASK]
    cmd += ["--include_path", str(tmp_path / "tasks"), "--output_path", str(out), "--batch_size", "1"]
    cmd += ["--verbosity", "WARNING"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    found = sorted(out.rglob("*results*.json"))
    assert found, (list(out.rglob("*")), proc.stdout[-2000:])
    return proc, json.loads(found[-1].read_text())


def _text4seg_evaluate(tmp_path: Path, built: Path, rows: list[dict], answers: list[str]) -> dict:
    """``text4seg decode`` + ``text4seg evaluate`` of the same answers (rows keep their text4seg block)."""
    pred = tmp_path / "answers.jsonl"
    pred.write_text("".join(json.dumps({**row, "response": a}) + "\n" for row, a in zip(rows, answers)))
    for args in (
        ["decode", pred, "--out", tmp_path / "dec"],
        ["evaluate", "--pred", tmp_path / "dec" / "decoded.jsonl", "--gt", built, "--out", tmp_path / "ev"],
    ):
        proc = cli([*args, "--no-progress"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == len(rows) and metrics["missing"] == 0 and metrics["unmatched"] == 0
    return {**metrics["referring"]["coarse"], "parse_valid": metrics["parse_valid"]}


def _printed(stdout: str, metric: str) -> float | None:
    """The value lmms-eval's printed results table gives ``metric`` of :data:`TASK`."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if metric in cells and any(c.startswith(TASK) for c in cells):
            value = cells[cells.index(metric) + 2]
            return None if value in ("", "None", "N/A") else float(value)
    raise AssertionError(f"no {metric} row for {TASK} in lmms-eval's output:\n{stdout[-3000:]}")


@pytest.mark.slow
def test_lmms_eval_task_prints_the_same_referring_scores_as_text4seg_evaluate(tmp_path, answer_server):
    _need_lmms_env()
    built, rows = _build(tmp_path)
    questions = [_question(r) for r in rows]
    assert len(set(questions)) == len(rows) >= 5, questions  # the server keys answers by question
    answers = _answers(rows)
    answer_server.answers = dict(zip(questions, answers))
    gt_empty = [r["text4seg"]["gt"]["masks"][0]["counts"] for r in rows]
    want = _text4seg_evaluate(tmp_path, built, rows, answers)
    assert want["n_no_target"] >= 1 and want["n_targeted"] >= 1, gt_empty  # N-acc and T-acc both defined
    assert want["n_acc"] == 0 and 0 < want["t_acc"] < 1, want  # the no-target row got a non-empty answer
    assert 0 < want["ciou"] < 1 and 0 < want["giou"] < 1 and 0 < want["parse_valid"] < 1, want

    proc, results = _lmms_eval(tmp_path, answer_server.server_address[1])

    assert sorted(s["question"] for s in answer_server.seen) == sorted(questions)  # the training template
    assert all(s["images"] == 1 for s in answer_server.seen)
    got = results["results"][TASK]
    for m in METRICS:
        value = got[f"{m},none"]
        assert value == pytest.approx(want[m], abs=1e-9, rel=0), (m, value, want[m])
        printed = _printed(proc.stdout, m)
        assert printed == pytest.approx(want[m], abs=6e-5), (m, printed, want[m])
    assert results["n-samples"][TASK]["effective"] == len(rows)


def test_task_hooks_score_each_answer_kind_like_the_library_metrics(tmp_path):
    """The hooks in-process (no lmms-eval needed): per-sample statistics equal mask_stats of the decoded
    answer, and the aggregations equal aggregate_referring over the same rows."""
    import importlib.util

    from text4seg.data.rle import rle_to_mask
    from text4seg.descriptors import decode, grid_to_mask
    from text4seg.evaluation.metrics import aggregate_referring, mask_stats

    spec = importlib.util.spec_from_file_location("lmms_task_utils", REPO / "lmms_tasks" / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    _, rows = _build(tmp_path)
    answers = _answers(rows)
    items = []
    for row, answer in zip(rows, answers):
        out = utils.text4seg_process_results(row, [answer])
        assert set(out) == set(METRICS) and len({id(v) for v in out.values()}) == 1
        gt = rle_to_mask(row["text4seg"]["gt"]["masks"][0])
        pred = grid_to_mask(decode(answer, 16).grid, *gt.shape)
        assert {k: out["ciou"][k] for k in ("inter", "union", "iou")} == {
            k: mask_stats(pred, gt)[k] for k in ("inter", "union", "iou")
        }
        items.append(out["ciou"])
    want = aggregate_referring(items)
    assert utils.text4seg_ciou(items) == want["ciou"] and utils.text4seg_giou(items) == want["giou"]
    assert utils.text4seg_n_acc(items) == want["n_acc"] and utils.text4seg_t_acc(items) == want["t_acc"]
    assert utils.text4seg_doc_to_text(rows[0]) == _question(rows[0])
    target = utils.text4seg_doc_to_text(rows[0], {"question_template": "Please segment {target}."})
    assert target == f"Please segment {rows[0]['text4seg']['asked'][0]}."
    assert np.asarray(utils.text4seg_doc_to_visual(rows[0])[0]).shape == (48, 64, 3)


def test_task_hooks_refuse_a_row_without_ground_truth_naming_its_id(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("lmms_task_utils", REPO / "lmms_tasks" / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    _, rows = _build(tmp_path)
    bad = json.loads(json.dumps(rows[0]))
    bad["text4seg"]["gt"]["masks"] = []
    with pytest.raises(ValueError, match=r"id 'refcoco/val/.*text4seg\.gt\.masks: expected one mask"):
        utils.text4seg_process_docs([rows[1], bad])
    two = json.loads(json.dumps(rows[0]))
    two["messages"] += [{"role": "user", "content": "again?"}, {"role": "assistant", "content": "x"}]
    with pytest.raises(ValueError, match="2 user turns"):
        utils.text4seg_process_docs([two])
    with pytest.raises(ValueError, match="question_template"):
        utils.text4seg_doc_to_text(rows[0], {"question_template": "Segment {expression}."})
