"""predict -> evaluate end to end on a tiny random LLaVA (ms-swift TransformersEngine) and a tiny SAM."""

from __future__ import annotations

import json
import os
import re

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
    from text4seg.inference.run import predict_jsonl

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
    from text4seg.inference.run import predict_jsonl

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


def _predict_cli(env, tmp_path, name: str, *flags: str):
    """``text4seg predict`` on the fixture's built JSONL in a fresh process; its whole output."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child_env = {**os.environ, "PYTHONPATH": repo, "HF_HUB_OFFLINE": "1", "HF_HOME": str(env["root"] / "hf")}
    for var in ("LOG_LEVEL", "PYTHONWARNINGS", "TRANSFORMERS_VERBOSITY"):
        child_env.pop(var, None)
    argv = [sys.executable, "-m", "text4seg.cli", "predict", "--model", str(env["model"])]
    argv += ["--model-type", "llava1_5_hf", "--jsonl", str(env["jsonl"]), "--max-new-tokens", "8"]
    argv += ["--out", str(tmp_path / name), *flags]
    proc = subprocess.run(argv, capture_output=True, env=child_env, timeout=600)  # bytes: "\r" kept
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert proc.returncode == 0, out[-2000:]
    return out


def _shown_lines(out: str) -> int:
    """Lines as a terminal shows them: a progress bar redrawn with ``\\r`` is one line."""
    return out.count("\n")


# by default: the model's "Loading weights" bar, our progress bar, our summary, repairs and results
DEFAULT_MAX_LINES = 6


def test_predict_prints_no_library_noise_by_default_and_verbose_shows_it(env, tmp_path):
    out = _predict_cli(env, tmp_path, "default")
    assert "trust_remote_code" not in out and "[INFO:swift]" not in out and "Warning" not in out, out
    assert _shown_lines(out) <= DEFAULT_MAX_LINES, out
    assert "results: " in out
    quiet = _predict_cli(env, tmp_path, "quiet", "--quiet")
    assert _shown_lines(quiet) <= 2 and "results: " in quiet, quiet
    loud = _predict_cli(env, tmp_path, "verbose", "--verbose")
    assert "[INFO:swift]" in loud and "trust_remote_code" in loud  # the opt-out shows the libraries' logs


def _gt_pixels(path) -> np.ndarray:
    from text4seg.data.overlay import GT_COLOUR

    return (np.asarray(Image.open(path).convert("RGB")) == GT_COLOUR).all(-1)


def test_predict_overlays_outline_the_ground_truth_and_frame_a_no_target_query(env, predictor, tmp_path):
    from text4seg.data.queries import truth_mask

    plain = load_queries(env["jsonl"])
    queries = load_queries(env["jsonl"], with_truth=True)
    assert [q.key for q in queries if q.truth] == [("s0", 0), ("s0", 1), ("s1", 0)]
    masks = {q.key: truth_mask(q, q.height, q.width) for q in queries}
    assert masks[("s0", 0)].sum() == 400 and not masks[("s1", 0)].any()  # s1: a no-target query
    assert all(truth_mask(q, q.height, q.width) is None for q in plain)  # no truth attached: none drawn
    with_gt = predict_queries(predictor, queries, tmp_path / "gt", progress=False)
    predict_queries(predictor, plain, tmp_path / "plain", progress=False)
    recs = {(r["id"], r["turn"]): r for r in map(json.loads, with_gt.read_text().splitlines())}
    target = _gt_pixels(tmp_path / "gt" / recs[("s0", 0)]["overlay"])
    frame = _gt_pixels(tmp_path / "gt" / recs[("s1", 0)]["overlay"])
    assert target.sum() > 100 and frame.sum() > 100
    assert not _gt_pixels(tmp_path / "plain" / recs[("s1", 0)]["overlay"]).any()  # no truth: nothing drawn
    rows = np.flatnonzero(frame.any(1))
    assert frame[rows[len(rows) // 2]].sum() < frame[rows[0]].sum()  # a frame: its middle rows are hollow


def test_label_bias_lifts_only_each_querys_own_label_and_ignores_its_batch_mates(env, tmp_path):
    """A huge bias on a query's label tokens makes it answer its own label, never another query's, and
    an answer is the same alone or batched with a query of another label (the bias is per row)."""
    from text4seg.data.queries import Query
    from text4seg.inference.bias import label_token_ids

    biased = Predictor(
        env["model"], batch_size=2, max_new_tokens=12, label_bias=1e4, model_type="llava1_5_hf"
    )
    img = str(env["root"] / "img0.png")
    red, blue = (
        Query(id=c, image=img, question=f"Segment the {c}.", labels=[c], grid=(GRID, GRID))
        for c in ("red", "blue")
    )
    (red_alone,) = biased.generate([red])
    pair = biased.generate([red, blue])
    assert pair[0] == red_alone

    def only_tokens_of(label: str, text: str) -> bool:
        pieces = [biased.tokenizer.decode([i]) for i in label_token_ids(biased.tokenizer, [label])]
        return re.fullmatch("(?:" + "|".join(map(re.escape, pieces)) + ")+", text) is not None

    assert only_tokens_of("red", red_alone[0]) and not only_tokens_of("blue", red_alone[0])
    assert only_tokens_of("blue", pair[1][0]) and not only_tokens_of("red", pair[1][0])
    (plain,) = biased.generate([red], label_bias=0)  # a call's own bias (0: none) instead of the predictor's
    assert plain != red_alone
