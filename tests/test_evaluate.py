"""evaluate(): joins results with the built JSONL and scores raw and refined masks side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from text4seg import encode, mask_to_grid, wrap
from text4seg.data.records import write_jsonl
from text4seg.data.results import answer_to_masks
from text4seg.data.rle import mask_to_rle
from text4seg.evaluation.evaluate import evaluate

H, W = 32, 48


def _row(sid, masks, labels=("red circle",), task="gres", extra_gt=None):
    msgs = []
    for i, _ in enumerate(masks):
        msgs += [
            {"role": "user", "content": ("<image>" if i == 0 else "") + "Segment it."},
            {"role": "assistant", "content": "ok"},
        ]
    gt = {"masks": [mask_to_rle(m) for m in masks], "label_map": "", "classes": [], "ignore": [], "boxes": []}
    gt.update(extra_gt or {})
    return {
        "messages": msgs,
        "images": ["/x.png"],
        "text4seg": {
            "id": sid,
            "task": task,
            "labels": list(labels),
            "grid": [16, 16],
            "scheme": "rrle",
            "width": W,
            "height": H,
            "source": {},
            "gt": gt,
        },
    }


def _pred(sid, turn, answer, refined=None):
    return {
        "id": sid,
        "turn": turn,
        "answer": answer,
        "grid": [16, 16],
        "scheme": "rrle",
        "width": W,
        "height": H,
        "refined": None if refined is None else mask_to_rle(refined),
        "num_tokens": 10,
    }


def _answer(mask, label="red circle"):
    return "Sure.\n" + wrap(encode(mask_to_grid(mask, 16, labels=label)))


def _write(path, rows):
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")


def test_scores_match_hand_computed_values(tmp_path):
    box = np.zeros((H, W), bool)
    box[8:24, 12:36] = True  # grid-aligned (2 px rows, 3 px cols per cell): exact round trip
    empty = np.zeros((H, W), bool)
    half = box.copy()
    half[16:24] = False
    write_jsonl([_row("a", [box, empty]), _row("b", [box])], tmp_path / "gt.jsonl")
    # a/0 perfect, a/1 no-target predicted empty, b/0 half the target
    _write(
        tmp_path / "res.jsonl",
        [
            _pred("a", 0, _answer(box), refined=box),
            _pred("a", 1, _answer(empty)),
            _pred("b", 0, _answer(half)),
        ],
    )
    m = evaluate(tmp_path / "res.jsonl", tmp_path / "gt.jsonl", tmp_path / "ev")
    c = m["referring"]["coarse"]
    assert c["giou"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert c["ciou"] == pytest.approx((384 + 192) / (384 + 384))
    assert c["n_acc"] == 1.0 and c["t_acc"] == 1.0
    assert c["pr@0.5"] == 1.0 and c["pr@0.6"] == 0.5
    assert c["rec_acc@0.5"] == 0.5  # half box has box IoU exactly 0.5: not counted
    assert m["referring"]["refined"]["n"] == 1
    assert m["parse_valid"] == 1.0 and m["tokens_per_answer"] == 10.0
    assert (tmp_path / "ev" / "metrics.json").exists()
    rows = [json.loads(x) for x in (tmp_path / "ev" / "per_sample.jsonl").read_text().splitlines()]
    assert [(r["id"], r["turn"]) for r in rows] == [("a", 0), ("a", 1), ("b", 0)]


def test_object_filling_the_whole_grid_is_not_empty():
    full = np.ones((H, W), bool)
    am = answer_to_masks(_answer(full), H, W)
    assert am.mask.all() and am.parse_valid


def test_label_only_scores_queried_label_and_counts_other_labels(tmp_path):
    box = np.zeros((H, W), bool)
    box[8:24, 12:36] = True
    write_jsonl([_row("a", [box])], tmp_path / "gt.jsonl")
    _write(tmp_path / "res.jsonl", [_pred("a", 0, _answer(box, label="blue square"))])
    default = evaluate(tmp_path / "res.jsonl", tmp_path / "gt.jsonl")
    only = evaluate(tmp_path / "res.jsonl", tmp_path / "gt.jsonl", label_only=True)
    assert default["referring"]["coarse"]["giou"] == 1.0
    assert only["referring"]["coarse"]["giou"] == 0.0
    assert default["other_label_answers"] == 1


def test_missing_and_unmatched_are_counted(tmp_path):
    box = np.zeros((H, W), bool)
    write_jsonl([_row("a", [box]), _row("b", [box])], tmp_path / "gt.jsonl")
    _write(tmp_path / "res.jsonl", [_pred("a", 0, _answer(box)), _pred("zzz", 0, _answer(box))])
    m = evaluate(tmp_path / "res.jsonl", tmp_path / "gt.jsonl")
    assert (m["n"], m["missing"], m["unmatched"]) == (1, 1, 1)


def test_semantic_miou_leaves_background_out_of_the_mean(tmp_path):
    lm = np.zeros((H, W), np.uint8)
    lm[:, : W // 2] = 1  # class "cat" on the left half
    lm[0, 0] = 255
    Image.fromarray(lm).save(tmp_path / "lm.png")
    gt = {
        "masks": [],
        "label_map": str(tmp_path / "lm.png"),
        "classes": ["others", "cat", "dog"],
        "ignore": [255],
    }
    write_jsonl(
        [_row("s", [np.zeros((H, W), bool)], labels=("cat", "dog"), task="semantic", extra_gt=gt)],
        tmp_path / "gt.jsonl",
    )
    grid = mask_to_grid(lm.astype(np.int64), 16, labels=["others", "cat"], ignore_index=None)
    _write(tmp_path / "res.jsonl", [_pred("s", 0, wrap(encode(grid)))])
    m = evaluate(tmp_path / "res.jsonl", tmp_path / "gt.jsonl")
    sem = m["semantic"]["coarse"]
    assert sem["iou"]["cat"] == pytest.approx(1.0)
    assert sem["iou"]["dog"] is None and "others" not in sem["iou"]
    assert sem["miou"] == pytest.approx(1.0)
    # both means are reported, labelled; without background the void pixel (255) counts nowhere; with
    # background (the official Text4Seg protocol) "others" is exact and the void pixel, answered "cat",
    # is a false positive of cat: 767 / 768
    assert sem["miou_without_background"] == pytest.approx(1.0)
    assert sem["miou_with_background"] == pytest.approx((1.0 + 767 / 768) / 2)


def test_semantic_report_gives_the_mean_with_background_over_k_classes(tmp_path):
    lm = np.zeros((H, W), np.uint8)
    lm[:, : W // 2] = 1
    Image.fromarray(lm).save(tmp_path / "lm.png")
    gt = {"masks": [], "label_map": str(tmp_path / "lm.png"), "classes": ["others", "cat"], "ignore": []}
    write_jsonl(
        [_row("s", [np.zeros((H, W), bool)], labels=("cat",), task="semantic", extra_gt=gt)],
        tmp_path / "gt.jsonl",
    )
    pred = np.zeros((H, W), np.int64)
    pred[:, : W // 4] = 1  # half of the cat found: cat IoU 0.5, background IoU (W/2)/(3W/4) = 2/3
    grid = mask_to_grid(pred, 16, labels=["others", "cat"], ignore_index=None)
    _write(tmp_path / "res.jsonl", [_pred("s", 0, wrap(encode(grid)))])
    sem = evaluate(tmp_path / "res.jsonl", tmp_path / "gt.jsonl")["semantic"]["coarse"]
    assert sem["miou_without_background"] == pytest.approx(0.5)
    assert sem["miou_with_background"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert sem["miou"] == sem["miou_without_background"]
    with_bg = evaluate(tmp_path / "res.jsonl", tmp_path / "gt.jsonl", semantic_background=True)
    assert with_bg["semantic"]["coarse"]["miou"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_official_geometry_reproduces_floor_sampling_in_evaluate(tmp_path):
    from text4seg.descriptors import grid_to_mask

    h, w = 27, 40  # sides that are not multiples of 16: the two geometries differ
    grid = np.full((16, 16), "others", dtype=object)
    grid[3:9, 5:12] = "red circle"
    gt_mask = grid_to_mask(grid, h, w, geometry="official")
    row = _row("g", [gt_mask])
    row["text4seg"].update(width=w, height=h)
    write_jsonl([row], tmp_path / "gt.jsonl")
    pred = _pred("g", 0, wrap(encode(grid)))
    pred.update(width=w, height=h)
    _write(tmp_path / "res.jsonl", [pred])
    official = evaluate(tmp_path / "res.jsonl", tmp_path / "gt.jsonl", geometry="official")
    pil = evaluate(tmp_path / "res.jsonl", tmp_path / "gt.jsonl")
    assert official["referring"]["coarse"]["ciou"] == pytest.approx(1.0)
    assert pil["referring"]["coarse"]["ciou"] < 1.0


def test_gt_file_without_ground_truth_is_a_clear_error(tmp_path):
    _write(tmp_path / "gt.jsonl", [{"messages": [], "images": []}])
    _write(tmp_path / "res.jsonl", [])
    with pytest.raises(ValueError, match="no text4seg.gt"):
        evaluate(tmp_path / "res.jsonl", tmp_path / "gt.jsonl")


def test_multi_turn_rows_give_each_turn_its_own_label():
    from text4seg.data.queries import queries_from_row

    row = _row("m", [np.zeros((H, W), bool)] * 2, labels=("red circle", "blue square"))
    qs = queries_from_row(row)
    assert [q.labels for q in qs] == [["red circle"], ["blue square"]]


def test_refined_semantic_label_map_is_scored_from_the_record(tmp_path):
    pytest.importorskip("segment_anything")
    from support.sam import make_tiny_sam

    from text4seg.data.results import make_record
    from text4seg.inference.refine import Refiner

    lm = np.zeros((H, W), np.uint8)
    lm[:, : W // 2] = 1  # class "cat" on the left half
    lm[0, 0] = 255
    Image.fromarray(lm).save(tmp_path / "lm.png")
    image = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    gt = {
        "masks": [],
        "label_map": str(tmp_path / "lm.png"),
        "classes": ["others", "cat", "dog"],
        "ignore": [255],
    }
    row = _row("s", [np.zeros((H, W), bool)], labels=("cat", "dog"), task="semantic", extra_gt=gt)
    write_jsonl([row], tmp_path / "gt.jsonl")
    grid = mask_to_grid(lm.astype(np.int64), 16, labels=["others", "cat"], ignore_index=None)
    answer = wrap(encode(grid))
    am = answer_to_masks(answer, H, W)
    refined = Refiner(make_tiny_sam()).refine_label_map(image, am.label_map)
    rec = make_record(
        id="s",
        turn=0,
        image=None,
        query="",
        labels=["cat", "dog"],
        answer=answer,
        scheme="rrle",
        grid=(16, 16),
        masks=am,
        refined_map=refined,
    )
    _write(tmp_path / "res.jsonl", [rec.to_json()])
    m = evaluate(tmp_path / "res.jsonl", tmp_path / "gt.jsonl")
    valid = lm != 255
    cat_pred, cat_gt = refined == am.names.index("cat"), lm == 1
    want = (cat_pred & cat_gt & valid).sum() / ((cat_pred | cat_gt) & valid).sum()
    sem = m["semantic"]["refined"]
    assert sem is not None and sem["iou"]["cat"] == pytest.approx(want) and sem["miou"] == pytest.approx(want)
    assert m["semantic"]["coarse"]["miou"] == pytest.approx(1.0)
    assert not (refined == am.label_map).all()  # the random SAM changed the map: refined is scored apart


# ------------------------------------------------------------------------- the result record, typed
RECORD_LINE = (
    '{"id": "shapes/val/3", "turn": 0, "image": "/abs/img.png", "query": "Segment the cat.", '
    '"labels": ["cat"], '
    '"answer": "Sure.\\n<seg>others *2\\n cat *2\\n</seg>", "scheme": "rrle", "grid": [2, 2], "width": 2, '
    '"height": 2, "parse_valid": true, "repairs": [], "pred_labels": ["cat"], "coarse": {"size": [2, 2], '
    '"counts": "1110"}, "refined": null, "refined_labels": null, "num_tokens": null, "constrained": null, '
    '"overlay": null, "mask_png": null}'
)  # what make_record wrote as a dict before ResultRecord (the worked example of text4seg.data.results)


def test_result_record_json_is_byte_identical_to_the_dict_written_before_the_dataclass():
    from text4seg.data.results import RECORD_KEYS, ResultRecord, make_record

    ans = "Sure.\n<seg>others *2\n cat *2\n</seg>"
    rec = make_record(
        id="shapes/val/3", turn=0, image="/abs/img.png", query="Segment the cat.", labels=["cat"],
        answer=ans, scheme="rrle", grid=(2, 2), masks=answer_to_masks(ans, 2, 2, (2, 2)),
    )  # fmt: skip
    assert json.dumps(rec.to_json(), ensure_ascii=False) == RECORD_LINE
    back = ResultRecord.from_json(json.loads(RECORD_LINE), "t.jsonl:1")
    assert back == rec and back.grid == (2, 2) and tuple(back.to_json()) == RECORD_KEYS


def test_result_record_from_json_refuses_a_bad_field_naming_file_line_id_and_field():
    from text4seg.data.results import ResultRecord

    obj = json.loads(RECORD_LINE)
    for field, bad, says in (
        ("grid", "16", "grid:"),
        ("scheme", "nope", "scheme: unknown scheme 'nope'"),
        ("parse_valid", "yes", "parse_valid: expected true or false"),
        ("overlay", 3, "overlay: expected a relative path"),
    ):
        with pytest.raises(ValueError, match=f"^r.jsonl:7: id 'shapes/val/3': {says}"):
            ResultRecord.from_json(dict(obj, **{field: bad}), "r.jsonl:7")


def _mixed(tmp_path):
    """A built file and results with a referring, a Ref-ZOM, an instance-numbered semantic and a
    multi-expression row, each answered."""
    from text4seg.descriptors.multi import encode_multi

    a = np.zeros((H, W), bool)
    a[: H // 2] = True
    ref = _row("r", [a])
    zom = _row("z", [np.zeros((H, W), bool)])
    zom["text4seg"]["source"] = {"dataset": "ref-zom"}
    lm = np.zeros((H, W), np.uint8)
    lm[:, : W // 2] = 1
    Image.fromarray(lm).save(tmp_path / "lm.png")
    gt = {"label_map": str(tmp_path / "lm.png"), "classes": ["others", "cat 1"], "ignore": []}
    inst = _row("i", [np.zeros((H, W), bool)], labels=("cat 1",), task="semantic", extra_gt=gt)
    multi = _row("m", [a], labels=("a", "b"), task="multi")
    multi["text4seg"]["gt"]["masks"] = [mask_to_rle(a), mask_to_rle(np.zeros((H, W), bool))]
    write_jsonl([ref, zom, inst, multi], tmp_path / "gt.jsonl")
    half = wrap(encode(mask_to_grid(lm.astype(np.int64), 16, labels=["others", "cat 1"], ignore_index=None)))
    top = np.zeros((16, 16), bool)
    top[:8] = True
    preds = [
        _pred("r", 0, _answer(a)),
        _pred("z", 0, "<seg>" + "\n".join(["others *16"] * 16) + "\n</seg>"),
        _pred("i", 0, half),
        _pred("m", 0, encode_multi([("a", top), ("b", np.zeros((16, 16), bool))], "rrle")),
    ]
    _write(tmp_path / "res.jsonl", preds)
    return tmp_path / "res.jsonl", tmp_path / "gt.jsonl"


def test_a_mixed_file_shows_every_section_in_the_printed_table_and_the_report(tmp_path):
    from support.hostile import cli

    pred, gt = _mixed(tmp_path)
    report = tmp_path / "report.html"
    proc = cli(["evaluate", "--pred", str(pred), "--gt", str(gt), "--report", str(report)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["referring"]["coarse"]["refzom"]["acc"] == 1.0  # the empty answer to a no-target query
    assert m["instance"]["tp"] == 1 and m["instance"]["mean_instance_iou"] == pytest.approx(1.0)
    assert m["peers"]["multi"]["answers"] == 1 and m["semantic"]["coarse"]["miou"] == pytest.approx(1.0)
    page = report.read_text()
    for title, row in (
        ("referring", "rec_acc@0.5"),
        ("Ref-ZOM", "oiou"),
        ("semantic", "miou_with_background"),
        ("multi-expression", "missing_lines"),
        ("instance (Hungarian)", "mean_instance_iou"),
    ):
        assert title in proc.stdout and f"  {row}" in proc.stdout, (title, proc.stdout)
        assert f"<th>{title}</th>" in page and f'<td title="{row}">' in page, title  # raw key in the tooltip


def test_every_registered_section_has_a_table_when_present():
    from text4seg.evaluation.evaluate import format_table
    from text4seg.evaluation.scorers import SCORERS, tables

    metrics = {
        "peers": {
            "interactive": {"coarse": {"point": {"n": 1, "miou": 0.5, "ciou": 0.5}}, "refined": None},
            "panoptic": {"coarse": {"pq": 0.25, "sq": 0.5, "rq": 0.5, "per_class": {}}, "refined": None},
        },
        "video": {"j": 0.5, "f": 0.25, "jf": 0.375, "pairs": 2, "missing": 0},
    }
    titles = [t.title for t in tables(metrics)]
    assert titles == ["interactive", "panoptic (PQ/SQ/RQ)", "video (J/F/J&F)"]
    text = format_table(metrics)
    assert "  point miou" in text and "  pq" in text and "  jf" in text
    assert set(SCORERS) >= {"referring", "semantic", "multi", "interactive", "panoptic", "instance", "video"}


def _voc_row_and_record(tmp_path, gt_map: np.ndarray, pred_map: np.ndarray):
    """A voc20-built semantic row (classes others + 20, ignore 0 and 255) and its record answering
    ``pred_map`` on the 16 x 16 grid, written to gt.jsonl / res.jsonl."""
    from data_builders.classes import PASCAL_VOC_20

    classes = ["others", *PASCAL_VOC_20]
    h, w = gt_map.shape
    Image.fromarray(gt_map.astype(np.uint8)).save(tmp_path / "lm.png")
    gt = {"masks": [], "label_map": str(tmp_path / "lm.png"), "classes": classes, "ignore": [0, 255]}
    row = _row("s", [np.zeros((h, w), bool)], labels=("cat",), task="semantic", extra_gt=gt)
    row["text4seg"].update(width=w, height=h)
    write_jsonl([row], tmp_path / "gt.jsonl")
    grid = mask_to_grid(pred_map, 16, labels=classes, ignore_index=None)
    rec = _pred("s", 0, wrap(encode(grid)))
    rec.update(width=w, height=h)
    _write(tmp_path / "res.jsonl", [rec])


def test_cli_miou_with_background_is_the_official_number_of_the_issues_example(tmp_path):
    """Issue 27 item 1: a 60 x 60 VOC map, one 30 x 30 cat painted back from its 16 x 16 grid: the
    official Text4Seg evaluation gives 0.9565 (background IoU 0.9786, cat 0.9344); before the
    fix the background, ignored by the builder, scored 0 and the mean was 0.4672."""
    from support.hostile import cli

    gt_map = np.zeros((60, 60), np.int64)
    gt_map[3:33, 3:33] = 8  # cat
    _voc_row_and_record(tmp_path, gt_map, gt_map)
    proc = cli(["evaluate", "--pred", "res.jsonl", "--gt", "gt.jsonl", "--out", "ev"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    sem = json.loads((tmp_path / "ev" / "metrics.json").read_text())["semantic"]["coarse"]
    assert sem["miou_with_background"] == pytest.approx(0.9565, abs=5e-5)
    assert sem["miou_without_background"] == pytest.approx(0.9344, abs=5e-5)


def test_cli_void_pixels_answered_a_class_count_against_it_only_with_background(tmp_path):
    """VOC's 255 boundary: the official evaluation drops it from the ground truth only, so a class
    answered on it adds to that class's union in miou_with_background; miou_without_background ignores
    it (the usual convention)."""
    from support.hostile import cli

    gt_map = np.zeros((32, 32), np.int64)
    gt_map[:, :16] = 8
    gt_map[:, 16:18] = 255  # a void band, answered "cat"
    pred = np.zeros((32, 32), np.int64)
    pred[:, :18] = 8
    _voc_row_and_record(tmp_path, gt_map, pred)
    proc = cli(["evaluate", "--pred", "res.jsonl", "--gt", "gt.jsonl", "--out", "ev"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    sem = json.loads((tmp_path / "ev" / "metrics.json").read_text())["semantic"]["coarse"]
    assert sem["miou_without_background"] == pytest.approx(1.0)
    assert sem["miou_with_background"] == pytest.approx((1.0 + 512 / 576) / 2)


# ------------------------------------------------------------------------------- streaming (issue 31)
def test_streamed_referring_scores_equal_aggregate_referring_bit_for_bit():
    from text4seg.evaluation.metrics import aggregate_referring
    from text4seg.evaluation.score_referring import _Referring

    rng = np.random.default_rng(3)
    stats = []
    for k in range(997):
        union = int(rng.integers(0, 50))
        inter = int(rng.integers(0, union + 1))
        gt_empty = k % 7 == 0
        stats.append(
            {
                "inter": inter,
                "union": union,
                "iou": 1.0 if union == 0 else inter / union,
                "pred_empty": bool(rng.random() < 0.2),
                "gt_empty": gt_empty,
                "box_iou": float(rng.random()),
                "dataset": "",
            }
        )
    acc = _Referring((0.5, 0.6, 0.7, 0.8, 0.9))
    for s in stats:
        acc.add(s, s["dataset"])
    want = aggregate_referring(stats)
    targeted = [s for s in stats if not s["gt_empty"]]
    want["rec_acc@0.5"] = sum(s["box_iou"] > 0.5 for s in targeted) / len(targeted)
    got = acc.scores()
    assert list(got) == list(want) and got == want  # same keys, same order, same floats


def test_a_key_given_by_two_gt_rows_is_the_later_rows_and_missing_counts_it_once(tmp_path):
    box = np.zeros((H, W), bool)
    box[8:24, 12:36] = True
    empty = np.zeros((H, W), bool)
    # "a" twice: the later row (empty target) wins, as load_ground_truth's dict did; "b" is never answered
    write_jsonl([_row("a", [box]), _row("a", [empty]), _row("b", [box])], tmp_path / "gt.jsonl")
    _write(tmp_path / "res.jsonl", [_pred("a", 0, "Sure."), _pred("a", 0, "Sure.")])
    m = evaluate(tmp_path / "res.jsonl", tmp_path / "gt.jsonl", tmp_path / "out")
    assert (m["n"], m["missing"], m["unmatched"]) == (1, 1, 1)  # the second "a" record is a duplicate
    assert m["referring"]["coarse"]["n_no_target"] == 1 and m["referring"]["coarse"]["n_acc"] == 1.0


def test_gt_index_finds_every_key_and_refuses_unknown_ones(tmp_path):
    from text4seg.evaluation.ground_truth import GroundTruthIndex, load_ground_truth

    box = np.zeros((H, W), bool)
    box[0:4, 0:6] = True
    rows = [_row(f"r{i}", [box] * (1 + i % 3)) for i in range(40)]
    write_jsonl(rows, tmp_path / "gt.jsonl")
    whole = load_ground_truth(tmp_path / "gt.jsonl")
    index = GroundTruthIndex(tmp_path / "gt.jsonl")
    try:
        assert len(index) == len(whole) == 14 * 1 + 13 * 2 + 13 * 3
        for key, entry in whole.items():
            slot, got = index.get(key)
            assert {**got, "image": entry["image"]} == entry
        assert index.get(("r0", 1)) is None and index.get(("nobody", 0)) is None
    finally:
        index.close()


def test_cli_scores_many_large_records_under_a_200_mb_address_space_limit(tmp_path):
    """Every record and ground-truth row carries 20 kB that scoring never reads: held all at once (the
    version before: MemoryError traceback at 200 MB) they would need ~120 MB; streamed, a few kB."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from support.hostile import cli, row

    pad = "p" * 20000
    n = 3000
    with open(tmp_path / "gt.jsonl", "w") as g, open(tmp_path / "res.jsonl", "w") as r:
        for i in range(n):
            x = row(f"s{i}", "/x.png")
            x["text4seg"]["source"] = {"dataset": "synthetic", "note": pad}
            g.write(json.dumps(x) + "\n")
            rec = {"id": f"s{i}", "turn": 0, "query": pad, "answer": x["messages"][1]["content"]}
            rec.update(grid=[4, 4], scheme="rrle", width=48, height=32)
            r.write(json.dumps(rec) + "\n")
    args = ["evaluate", "--pred", "res.jsonl", "--gt", "gt.jsonl", "--out", "out", "--no-progress"]
    proc = cli(args, tmp_path, mem=200 << 20, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert (metrics["n"], metrics["missing"], metrics["referring"]["coarse"]["ciou"]) == (n, 0, 1.0)
    assert len((tmp_path / "out/per_sample.jsonl").read_text().splitlines()) == n


def test_cli_a_bad_last_record_leaves_no_per_sample_file_written_so_far(tmp_path):
    """per_sample.jsonl is written as records come: a bad line at the end still leaves no file."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from support.hostile import cli, one_line_error

    box = np.zeros((H, W), bool)
    box[8:24, 12:36] = True
    write_jsonl([_row(f"r{i}", [box]) for i in range(5)], tmp_path / "gt.jsonl")
    good = [_pred(f"r{i}", 0, _answer(box)) for i in range(4)]
    _write(tmp_path / "res.jsonl", [*good, {**_pred("r4", 0, _answer(box)), "grid": "16x16"}])
    args = ["evaluate", "--pred", "res.jsonl", "--gt", "gt.jsonl", "--out", "out", "--no-progress"]
    proc = cli(args, tmp_path)
    one_line_error(proc, 2, "res.jsonl:5", "r4", "grid")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_one_label_refined_record_scores_as_its_label_map_would():
    """The shortcut of score_referring._refined_mask (one label whose RLE is the union: the union decoded
    once) gives the mask the label map gives, with and without label_only; two labels take the map."""
    from text4seg.data.results import make_record, select_labels
    from text4seg.evaluation.pairs import Options, Pair, refined_map
    from text4seg.evaluation.score_referring import _refined_mask

    answer = "Sure.\n<seg>" + "box *4\n" * 3 + "lid *4</seg>"
    masks = answer_to_masks(answer, H, W, 4, "rrle")
    for refined in ((masks.label_map == 1).astype(np.int32), masks.label_map):  # one label, two labels
        rec = make_record(
            id="a", turn=0, image=None, query="q", labels=["box"], answer=answer, scheme="rrle",
            grid=(4, 4), masks=masks, refined_map=refined,
        )  # fmt: skip
        for label_only in (False, True):
            p = Pair(rec, {"labels": ["box"]}, ("a", 0), "f:1")
            want = select_labels(*refined_map(p), ["box"] if label_only else None)[0]
            got = _refined_mask(p, Options(label_only=label_only))
            assert got.shape == want.shape and (got == want).all() and got.any()
