"""Hostile input to ``text4seg decode``, ``evaluate`` (and ``--report``) and ``merge``.

Each class of input runs through the real command line: RLE sizes and counts (a results file's masks, the
ground truth's masks), decompression bombs (an image, a ``label_map``, the report's gallery image), the
exact shape of ``swift infer`` output (no ``id``, no ``text4seg``), answers decoded on the wrong grid or
scheme, and a matrix of wrong field types in results rows, ground-truth rows and decode input rows. Every
failure is one line naming the file, the line or id, and the field; nothing is written on failure.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.hostile import bomb_png, cli, one_line_error, row, tree, write_jsonl

from text4seg import encode, wrap
from text4seg.cli import main

ANSWER4 = "Sure.\n<seg>" + "box *4\n" * 3 + "box *4</seg>"  # the whole 4x4 grid is the box
EMPTY4 = "Sure.\n<seg>" + "others *4\n" * 3 + "others *4</seg>"
QUESTION = "<image>Segment the box."


def swift_infer_row(image: str, response: str, dataset: str, question: str = QUESTION) -> dict:
    """One line of ``swift infer --val_dataset built.jsonl --result_path out.jsonl`` (ms-swift 4.6,
    ``swift/pipelines/infer/infer.py`` ``_batch_infer``): ``{'response', 'labels', 'logprobs', **data}``
    where ``data`` is the loaded row (``messages``, ``images`` as ``{'bytes', 'path'}`` structs, and the
    ``dataset`` routing tag; the ``text4seg`` column is dropped by ``remove_unused_columns``), the
    reference answer moved to ``labels`` and the response appended to ``messages``."""
    return {
        "response": response,
        "labels": ANSWER4,
        "logprobs": None,
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": response},
        ],
        "images": [{"bytes": None, "path": image}],
        "dataset": dataset,
    }


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Two 32x48 images, a built ground truth (ids a, b; grid 4x4, rrle), its decoded results, a bomb."""
    d = tmp_path_factory.mktemp("hostile_results")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(d / f"img{i}.png")
    write_jsonl(d / "gt.jsonl", [row("a", str(d / "img0.png")), row("b", str(d / "img1.png"))])
    assert main(["decode", str(d / "gt.jsonl"), "--out", str(d / "dec"), "--no-progress"]) == 0
    bomb_png(d / "bomb.png")
    return d


