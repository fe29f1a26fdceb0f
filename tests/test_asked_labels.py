"""Semantic questions name classes absent from the image: constrained decoding allows what was asked,
never the ground truth's list of present classes."""

from data_builders import build_jsonl
from text4seg.data.jsonl import read_jsonl
from text4seg.data.queries import queries_from_row


def test_semantic_rows_record_the_asked_classes_and_predict_allows_them(tmp_path):
    out = tmp_path / "sem.jsonl"
    opts = {"semantic_rate": 1.0, "absent_rate": 0.0, "multi_rate": 0.0, "num_images": 30}
    build_jsonl("synthetic", out, split="val", limit=30, options=opts, stats=False)
    rows = list(read_jsonl(out))
    assert rows and all(r["text4seg"]["task"] == "semantic" for r in rows)
    wider = 0
    for row in rows:
        meta = row["text4seg"]
        assert set(meta["labels"]) <= set(meta["asked"])
        wider += set(meta["asked"]) > set(meta["labels"])
        (query,) = queries_from_row(row)
        assert set(query.labels) == set(meta["asked"])
    assert wider > 0  # conditioned questions add distractor classes


def test_referring_rows_ask_for_their_own_labels(tmp_path):
    out = tmp_path / "res.jsonl"
    build_jsonl("synthetic", out, split="val", limit=10, options={"semantic_rate": 0.0}, stats=False)
    for row in read_jsonl(out):
        assert row["text4seg"]["asked"] == row["text4seg"]["labels"]
