"""Issue 27 through the real CLI: a present target no grid cell samples is counted and never written as
absent (every own-data builder, one shared rule); mask-folder reads binary masks of every PNG mode;
LabelMe 6.x shape types build.

Before the fixes (HEAD f6018c0): the 90x40 lost polygon was written as a no-target row (coco-format,
mask-folder) or a positive sentence with no label (labelme), ``lost_on_grid: 0``, exit 0 on train too; an
LA/RGBA binary mask with an opaque alpha gave a whole-image target (3200 of 3200 pixels instead of 800);
an ``oriented_rectangle`` shape failed the build with "unknown shape_type".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.hostile import cli, one_line_error

from text4seg.data.jsonl import read_jsonl
from text4seg.data.rle import rle_to_mask

pytest.importorskip("pycocotools")

H, W = 40, 90  # the example: a polygon over rows 4-6 and columns 4-5, lost on a 16x16 grid
POLY = [4, 4, 5, 4, 5, 6, 4, 6]


def _lost_fixtures(root: Path) -> dict[str, list[str]]:
    """One lost target per own-data builder; returns the build arguments of each."""
    img = np.zeros((H, W, 3), np.uint8)
    (root / "cf" / "images").mkdir(parents=True)
    Image.fromarray(img).save(root / "cf" / "images" / "a.png")
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [POLY]}],
        "categories": [{"id": 1, "name": "cup"}],
    }
    (root / "cf" / "instances.json").write_text(json.dumps(coco))
    (root / "lm").mkdir()
    Image.fromarray(img).save(root / "lm" / "a.png")
    shape = {"label": "cup", "points": [POLY[i : i + 2] for i in range(0, 8, 2)], "shape_type": "polygon"}
    doc = {"shapes": [shape], "imagePath": "a.png", "imageData": None, "imageHeight": H, "imageWidth": W}
    (root / "lm" / "a.json").write_text(json.dumps(doc))
    (root / "mf" / "images").mkdir(parents=True)
    (root / "mf" / "masks").mkdir()
    Image.fromarray(img).save(root / "mf" / "images" / "a.png")
    m = np.zeros((H, W), np.uint8)
    m[4:7, 4:6] = 255
    Image.fromarray(m).save(root / "mf" / "masks" / "a.png")
    (root / "mf" / "queries.jsonl").write_text(json.dumps({"image": "a.png", "query": "cup"}) + "\n")
    return {
        "coco-format": ["--root", root / "cf" / "images", "--ann", root / "cf" / "instances.json"],
        "labelme": ["--root", root / "lm"],
        "mask-folder": ["--root", root / "mf"],
    }


def _report(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("builder", ["coco-format", "labelme", "mask-folder"])
def test_lost_on_grid_target_is_counted_and_kept_with_its_label_on_val(tmp_path, builder):
    args = _lost_fixtures(tmp_path)[builder]
    out = tmp_path / "val.jsonl"
    rep = _report(cli(["build", builder, *args, "--split", "val", "--out", out, "--quiet"], tmp_path))
    assert rep["targets"]["lost_on_grid"] == 1 and rep["targets"]["policy"] == "keep"
    (row,) = list(read_jsonl(out))
    assert row["text4seg"]["labels"] == ["cup"]
    assert rle_to_mask(row["text4seg"]["gt"]["masks"][0]).sum() > 0  # scored on the full-resolution mask


@pytest.mark.parametrize("builder", ["coco-format", "labelme", "mask-folder"])
def test_lost_on_grid_target_fails_a_train_build_and_skip_bad_drops_it(tmp_path, builder):
    args = _lost_fixtures(tmp_path)[builder]
    out = tmp_path / "train.jsonl"
    proc = cli(["build", builder, *args, "--split", "train", "--out", out, "--quiet"], tmp_path)
    one_line_error(proc, 2, "lost_on_grid: 1", builder)
    assert not out.exists()
    rep = _report(cli(["build", builder, *args, "--out", out, "--skip-bad", "--quiet"], tmp_path))
    assert rep["targets"]["lost_on_grid"] == 1 and rep["targets"]["dropped"] == 1 and rep["samples"] == 0


# ---------------------------------------------------------------------------------- mask-folder PNG modes
MODES = ["1", "L", "LA", "LA-cutout", "P", "RGB", "RGBA", "RGBA-cutout", "I;16"]


def _mask_png(path: Path, fg: np.ndarray, mode: str) -> None:
    """``fg`` saved as a PNG of ``mode``; ``*-cutout``: colour 0 everywhere, the alpha channel is the mask."""
    h, w = fg.shape
    v = Image.fromarray(fg.astype(np.uint8) * 255)
    opaque, zero = Image.new("L", (w, h), 255), Image.new("L", (w, h), 0)
    if mode == "1":
        im = Image.fromarray(fg)
    elif mode == "L":
        im = v
    elif mode == "LA":
        im = Image.merge("LA", [v, opaque])
    elif mode == "LA-cutout":
        im = Image.merge("LA", [zero, v])
    elif mode == "P":
        im = Image.fromarray(fg.astype(np.uint8), "P")
        im.putpalette([0, 0, 0, 255, 255, 255])
    elif mode == "RGB":
        im = Image.merge("RGB", [v, v, v])
    elif mode == "RGBA":
        im = Image.merge("RGBA", [v, v, v, opaque])
    elif mode == "RGBA-cutout":
        im = Image.merge("RGBA", [zero, zero, zero, v])
    else:
        im = Image.fromarray(fg.astype(np.uint16) * 65535)
    im.save(path)
    assert Image.open(path).mode == mode.split("-")[0]


def test_mask_folder_reads_a_binary_mask_the_same_in_every_png_mode(tmp_path):
    fg = np.zeros((40, 80), bool)
    fg[10:30, 20:60] = True  # 800 of 3200 pixels
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    rows = []
    for k, mode in enumerate(MODES):
        _mask_png(tmp_path / "masks" / f"m{k}.png", fg, mode)
        rows.append({"image": "a.png", "mask": f"m{k}.png", "query": f"thing {k}"})
    (tmp_path / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "o.jsonl"
    _report(
        cli(["build", "mask-folder", "--root", tmp_path, "--split", "val", "--out", out, "--quiet"], tmp_path)
    )
    got = {r["text4seg"]["source"]["sent_ids"][0]: r for r in read_jsonl(out)}
    assert len(got) == len(MODES)
    for k, mode in enumerate(MODES):
        m = rle_to_mask(got[str(k + 1)]["text4seg"]["gt"]["masks"][0])
        assert (m == fg).all(), (mode, int(m.sum()))


def test_mask_folder_id_on_a_grey_rgba_mask_reads_its_value_and_a_colour_mask_is_refused(tmp_path):
    from data_builders.base import BadInput
    from data_builders.mask_folder import read_mask

    vals = np.zeros((8, 8), np.uint8)
    vals[2:4, 2:6] = 3
    grey = Image.fromarray(vals)
    Image.merge("RGBA", [grey, grey, grey, Image.new("L", (8, 8), 255)]).save(tmp_path / "g.png")
    assert read_mask(tmp_path / "g.png", 3, "q:1").sum() == 8
    Image.merge("RGB", [grey, Image.new("L", (8, 8), 0), grey]).save(tmp_path / "c.png")
    with pytest.raises(BadInput, match="c.png is a colour RGB image"):
        read_mask(tmp_path / "c.png", 3, "q:1")


# ------------------------------------------------------------------------------------------------ LabelMe
def test_labelme_6_oriented_rectangle_and_point_build_through_the_cli(tmp_path):
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "a.png")
    shapes = [
        {
            "label": "tag",
            "points": [[10, 4], [30, 14], [25, 24], [5, 14]],
            "shape_type": "oriented_rectangle",
        },
        {"label": "eye", "points": [[40, 30]], "shape_type": "point"},
        {"label": "dots", "points": [[3, 44], [6, 45]], "shape_type": "points"},
    ]
    doc = {"shapes": shapes, "imagePath": "a.png", "imageData": None, "imageHeight": 48, "imageWidth": 64}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    out = tmp_path / "o.jsonl"
    rep = _report(
        cli(["build", "labelme", "--root", tmp_path, "--split", "val", "--out", out, "--quiet"], tmp_path)
    )
    rows = list(read_jsonl(out))
    assert rep["samples"] == 2 and rep["targets"]["lost_on_grid"] == 0
    labels = sorted(r["text4seg"]["labels"][0] for r in rows)
    assert labels == ["eye", "tag"]
