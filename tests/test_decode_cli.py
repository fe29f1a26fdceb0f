"""text4seg decode: answers from another engine -> mask PNGs, COCO RLE and a repair report."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from text4seg import encode, mask_to_grid, wrap
from text4seg.cli import main
from text4seg.data.rle import rle_to_mask


def test_decode_one_answer_to_png(tmp_path):
    m = np.zeros((20, 30), bool)
    m[5:15, 10:20] = True
    text = "Here.\n" + wrap(encode(mask_to_grid(m, 16, labels="dog")))
    out = tmp_path / "m.png"
    assert main(["decode", "--text", text, "--size", "20x30", "--out", str(out)]) == 0
    png = np.asarray(Image.open(out)) > 0
    assert png.shape == (20, 30) and png[10, 15] and not png[0, 0]


def test_decode_swift_infer_file_with_root(tmp_path):
    Image.new("RGB", (30, 20)).save(tmp_path / "im.png")
    full = wrap(encode(np.full((16, 16), "cat")))
    rows = [
        {"response": full, "images": [{"path": "im.png"}]},  # swift infer style, relative path, no size
        {"response": "garbage without any descriptors", "images": ["im.png"], "width": 30, "height": 20},
        {"response": "<seg>cat *16\n others *3", "images": ["im.png"]},  # truncated: repaired
    ]
    (tmp_path / "res.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "dec"
    assert main(["decode", str(tmp_path / "res.jsonl"), "--out", str(out), "--root", str(tmp_path)]) == 0
    recs = [json.loads(x) for x in (out / "decoded.jsonl").read_text().splitlines()]
    assert rle_to_mask(recs[0]["coarse"]).all()  # object fills the grid: not empty
    assert not rle_to_mask(recs[1]["coarse"]).any()
    assert [r["parse_valid"] for r in recs] == [True, False, False]
    report = json.loads((out / "repairs.json").read_text())
    assert report["answers"] == 3 and report["parse_valid"] == 1
    assert report["no_descriptors"] == 1 and report["unclosed_seg"] == 1
    assert (out / "masks" / "000002.png").exists()


def test_decode_bad_size_is_a_one_line_error(tmp_path, capsys):
    assert main(["decode", "--text", "x", "--size", "big", "--out", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    assert "--size" in err and "HxW" in err and "big" in err and len(err.strip().splitlines()) == 1


def test_decode_missing_image_names_the_file(tmp_path, capsys):
    (tmp_path / "res.jsonl").write_text(json.dumps({"response": "x", "images": ["nope.png"]}) + "\n")
    assert main(["decode", str(tmp_path / "res.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.png" in capsys.readouterr().err


def test_decode_takes_grid_and_scheme_from_the_checkpoint_and_refuses_a_disagreeing_flag(tmp_path, capsys):
    from text4seg.checkpoints.trained import TrainedWith, write_trained

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    write_trained(ckpt, TrainedWith(scheme="compact", grid=(32, 32)))
    mask = np.zeros((64, 64), bool)
    mask[10:40, 20:50] = True
    answer = wrap(encode(mask_to_grid(mask, 32, labels="box"), "compact"))
    out = tmp_path / "m.png"
    args = ["decode", "--text", answer, "--size", "64x64", "--out", str(out)]
    assert main([*args, "--trained-with", str(ckpt)]) == 0
    assert "strict parse: True" in capsys.readouterr().out
    assert (np.asarray(Image.open(out)) > 0).sum() == mask.sum()  # the 32x32 grid covers the box exactly
    assert main([*args, "--trained-with", str(ckpt), "--scheme", "rrle"]) == 2
    err = capsys.readouterr().err
    assert "--scheme rrle disagrees with" in err and "text4seg.json (compact)" in err
    assert main([*args, "--trained-with", str(ckpt), "--scheme", "rrle", "--force-options"]) == 0
    assert "strict parse: False" in capsys.readouterr().out
