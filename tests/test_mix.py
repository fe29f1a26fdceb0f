"""``text4seg mix``: exact counts per source, determinism, cycling, presets, atomic output."""

from __future__ import annotations

import json

import pytest

from text4seg.cli import main
from text4seg.data.mix import apportion, mix_jsonl, parse_source, preset_weights


def _src(path, tag, n):
    with open(path, "w") as fh:
        for i in range(n):
            row = {
                "messages": [{"role": "user", "content": f"{tag}{i}"}, {"role": "assistant", "content": "a"}]
            }
            fh.write(json.dumps(row) + "\n")
    return str(path)


def _tags(path):
    return [json.loads(line)["messages"][0]["content"] for line in open(path)]


def test_counts_follow_the_ratios_exactly_and_stop_at_the_scarcest_source(tmp_path):
    a, b, c = (
        _src(tmp_path / "a.jsonl", "a", 100),
        _src(tmp_path / "b.jsonl", "b", 20),
        _src(tmp_path / "c", "c", 50),
    )
    rep = mix_jsonl([(a, 3), (b, 1), (c, 0.5)], tmp_path / "m.jsonl", seed=1)
    # b is scarcest: 20 lines at share 1/4.5 -> 90 lines, 60 : 20 : 10
    assert [s["taken"] for s in rep["sources"]] == [60, 20, 10] and rep["total"] == 90
    tags = _tags(tmp_path / "m.jsonl")
    assert [sum(t.startswith(x) for t in tags) for x in "abc"] == [60, 20, 10]
    assert len(set(tags)) == 90  # no line repeats without --total
    a_idx = [int(t[1:]) for t in tags if t[0] == "a"]
    assert a_idx == sorted(a_idx)  # order within a source is kept


def test_same_seed_same_bytes_other_seed_other_interleaving(tmp_path):
    a, b = _src(tmp_path / "a.jsonl", "a", 30), _src(tmp_path / "b.jsonl", "b", 30)
    mix_jsonl([(a, 1), (b, 1)], tmp_path / "1.jsonl", seed=7)
    mix_jsonl([(a, 1), (b, 1)], tmp_path / "2.jsonl", seed=7)
    mix_jsonl([(a, 1), (b, 1)], tmp_path / "3.jsonl", seed=8)
    assert (tmp_path / "1.jsonl").read_bytes() == (tmp_path / "2.jsonl").read_bytes()
    assert _tags(tmp_path / "1.jsonl") != _tags(tmp_path / "3.jsonl")


def test_total_cycles_a_source_that_runs_out(tmp_path):
    a, b = _src(tmp_path / "a.jsonl", "a", 5), _src(tmp_path / "b.jsonl", "b", 100)
    rep = mix_jsonl([(a, 1), (b, 1)], tmp_path / "m.jsonl", total=24, seed=0)
    assert [s["taken"] for s in rep["sources"]] == [12, 12] and rep["sources"][0]["passes"] == 2.4
    a_tags = [t for t in _tags(tmp_path / "m.jsonl") if t[0] == "a"]
    assert sorted(set(a_tags)) == [f"a{i}" for i in range(5)]  # two whole passes, then 2 of 5
    assert sorted(a_tags.count(t) for t in set(a_tags)) == [2, 2, 2, 3, 3]


def test_apportion_is_exact_and_within_one_of_the_share():
    for total, w in [(10, [3, 1, 0.5]), (7, [1, 1, 1]), (0, [1, 2]), (1000, [9, 6, 3, 1])]:
        c = apportion(total, w)
        assert sum(c) == total
        assert all(abs(ci - total * wi / sum(w)) < 1 for ci, wi in zip(c, w))


def test_parse_source_and_presets():
    assert parse_source("a.jsonl:3") == ("a.jsonl", 3.0)
    assert parse_source("dir:x/a.jsonl") == ("dir:x/a.jsonl", 1.0)
    assert parse_source("a.jsonl:0.5") == ("a.jsonl", 0.5)
    with pytest.raises(ValueError, match="must be > 0"):
        parse_source("a.jsonl:0")
    assert preset_weights("gsva", 4) == [9, 6, 3, 1] and preset_weights("psalm", 3) == [1, 1, 1]
    with pytest.raises(ValueError, match="takes 4 files"):
        preset_weights("gsva", 2)


def test_cli_preset_gsva_and_bad_line_leaves_no_output(tmp_path, capsys):
    files = [_src(tmp_path / f"{t}.jsonl", t, 40) for t in ("s", "r", "v", "q")]
    assert (
        main(["mix", *files, "--preset", "gsva", "--total", "190", "--out", str(tmp_path / "m.jsonl")]) == 0
    )
    rep = json.loads(capsys.readouterr().out)
    assert [s["taken"] for s in rep["sources"]] == [90, 60, 30, 10]
    with open(files[1], "a") as fh:
        fh.write('{"no": "messages"}\n')
    out = tmp_path / "bad.jsonl"
    assert main(["mix", f"{files[0]}:1", f"{files[1]}:1", "--total", "200", "--out", str(out)]) == 2
    assert "r.jsonl:41" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_tiny_llava_trains_three_steps_on_a_mixed_file(tmp_path):
    """coco-format + labelme + a plain ms-swift VQA file (no text4seg key) -> mix -> text4seg train."""
    import subprocess
    import sys

    pytest.importorskip("swift")
    pytest.importorskip("pycocotools")
    from support.offline import offline_env
    from support.owndata import make_coco_format, make_labelme
    from test_sft_e2e import _recipe

    from data_builders import build_jsonl
    from text4seg.demo.model import make_tiny_llava

    make_coco_format(tmp_path / "coco", n_images=4)
    make_labelme(tmp_path / "lm", n_images=2)
    ref, lm = tmp_path / "ref.jsonl", tmp_path / "lm.jsonl"
    build_jsonl(
        "coco-format",
        ref,
        root=tmp_path / "coco" / "images",
        stats=False,
        options={"ann": str(tmp_path / "coco" / "instances.json")},
    )
    build_jsonl("labelme", lm, root=tmp_path / "lm", stats=False)
    image = str((tmp_path / "coco" / "images" / "img0.png").resolve())
    vqa = tmp_path / "vqa.jsonl"
    with open(vqa, "w") as fh:
        for q in ("What colour dominates?", "Is there text?", "How many objects?"):
            msgs = [{"role": "user", "content": "<image>" + q}, {"role": "assistant", "content": "Noise."}]
            fh.write(json.dumps({"messages": msgs, "images": [image]}) + "\n")
    mixed = tmp_path / "mixed.jsonl"
    rep = mix_jsonl([(ref, 3), (lm, 2), (vqa, 1)], mixed, total=12, seed=0)
    assert [s["taken"] for s in rep["sources"]] == [6, 4, 2]
    corpus = [m["content"] for line in mixed.read_text().splitlines() for m in json.loads(line)["messages"]]
    model = make_tiny_llava(tmp_path / "tiny_llava", seed=0, corpus=corpus)
    recipe = _recipe(tmp_path, model, mixed)
    text = (
        recipe.read_text().replace("max_steps: 20", "max_steps: 3").replace("save_steps: 20", "save_steps: 3")
    )
    recipe.write_text(text)
    cmd = [sys.executable, "-m", "text4seg.cli", "train", str(recipe)]
    env = offline_env(tmp_path)
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert f"data ok: {mixed} (12 rows)" in proc.stdout
    logged = [json.loads(x) for x in (tmp_path / "out" / "logging.jsonl").read_text().splitlines()]
    assert sum(x.get("loss") is not None for x in logged) >= 2
