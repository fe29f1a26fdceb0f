"""predict -> evaluate end to end on a tiny random LLaVA (ms-swift TransformersEngine) and a tiny SAM."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("swift")
pytest.importorskip("segment_anything")

from support.offline import offline, one_torch_thread  # noqa: E402

from text4seg import decode  # noqa: E402
from text4seg.data.queries import load_queries  # noqa: E402
from text4seg.data.records import Sample, write_jsonl  # noqa: E402
from text4seg.data.results import RECORD_KEYS, finished_keys  # noqa: E402
from text4seg.data.rle import mask_to_rle, rle_to_mask  # noqa: E402
from text4seg.inference.predict import Predictor, predict_queries  # noqa: E402

GRID = 4  # small grids keep the random model's forced answers short
BUDGET = 80


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: several times faster than two on a shared 2-core CPU (restored afterwards)."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny LLaVA and a built JSONL written by the record writer (row s0: two turns; s1: no target)."""
    root = tmp_path_factory.mktemp("predict")
    with offline(root):  # restored when the module's tests are done
        from text4seg.demo.model import make_tiny_llava

        model = make_tiny_llava(root / "llava")
        rng = np.random.default_rng(0)
        samples = []
        for i, (h, w) in enumerate([(48, 80), (80, 48)]):
            img = root / f"img{i}.png"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img)
            gt = np.zeros((h, w), bool)
            gt[10:30, 10:30] = i == 0  # row 1's target is absent (no-target sample)
            turns = 2 if i == 0 else 1
            samples.append(
                Sample(
                    id=f"s{i}",
                    image=str(img),
                    width=w,
                    height=h,
                    turns=[("Please segment the red circle.", "ok")] * turns,
                    task="gres",
                    labels=["red circle"],
                    grid=(GRID, GRID),
                    masks=[mask_to_rle(gt)] * turns,
                )
            )
        jsonl = root / "built.jsonl"
        write_jsonl(samples, jsonl)
        yield {"root": root, "model": model, "jsonl": jsonl}


@pytest.fixture(scope="module")
def predictor(env):
    from support.sam import make_tiny_sam

    from text4seg.inference.refine import Refiner

    return Predictor(
        env["model"],
        batch_size=2,
        max_new_tokens=BUDGET,
        constrained=True,
        constrained_engine="own",  # closes answers within BUDGET (xgrammar: tests/test_xgr_predict.py)
        sam=Refiner(make_tiny_sam()),
        model_type="llava1_5_hf",
    )


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_one_query_per_user_turn(env):
    qs = load_queries(env["jsonl"])
    assert [q.key for q in qs] == [("s0", 0), ("s0", 1), ("s1", 0)]
    assert qs[0].question == "Please segment the red circle." and qs[0].grid == (GRID, GRID)


def test_constrained_predict_parses_strictly_and_embeds_each_image_once(env, predictor, tmp_path):
    res = predict_queries(predictor, load_queries(env["jsonl"]), tmp_path, progress=False)
    recs = _lines(res)
    assert len(recs) == 3
    for r in recs:
        decode(r["answer"], GRID, strict=True)  # raises if not
        assert r["parse_valid"] and r["constrained"] and 0 < r["num_tokens"] <= BUDGET
        assert set(r["pred_labels"]) <= {"red circle"}
        coarse = rle_to_mask(r["coarse"])
        assert coarse.shape == (r["height"], r["width"])
        assert (r["refined"] is None) or rle_to_mask(r["refined"]).shape == coarse.shape
        assert (tmp_path / r["overlay"]).is_file()
        assert tuple(r) == RECORD_KEYS
        if r["refined"] is not None:  # per-label refined masks, disjoint, their union is "refined"
            assert set(r["refined_labels"]) == set(r["pred_labels"])
            union = np.zeros(coarse.shape, bool)
            for m in r["refined_labels"].values():
                assert not (union & rle_to_mask(m)).any()
                union |= rle_to_mask(m)
            assert (union == rle_to_mask(r["refined"])).all()
    refined_images = {r["image"] for r in recs if rle_to_mask(r["coarse"]).any()}
    assert predictor.refiner.encoder_passes == len(refined_images)  # one encoder pass per image


def test_resume_skips_finished_samples_and_drops_a_partial_line(env, predictor, tmp_path):
    qs = load_queries(env["jsonl"])
    first = next(iter(predictor.predict(qs[:1], tmp_path, overlays=False)))
    crashed = json.dumps(first.to_json()) + "\n" + '{"id": "s0", "tu'  # a crash mid-line
    (tmp_path / "results.jsonl").write_text(crashed)
    assert finished_keys(tmp_path / "results.jsonl") == {("s0", 0)}
    res = predict_queries(predictor, qs, tmp_path, overlays=False, progress=False)
    assert [(r["id"], r["turn"]) for r in _lines(res)] == [("s0", 0), ("s0", 1), ("s1", 0)]
    predict_queries(predictor, qs, tmp_path, overlays=False, progress=False)  # nothing left to do
    assert len(_lines(res)) == 3