def _records(ws: Path) -> list[dict]:
    return [json.loads(x) for x in (ws / "dec" / "decoded.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ 1. RLE sizes and counts
HUGE = {"size": [60000, 60000], "counts": ""}
# a compressed string of 64x48 pixels under a 32x48 size: pycocotools would write 1536 bytes past the mask
OVER = {"size": [32, 48], "counts": "PP3"}
RLE_CASES = {
    "refined_huge": ("results", ["refined"], HUGE, "refined.size"),
    "refined_negative": ("results", ["refined"], {"size": [-32, 48], "counts": ""}, "refined.size"),
    "refined_labels_huge": ("results", ["refined_labels"], {"box": HUGE}, "refined_labels['box'].size"),
    "coarse_runs_overflow": ("results", ["coarse"], OVER, "coarse.counts"),
    "refined_runs_overflow": ("results", ["refined"], OVER, "refined.counts"),
    "gt_huge": ("gt", ["text4seg", "gt", "masks", 0], HUGE, "gt.masks[0].size"),
    "gt_negative": ("gt", ["text4seg", "gt", "masks", 0], {"size": [0, -1], "counts": ""}, "masks[0].size"),
    "gt_counts_short": ("gt", ["text4seg", "gt", "masks", 0], {"size": [32, 48], "counts": [5]}, "counts"),
    "gt_runs_overflow": ("gt", ["text4seg", "gt", "masks", 0], OVER, "counts"),
}  # fmt: skip


def _set(obj: dict, path: list, value) -> dict:
    obj = copy.deepcopy(obj)
    cur = obj
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return obj


@pytest.mark.parametrize("kind", sorted(RLE_CASES))
def test_evaluate_checks_rle_sizes_and_counts_before_allocating(ws, tmp_path, kind):
    target, path, value, field = RLE_CASES[kind]
    recs, gt = _records(ws), [row("a", str(ws / "img0.png")), row("b", str(ws / "img1.png"))]
    if target == "results":
        recs[0] = _set(recs[0], path, value)
    else:
        gt[0] = _set(gt[0], path, value)
    pred = write_jsonl(tmp_path / "res.jsonl", recs)
    gtf = write_jsonl(tmp_path / "gt.jsonl", gt)
    out = tmp_path / "ev"
    p = cli(["evaluate", "--pred", pred, "--gt", gtf, "--out", out, "--no-progress"], tmp_path)
    one_line_error(p, 2, f"{pred if target == 'results' else gtf}:1", "'a'", field)
    assert not out.exists() or tree(out) == {}


def test_rle_to_mask_refuses_what_pycocotools_would_overrun_and_decodes_the_rest():
    from text4seg.data.rle import mask_to_rle, rle_to_mask

    m = np.zeros((5, 7), bool)
    m[1:3, 2:6] = True
    assert (rle_to_mask(mask_to_rle(m)) == m).all()
    assert (rle_to_mask({"size": [2, 3], "counts": [2, 3, 1]}) == [[0, 1, 1], [0, 1, 0]]).all()
    for bad, what in [
        ({"size": [2, 3], "counts": "2311"}, "do not cover"),  # 7 pixels for 6: a write past the mask
        ({"size": [2, 3], "counts": "23"}, "do not cover"),  # 5 for 6: uninitialised memory read
        ({"size": [2, 3], "counts": [2, -3, 7]}, "non-negative"),
        ({"size": [2, 3], "counts": 5}, "expected a string or a list"),
        ({"size": [2.5, 3], "counts": "231"}, "not a pair of integers"),
        ({"size": "2x3", "counts": "231"}, "expected [height, width]"),
    ]:
        with pytest.raises(ValueError, match=r"f:1: id 'x': coarse\.") as exc:
            rle_to_mask(bad, "f:1: id 'x': coarse")
        assert what in str(exc.value)


# ------------------------------------------------------------------ 2. decompression bombs
def test_decode_reads_a_bomb_image_header_only_and_names_it(ws, tmp_path):
    src = write_jsonl(tmp_path / "swift.jsonl", [swift_infer_row(str(ws / "bomb.png"), ANSWER4, "gt.jsonl")])
    out = tmp_path / "dec"
    p = cli(["decode", src, "--out", out, "--grid", "4"], tmp_path)
    one_line_error(p, 2, f"{src}:1", "bomb.png", "20000x20000")
    assert not out.exists() or tree(out) == {}


def test_evaluate_refuses_a_bomb_label_map_naming_row_and_field(ws, tmp_path):
    gt = row("s", str(ws / "img0.png"))
    gt["text4seg"].update(task="semantic", labels=["box"], asked=["box"])
    gt["text4seg"]["gt"] = {"masks": [], "label_map": str(ws / "bomb.png"), "classes": ["others", "box"]}
    gtf = write_jsonl(tmp_path / "gt.jsonl", [gt])
    pred = write_jsonl(tmp_path / "res.jsonl", [{**_records(ws)[0], "id": "s"}])
    out = tmp_path / "ev"
    p = cli(["evaluate", "--pred", pred, "--gt", gtf, "--out", out, "--no-progress"], tmp_path)
    one_line_error(p, 2, f"{gtf}:1", "'s'", "label_map", "bomb.png")
    assert not out.exists() or tree(out) == {}


def test_evaluate_report_refuses_a_bomb_gallery_image(ws, tmp_path):
    pred = write_jsonl(tmp_path / "res.jsonl", [{**_records(ws)[0], "image": str(ws / "bomb.png")}])
    report = tmp_path / "report.html"
    args = ["evaluate", "--pred", pred, "--gt", ws / "gt.jsonl", "--out", tmp_path / "ev", "--report", report]
    p = cli(args, tmp_path)
    one_line_error(p, 2, f"{pred}:1", "bomb.png")
    assert not report.exists()


# ------------------------------------------------------------------ 3. real swift infer output
def test_swift_infer_rows_join_the_ground_truth_by_image_and_question_not_by_position(ws, tmp_path):
    # swift infer output in another order than the ground truth, b answered wrong: the scores must follow
    rows = [
        swift_infer_row(str(ws / "img1.png"), EMPTY4, str(ws / "gt.jsonl")),
        swift_infer_row(str(ws / "img0.png"), ANSWER4, str(ws / "gt.jsonl")),
    ]
    assert sorted(rows[0]) == ["dataset", "images", "labels", "logprobs", "messages", "response"]
    src = write_jsonl(tmp_path / "swift.jsonl", rows)
    out = tmp_path / "dec"
    p = cli(["decode", src, "--out", out, "--grid", "4"], tmp_path)
    assert p.returncode == 0 and "WARNING" not in p.stderr, p.stderr
    p = cli(["evaluate", "--pred", out / "decoded.jsonl", "--gt", ws / "gt.jsonl", "--out", out], tmp_path)
    assert p.returncode == 0 and "samples 2 (missing 0, unmatched 0)" in p.stdout, p.stdout + p.stderr
    per = {r["id"]: r for r in map(json.loads, (out / "per_sample.jsonl").read_text().splitlines())}
    assert per["a"]["coarse"]["iou"] == 1.0 and per["b"]["coarse"]["iou"] == 0.0
    assert per["a"]["joined_by"] == "image+question"
    # the same rows split over two shards merge into one file (keyed by image + question), then evaluate
    s0 = write_jsonl(tmp_path / "s0.jsonl", [json.loads((out / "decoded.jsonl").read_text().splitlines()[0])])
    s1 = write_jsonl(tmp_path / "s1.jsonl", [json.loads((out / "decoded.jsonl").read_text().splitlines()[1])])
    p = cli(["merge", s0, s1, "--out", tmp_path / "m"], tmp_path)
    assert p.returncode == 0 and "merged 2 records" in p.stdout, p.stderr


def test_rows_made_by_ms_swifts_own_loader_and_writer_decode_and_evaluate(ws, tmp_path, monkeypatch, capsys):
    """The ``swift infer`` row built by ms-swift itself: its dataset loader (``text4seg`` column dropped,
    images cast to structs, the ``dataset`` tag added), ``InferRequest.remove_response`` and the
    writer's ``check_json_format``, exactly as ``SwiftInfer._batch_infer`` composes them; only the model
    call is replaced by a fixed response (about 12 s, no model)."""
    pytest.importorskip("swift")
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    from swift.dataset import load_dataset
    from swift.infer_engine import InferRequest
    from swift.utils import check_json_format

    _, val = load_dataset([str(ws / "gt.jsonl")], split_dataset_ratio=1.0, num_proc=1)
    rows = []
    for data, response in zip(val, [ANSWER4, EMPTY4]):
        labels = InferRequest.remove_response(data["messages"])
        data["messages"].append({"role": "assistant", "content": response})
        rows.append({"response": response, "labels": labels, "logprobs": None, **data})
    rows = check_json_format(rows)
    assert sorted(rows[0]) == sorted(swift_infer_row("x", "y", "z"))  # the fixture above has this shape
    assert rows[0]["images"] == [{"bytes": None, "path": str(ws / "img0.png")}] and "text4seg" not in rows[0]
    src = write_jsonl(tmp_path / "swift.jsonl", rows[::-1])
    out = tmp_path / "dec"
    assert main(["decode", str(src), "--out", str(out), "--grid", "4", "--no-progress"]) == 0
    assert (
        main(
            ["evaluate", "--pred", str(out / "decoded.jsonl"), "--gt", str(ws / "gt.jsonl"), "--no-progress"]
        )
        == 0
    )
    assert "samples 2 (missing 0, unmatched 0)" in capsys.readouterr().out
    per = {r["id"]: r for r in map(json.loads, (out / "per_sample.jsonl").read_text().splitlines())}
    assert per["a"]["coarse"]["iou"] == 1.0 and per["b"]["coarse"]["iou"] == 0.0


def test_swift_infer_rows_with_an_ambiguous_image_and_question_are_refused(ws, tmp_path):
    gt = write_jsonl(tmp_path / "gt.jsonl", [row("a", str(ws / "img0.png")), row("c", str(ws / "img0.png"))])
    src = write_jsonl(tmp_path / "swift.jsonl", [swift_infer_row(str(ws / "img0.png"), ANSWER4, str(gt))])
    out = tmp_path / "dec"
    assert cli(["decode", src, "--out", out, "--grid", "4"], tmp_path).returncode == 0
    p = cli(["evaluate", "--pred", out / "decoded.jsonl", "--gt", gt, "--out", tmp_path / "ev"], tmp_path)
    one_line_error(p, 2, "decoded.jsonl:1", "ambiguous", "'a'", "'c'", "img0.png")


def test_swift_infer_rows_of_another_question_match_nothing(ws, tmp_path):
    rows = [swift_infer_row(str(ws / "img0.png"), ANSWER4, "gt.jsonl", "<image>Segment the cat.")]
    src = write_jsonl(tmp_path / "swift.jsonl", rows)
    out = tmp_path / "dec"
    assert cli(["decode", src, "--out", out, "--grid", "4"], tmp_path).returncode == 0
    p = cli(["evaluate", "--pred", out / "decoded.jsonl", "--gt", ws / "gt.jsonl", "--out", out], tmp_path)
    one_line_error(p, 1, "no prediction", "1 unmatched")


# ------------------------------------------------------------------ 4. grid and scheme
def test_answers_decoded_on_the_wrong_grid_warn_in_decode_and_are_refused_by_evaluate(ws, tmp_path):
    rows = [swift_infer_row(str(ws / f"img{i}.png"), ANSWER4, "gt.jsonl") for i in range(2)]
    src = write_jsonl(tmp_path / "swift.jsonl", rows)
    out = tmp_path / "dec"
    p = cli(["decode", src, "--out", out], tmp_path)  # 4x4 answers read on the default 16x16 grid
    assert p.returncode == 0
    warnings = [x for x in p.stderr.splitlines() if "WARNING" in x]
    assert len(warnings) == 1 and "2 of 2 answers" in warnings[0] and "--grid 16x16" in warnings[0], p.stderr
    p = cli(["evaluate", "--pred", out / "decoded.jsonl", "--gt", ws / "gt.jsonl", "--out", tmp_path / "ev"],
            tmp_path)  # fmt: skip
    one_line_error(p, 2, "decoded.jsonl:1", "'a'", "grid 16x16", "grid 4x4", "--grid 4x4")


def test_compact_answers_decoded_as_rrle_are_refused_naming_both_schemes(ws, tmp_path):
    grid = np.full((32, 32), "others", dtype=object)
    grid[4:28, 6:26] = "box"
    gt_row = row("k", str(ws / "img0.png"), grid=(32, 32), answer="Sure.\n" + wrap(encode(grid, "compact")))
    gt_row["text4seg"]["scheme"] = "compact"
    gt = write_jsonl(tmp_path / "gt.jsonl", [gt_row])
    src = write_jsonl(
        tmp_path / "in.jsonl", [{**gt_row, "text4seg": {**gt_row["text4seg"], "scheme": "rrle"}}]
    )
    out = tmp_path / "dec"
    p = cli(["decode", src, "--out", out], tmp_path)
    assert p.returncode == 0 and "1 of 1 answers needed repairs" in p.stderr, p.stderr
    p = cli(["evaluate", "--pred", out / "decoded.jsonl", "--gt", gt, "--out", tmp_path / "ev"], tmp_path)
    one_line_error(p, 2, "decoded.jsonl:1", "'k'", "scheme rrle", "scheme compact")
    p = cli(["decode", gt, "--out", tmp_path / "ok"], tmp_path)  # the row's own scheme: clean, no warning
    assert p.returncode == 0 and "WARNING" not in p.stderr, p.stderr


# ------------------------------------------------------------------ 5. wrong types, field by field
BIG = 10**9
RESULT_MUTATIONS = {
    "id_list": (["id"], ["a"], "id"),
    "id_dict": (["id"], {"x": 1}, "id"),
    "id_bool": (["id"], True, "id"),
    "turn_null": (["turn"], None, "turn"),
    "turn_negative": (["turn"], -1, "turn"),
    "answer_number": (["answer"], 5, "answer"),
    "grid_float_huge": (["grid"], [1e9, 1], "grid"),
    "grid_huge": (["grid"], [BIG, 1], "grid"),
    "grid_string": (["grid"], "16", "grid"),
    "width_string": (["width"], "wide", "width"),
    "height_negative": (["height"], -3, "height"),
    "height_huge": (["height"], BIG, "height"),
    "scheme_number": (["scheme"], 5, "scheme"),
    "coarse_string": (["coarse"], "abc", "coarse"),
    "coarse_other_size": (["coarse"], {"size": [2, 3], "counts": "231"}, "coarse"),
    "refined_string": (["refined"], "abc", "refined"),
    "refined_labels_list": (["refined_labels"], ["x"], "refined_labels"),
    "refined_labels_bad_mask": (["refined_labels"], {"box": "abc"}, "refined_labels['box']"),
    "image_number": (["image"], 5, "image"),
    "query_list": (["query"], ["q"], "query"),
    "labels_string": (["labels"], "box", "labels"),
    "num_tokens_string": (["num_tokens"], "many", "num_tokens"),
    "repairs_string": (["repairs"], "none", "repairs"),
}
GT_MUTATIONS = {
    "text4seg_string": (["text4seg"], "oops", "text4seg"),
    "id_list": (["text4seg", "id"], ["a"], "text4seg.id"),
    "id_null": (["text4seg", "id"], None, "text4seg.id"),
    "gt_string": (["text4seg", "gt"], "x", "text4seg.gt"),
    "masks_string": (["text4seg", "gt", "masks"], "x", "text4seg.gt.masks"),
    "mask_string": (["text4seg", "gt", "masks", 0], "x", "text4seg.gt.masks[0]"),
    "mask_huge": (["text4seg", "gt", "masks", 0], HUGE, "text4seg.gt.masks[0].size"),
    "grid_huge": (["text4seg", "grid"], [1e9, 1], "text4seg.grid"),
    "width_string": (["text4seg", "width"], "wide", "width"),
    "scheme_number": (["text4seg", "scheme"], 5, "text4seg.scheme"),
    "labels_string": (["text4seg", "labels"], "box", "text4seg.labels"),
    "task_number": (["text4seg", "task"], 5, "text4seg.task"),
    "ignore_strings": (["text4seg", "gt", "ignore"], ["x"], "text4seg.gt.ignore"),
}
INPUT_MUTATIONS = {
    "text4seg_string": (["text4seg"], "oops", "text4seg"),
    "id_list": (["text4seg", "id"], ["a"], "id"),
    "grid_huge": (["text4seg", "grid"], [1e9, 1], "text4seg.grid"),
    "grid_string": (["text4seg", "grid"], "4", "text4seg.grid"),
    "height_negative": (["text4seg", "height"], -1, "height"),
    "width_string": (["text4seg", "width"], "wide", "width"),
    "scheme_number": (["text4seg", "scheme"], 5, "text4seg.scheme"),
    "labels_string": (["text4seg", "labels"], 7, "text4seg.labels"),
    "images_number": (["images"], 5, "images"),
    "images_number_inside": (["images"], [5], "images[0]"),
    "response_number": (["response"], 5, "response"),
    "answer_list": (["answer"], ["x"], "answer"),
    "assistant_content_number": (["messages", 1, "content"], 5, "messages"),
}


def _run(argv: list[str], capsys) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return rc, err


def _one_line(rc: int, err: str, *names: str) -> None:
    assert rc == 2, err
    lines = [x for x in err.splitlines() if "error:" in x]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in names:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("kind", sorted(RESULT_MUTATIONS))
def test_a_results_row_with_a_wrong_field_type_is_one_line_in_evaluate_and_merge(ws, tmp_path, capsys, kind):
    path, value, field = RESULT_MUTATIONS[kind]
    recs = _records(ws)
    pred = write_jsonl(tmp_path / "results.jsonl", [_set(recs[0], path, value), recs[1]])
    rc, err = _run(["evaluate", "--pred", pred, "--gt", ws / "gt.jsonl", "--out", tmp_path / "ev"], capsys)
    _one_line(rc, err, f"{pred}:1", field)
    rc, err = _run(["merge", pred, "--out", tmp_path / "m"], capsys)
    _one_line(rc, err, f"{pred}:1", field)
    assert not (tmp_path / "ev").exists() and not (tmp_path / "m" / "results.jsonl").exists()


@pytest.mark.parametrize("kind", sorted(GT_MUTATIONS))
def test_a_ground_truth_row_with_a_wrong_field_type_is_one_line_in_evaluate(ws, tmp_path, capsys, kind):
    path, value, field = GT_MUTATIONS[kind]
    gt = write_jsonl(tmp_path / "gt.jsonl", [_set(row("a", str(ws / "img0.png")), path, value)])
    rc, err = _run(
        ["evaluate", "--pred", ws / "dec" / "decoded.jsonl", "--gt", gt, "--out", tmp_path], capsys
    )
    _one_line(rc, err, f"{gt}:1", field)
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("kind", sorted(INPUT_MUTATIONS))
def test_a_decode_input_row_with_a_wrong_field_type_is_one_line(ws, tmp_path, capsys, kind):
    path, value, field = INPUT_MUTATIONS[kind]
    base = row("a", str(ws / "img0.png"))
    if path[0] in ("response", "answer"):
        base[path[0]] = None
    src = write_jsonl(tmp_path / "in.jsonl", [row("b", str(ws / "img1.png")), _set(base, path, value)])
    rc, err = _run(["decode", src, "--out", tmp_path / "dec"], capsys)
    _one_line(rc, err, f"{src}:2", field)
    assert not (tmp_path / "dec").exists() or tree(tmp_path / "dec") == {}


@pytest.mark.parametrize("cmd", ["evaluate", "merge", "decode"])
def test_json_infinity_in_a_size_is_refused_naming_file_and_line(ws, tmp_path, capsys, cmd):
    text = json.dumps(_records(ws)[0] if cmd != "decode" else row("a", str(ws / "img0.png")))
    bad = tmp_path / "results.jsonl"
    bad.write_text(text.replace('"width": 48', '"width": Infinity') + "\n")
    argv = {
        "evaluate": ["evaluate", "--pred", bad, "--gt", ws / "gt.jsonl", "--out", tmp_path / "ev"],
        "merge": ["merge", bad, "--out", tmp_path / "m"],
        "decode": ["decode", bad, "--out", tmp_path / "dec"],
    }[cmd]
    rc, err = _run(argv, capsys)
    _one_line(rc, err, f"{bad}:1", "Infinity")
