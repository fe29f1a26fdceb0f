"""``text4seg merge``: shard results into one file, each (id, turn) once, overlays still reachable."""

from __future__ import annotations

import json

import pytest

from text4seg.cli import main
from text4seg.data.jsonl import read_jsonl


def _shard(folder, recs, tail: bytes = b""):
    folder.mkdir(parents=True)
    (folder / "overlays").mkdir()
    with open(folder / "results.jsonl", "wb") as fh:
        for r in recs:
            fh.write(json.dumps(r).encode() + b"\n")
        fh.write(tail)
    for r in recs:
        if r.get("overlay"):
            (folder / r["overlay"]).write_bytes(b"png")
    return folder


def _rec(i, answer="<seg>...</seg>"):
    return {"id": f"s{i}", "turn": 0, "answer": answer, "overlay": f"overlays/s{i}_t0.png", "mask_png": None}


def test_merge_keeps_every_key_once_skips_a_partial_line_and_keeps_overlays_reachable(tmp_path, capsys):
    a = _shard(tmp_path / "w0", [_rec(0), _rec(2)])
    b = _shard(tmp_path / "w1", [_rec(1), _rec(2)], tail=b'{"id": "s3", "tu')  # s2 re-run; s3 cut off
    out = tmp_path / "merged"
    assert main(["merge", str(a), str(b / "results.jsonl"), "--out", str(out)]) == 0
    recs = list(read_jsonl(out / "results.jsonl"))
    assert [r["id"] for r in recs] == ["s0", "s2", "s1"]
    assert all((out / r["overlay"]).read_bytes() == b"png" for r in recs)
    assert "1 duplicates dropped, 1 partial lines skipped" in capsys.readouterr().out


def test_shards_that_disagree_on_a_key_are_an_error_naming_both_files(tmp_path, capsys):
    a = _shard(tmp_path / "w0", [_rec(0)])
    b = _shard(tmp_path / "w1", [_rec(0, answer="<seg>other</seg>")])
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "('s0', 0)" in err and "w0" in err and "w1" in err
    assert not (tmp_path / "m" / "results.jsonl").exists()


@pytest.mark.parametrize("bad", [b"not json\n", b'["a list"]\n'])
def test_a_broken_line_before_the_end_is_an_error_with_file_and_line(tmp_path, capsys, bad):
    a = _shard(tmp_path / "w0", [_rec(0)], tail=bad + json.dumps(_rec(1)).encode() + b"\n")
    assert main(["merge", str(a), "--out", str(tmp_path / "m")]) == 2
    assert "results.jsonl:2:" in capsys.readouterr().err
