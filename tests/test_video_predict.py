"""Video prediction: decode per sampled frame, nearest-keyframe fill (the path these tests exercise: the
``sam2`` package is not installed), submission layout, overlay GIF, J&F through ``text4seg evaluate``."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from support import video as V

from data_builders import build_jsonl
from text4seg.cli import main
from text4seg.data.rle import rle_to_mask
from text4seg.descriptors import mask_to_grid
from text4seg.descriptors.video import encode_frames
from text4seg.inference.video import fill_nearest, predict_video


def test_fill_takes_the_nearest_sampled_frame_earlier_on_ties():
    keyed = {0: np.full((1, 1), 0), 3: np.full((1, 1), 3)}
    assert [int(m[0, 0]) for m in fill_nearest(keyed, 6)] == [0, 0, 3, 3, 3, 3]
    keyed = {1: np.full((1, 1), 1), 3: np.full((1, 1), 3)}
    assert [int(m[0, 0]) for m in fill_nearest(keyed, 4)] == [1, 1, 1, 3]


def test_known_answer_gives_submission_pngs_for_every_frame_and_a_gif(tmp_path, capsys):
    clip = tmp_path / "vid_a"
    V.write_clip(clip)
    gt = V.target_masks(1)
    sampled = [0, 2, 5]
    answer = "Here.\n" + encode_frames([mask_to_grid(gt[i], 16, labels="square") for i in sampled])
    rec = predict_video(
        None, clip, "Segment the square.", tmp_path / "out", expression_id="7", n_frames=3, answer=answer
    )
    assert "propagation: nearest" in capsys.readouterr().out
    assert rec["sampled"] == sampled and rec["propagation"] == "nearest" and rec["repairs"] == []
    pngs = sorted(os.listdir(tmp_path / "out" / "Annotations" / "vid_a" / "7"))
    assert pngs == [f"{n}.png" for n in V.frame_names()]
    f1 = np.asarray(Image.open(tmp_path / "out" / "Annotations" / "vid_a" / "7" / "00001.png")) > 0
    f0 = np.asarray(Image.open(tmp_path / "out" / "Annotations" / "vid_a" / "7" / "00000.png")) > 0
    assert (f1 == f0).all() and f0[24, 12]  # frame 1 filled from sampled frame 0
    with Image.open(tmp_path / "out" / "overlays" / "vid_a_7.gif") as gif:
        assert gif.n_frames == V.N_FRAMES


def test_evaluate_reports_j_and_f_for_video_results(tmp_path, capsys):
    root = V.write_refytvos(tmp_path / "ytvos", "train")
    built = tmp_path / "built.jsonl"
    build_jsonl("refytvos", built, root=root, split="train", grid=16, with_gt=True, options={"frames": 3})
    gt = V.target_masks(1)
    answer = encode_frames([mask_to_grid(gt[i], 16, labels="x") for i in (0, 2, 5)])
    predict_video(
        None,
        root / "train" / "JPEGImages" / "vid_a",
        "q",
        tmp_path / "out",
        expression_id="0",
        n_frames=3,
        answer=answer,
        log=lambda s: None,
    )
    assert (
        main(["evaluate", "--pred", str(tmp_path / "out" / "video_results.jsonl"), "--gt", str(built)]) == 0
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["pairs"] == 2 and out["missing"] == 1  # expression 1 (the bar) was not predicted
    assert 0.3 < out["jf"] < 0.5  # expression 0 near 1 (16x16 grid), expression 1 scored 0


@pytest.mark.slow
def test_cli_predict_video_with_a_tiny_vlm_writes_every_frame(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    import torch

    from text4seg.demo.model import make_tiny_llava

    torch.set_num_threads(1)
    model = make_tiny_llava(tmp_path / "llava")
    clip = tmp_path / "clip"
    V.write_clip(clip)
    argv = [
        "predict",
        "--model",
        str(model),
        "--model-type",
        "llava1_5_hf",
        "--video",
        str(clip),
        "--query",
        "Track the red square.",
        "--frames",
        "2",
        "--max-new-tokens",
        "12",
        "--grid",
        "8",
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    ]
    assert main(argv) == 0
    assert "propagation: nearest" in capsys.readouterr().out
    rec = json.loads((tmp_path / "out" / "video_results.jsonl").read_text())
    assert rec["sampled"] == [0, 5] and len(rec["masks"]) == V.N_FRAMES
    assert rle_to_mask(rec["masks"][0]).shape == (V.H, V.W)