def test_unconstrained_random_model_answers_are_repaired_not_fatal(env, predictor, tmp_path):
    qs = load_queries(env["jsonl"])[:2]
    recs = list(predictor.predict(qs, tmp_path, overlays=False, constrained=False))
    assert all(not r.constrained for r in recs)
    assert not all(r.parse_valid for r in recs)  # random weights write garbage
    assert all(r.repairs for r in recs if not r.parse_valid)


def test_cli_predict_then_evaluate_end_to_end(env, tmp_path, capsys):
    from text4seg.cli import main

    out = tmp_path / "run"
    argv = [
        "predict",
        "--model",
        str(env["model"]),
        "--model-type",
        "llava1_5_hf",
        "--jsonl",
        str(env["jsonl"]),
        "--out",
        str(out),
        "--constrained",
        "--constrained-engine",
        "own",
        "--max-new-tokens",
        str(BUDGET),
        "--batch-size",
        "3",
    ]
    assert main(argv) == 0
    assert main(["evaluate", "--pred", str(out / "results.jsonl"), "--gt", str(env["jsonl"])]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 3 and m["parse_valid"] == 1.0
    c = m["referring"]["coarse"]
    assert c["n_no_target"] == 1 and c["n_targeted"] == 2 and 0.0 <= c["giou"] <= 1.0
    assert "ciou" in capsys.readouterr().out


def test_predict_jsonl_one_call_with_shard_and_limit(env, tmp_path):
    from text4seg.inference.predict import predict_jsonl

    res = predict_jsonl(
        env["model"],
        env["jsonl"],
        tmp_path,
        batch_size=2,
        max_new_tokens=BUDGET,
        constrained=True,
        constrained_engine="own",
        limit=1,
        shard="1/2",
        progress=False,
        model_type="llava1_5_hf",
    )
    recs = _lines(res)
    assert [(r["id"], r["turn"]) for r in recs] == [("s1", 0)] and recs[0]["parse_valid"]
    assert recs[0]["refined"] is None  # no SAM given


def test_predict_jsonl_passes_extra_logits_processors_to_generate(env, tmp_path):
    from text4seg.inference.predict import predict_jsonl

    class Counting:
        calls = 0

        def __call__(self, input_ids, scores):
            Counting.calls += 1
            return scores

    res = predict_jsonl(
        env["model"],
        env["jsonl"],
        tmp_path,
        max_new_tokens=4,
        limit=1,
        logits_processors=[Counting()],
        overlays=False,
        progress=False,
        model_type="llava1_5_hf",
    )
    assert Counting.calls == _lines(res)[0]["num_tokens"] > 0  # called once per generated token


def test_cli_constrained_single_image_needs_a_label(tmp_path, capsys):
    from text4seg.cli import main

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    argv = [
        "predict",
        "--model",
        "M",
        "--image",
        str(tmp_path / "a.png"),
        "--query",
        "Segment the dog.",
        "--constrained",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    assert "--label" in capsys.readouterr().err


def test_kv_cache_switched_off_by_training_is_switched_back_on():
    from types import SimpleNamespace as NS

    from text4seg.inference.engine import enable_kv_cache

    text = NS(use_cache=False)
    model = NS(config=NS(text_config=text), generation_config=NS(use_cache=False))
    engine = NS(model=model, generation_config=NS(use_cache=False))
    enable_kv_cache(engine)
    assert text.use_cache and model.generation_config.use_cache and engine.generation_config.use_cache


def test_decode_of_predicted_answers_writes_the_same_record_schema_and_masks(env, predictor, tmp_path):
    from text4seg.inference.decode import decode_jsonl

    qs = load_queries(env["jsonl"])
    res = predict_queries(predictor, qs, tmp_path / "pred", overlays=False, progress=False)
    decode_jsonl(res, tmp_path / "dec", grid=(GRID, GRID))  # predict's records as foreign answers
    predicted, decoded = _lines(res), _lines(tmp_path / "dec" / "decoded.jsonl")
    assert [tuple(r) for r in decoded] == [tuple(r) for r in predicted] == [RECORD_KEYS] * len(qs)
    for p, d in zip(predicted, decoded):
        assert (d["answer"], d["image"], d["coarse"]) == (p["answer"], p["image"], p["coarse"])


def test_quiet_silences_ms_swift_info_lines(env, tmp_path):
    import subprocess
    import sys

    Image.new("RGB", (40, 32)).save(tmp_path / "a.png")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child_env = {**os.environ, "PYTHONPATH": repo, "HF_HUB_OFFLINE": "1", "HF_HOME": str(env["root"] / "hf")}
    child_env.pop("LOG_LEVEL", None)
    out = {}
    for flag in ("", "--quiet"):
        argv = [sys.executable, "-m", "text4seg.cli", "predict", "--model", str(env["model"])]
        argv += ["--model-type", "llava1_5_hf", "--image", str(tmp_path / "a.png"), "--query", "Segment it."]
        argv += ["--grid", str(GRID), "--max-new-tokens", "8", "--out", str(tmp_path / f"o{flag}")]
        proc = subprocess.run(argv + ([flag] if flag else []), capture_output=True, text=True, env=child_env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[flag] = proc.stdout + proc.stderr
    assert "[INFO:swift]" in out[""]
    assert "[INFO:swift]" not in out["--quiet"] and "results: " in out["--quiet"]
