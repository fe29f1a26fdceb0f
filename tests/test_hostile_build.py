"""Hostile input to ``text4seg build``: annotation files that lie about image sizes, decompression bombs,
FIFOs, absurd RLE sizes, wrong JSON types, symlinked side folders, SIGTERM. Every case must end with one
error line naming the file (and the record), exit 2, no traceback, nothing written outside ``--out``."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image
from support.hostile import MEM_LIGHT, cli, one_line_error
from support.owndata import make_coco_format, make_labelme, make_mask_folder
from support.video import write_mevis

HUGE = 8000  # claimed side, under the pixel limit (2**26): 8000 x 8000 x 20 labels is 1.3 GB of masks


def _bomb_png(side: int = 20000) -> bytes:
    """A tiny PNG whose header claims ``side x side`` pixels (a decompression bomb: ~50 KB on disk)."""
    buf = io.BytesIO()
    Image.new("1", (side, side), 0).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _bomb_png()


def _build(root: Path, out: Path, builder: str, *extra) -> list:
    return ["build", builder, "--root", root, "--out", out, "--split", "val", "--no-stats", *extra]


# ------------------------------------------------------------------- 1. claimed sizes vs the image header
@pytest.mark.parametrize("task", ["semantic", "instance"])
def test_coco_format_claiming_8000_px_sides_for_a_small_image_is_one_line_naming_the_image_id(tmp_path, task):
    data = make_coco_format(tmp_path, n_images=1)
    data["images"][0].update(height=HUGE, width=HUGE)
    data["annotations"] = [a for a in data["annotations"] if isinstance(a["segmentation"], list)]  # polygons
    (tmp_path / "instances.json").write_text(json.dumps(data))
    out = tmp_path / "o.jsonl"
    args = _build(tmp_path / "images", out, "coco-format", "--ann", f"{tmp_path / 'instances.json'}")
    p = cli([*args, "--task", f"{task}"], tmp_path, mem=MEM_LIGHT)
    one_line_error(p, 2, "instances.json", "image id 1", "8000x8000", "48x64")
    assert not out.exists() and not (tmp_path / "o_labels").exists()


def test_labelme_claiming_8000_pixels_per_side_with_20_labels_is_one_line_naming_the_file(tmp_path):
    make_labelme(tmp_path, n_images=2)
    js = tmp_path / "ann" / "shot0.json"
    doc = json.loads(js.read_text())
    doc.update(imageHeight=HUGE, imageWidth=HUGE)
    doc["shapes"] = [
        {"label": f"l{i}", "points": [[1, 1], [9, 9]], "shape_type": "rectangle"} for i in range(20)
    ]
    js.write_text(json.dumps(doc))
    out = tmp_path / "o.jsonl"
    p = cli(_build(tmp_path, out, "labelme"), tmp_path, mem=MEM_LIGHT)
    one_line_error(p, 2, js.name, "8000x8000", "48x64")
    assert not out.exists()


def test_labelme_with_many_labels_on_a_large_image_is_bounded_per_sample(tmp_path, monkeypatch):
    make_labelme(tmp_path, n_images=2)
    js = tmp_path / "ann" / "shot0.json"
    doc = json.loads(js.read_text())
    doc["shapes"] = [
        {"label": f"l{i}", "points": [[1, 1], [9, 9]], "shape_type": "rectangle"} for i in range(9)
    ]
    js.write_text(json.dumps(doc))
    monkeypatch.setenv("TEXT4SEG_MAX_SAMPLE_PIXELS", str(8 * 48 * 64))
    p = cli(_build(tmp_path, tmp_path / "o.jsonl", "labelme"), tmp_path, mem=MEM_LIGHT)
    one_line_error(p, 2, js.name, "10 masks", "TEXT4SEG_MAX_SAMPLE_PIXELS")  # 9 targets + a canvas


# --------------------------------------------------------------------------- 2. bombs and FIFOs as images
def test_mask_folder_bomb_mask_and_bomb_image_are_one_line_naming_the_file(tmp_path, bomb):
    make_mask_folder(tmp_path)
    (tmp_path / "masks" / "p0.png").write_bytes(bomb)
    out = tmp_path / "o.jsonl"
    p = cli([*_build(tmp_path, out, "mask-folder"), "--limit", "1"], tmp_path, mem=MEM_LIGHT)
    one_line_error(p, 2, "p0.png", "queries.jsonl:1")
    make_mask_folder(tmp_path)
    (tmp_path / "images" / "p0.jpg").write_bytes(bomb)
    p = cli([*_build(tmp_path, out, "mask-folder"), "--limit", "1"], tmp_path, mem=MEM_LIGHT)
    one_line_error(p, 2, "p0.jpg", "queries.jsonl:1")
    assert not out.exists()


@pytest.mark.parametrize("where", ["file", "imageData"])
def test_labelme_bomb_image_file_or_embedded_is_one_line(tmp_path, bomb, where):
    docs = make_labelme(tmp_path, n_images=2)
    if where == "file":
        (tmp_path / "images" / "shot0.png").write_bytes(bomb)
        name = "shot0.png"
    else:
        docs[1]["imageData"] = base64.b64encode(bomb).decode()
        (tmp_path / "ann" / "shot1.json").write_text(json.dumps(docs[1]))
        name = "shot1.json"
    out = tmp_path / "o.jsonl"
    p = cli(_build(tmp_path, out, "labelme"), tmp_path, mem=MEM_LIGHT)
    one_line_error(p, 2, name)
    assert not out.exists()


def test_coco_format_bomb_image_is_one_line_naming_the_image(tmp_path, bomb):
    make_coco_format(tmp_path, n_images=1)
    (tmp_path / "images" / "img0.png").write_bytes(bomb)
    args = _build(tmp_path / "images", tmp_path / "o.jsonl", "coco-format")
    p = cli([*args, "--ann", f"{tmp_path / 'instances.json'}", "--task", "semantic"], tmp_path)
    one_line_error(p, 2, "img0.png")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_as_mask_or_image_is_refused_not_read(tmp_path):
    make_mask_folder(tmp_path)
    (tmp_path / "masks" / "p0.png").unlink()
    os.mkfifo(tmp_path / "masks" / "p0.png")
    out = tmp_path / "o.jsonl"
    p = cli([*_build(tmp_path, out, "mask-folder"), "--limit", "1"], tmp_path, timeout=60)
    one_line_error(p, 2, "p0.png", "not a regular file")
    make_coco_format(tmp_path / "c", n_images=1)
    (tmp_path / "c" / "images" / "img0.png").unlink()
    os.mkfifo(tmp_path / "c" / "images" / "img0.png")
    args = _build(tmp_path / "c" / "images", out, "coco-format", "--ann", f"{tmp_path / 'c/instances.json'}")
    one_line_error(cli(args, tmp_path, timeout=60), 2, "img0.png", "not a regular file")


# ------------------------------------------------------------------------------------ 3. MeViS mask_dict
@pytest.mark.parametrize("size", [[60000, 60000], [-5, 64], [48, -1]])
def test_mevis_mask_dict_rle_of_absurd_size_is_one_line_naming_the_key(tmp_path, size):
    write_mevis(tmp_path)
    md = tmp_path / "train" / "mask_dict.json"
    d = json.loads(md.read_text())
    first = next(r for r in d["101"] if r)
    first["size"] = size
    md.write_text(json.dumps(d))
    p = cli(["build", "mevis", "--root", tmp_path, "--out", tmp_path / "o.jsonl", "--no-stats"], tmp_path)
    one_line_error(p, 2, "mask_dict.json", "101")


# -------------------------------------------------------------- 4. wrong types: a generated mutation matrix
DEEP = "[" * 100_000 + "]" * 100_000
BAD_VALUES = {
    "infinity": float("inf"),
    "nan": float("nan"),
    "list": [1, 2],
    "dict": {"a": 1},
    "int": 5,
    "string": "x",
    "superscript": "²",
    "null": None,
    "deep": "@DEEP@",
}


def _set(doc, path: tuple, value):
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


def _dump(doc) -> str:
    return json.dumps(doc).replace('"@DEEP@"', DEEP)


def _coco_case(tmp_path: Path, path: tuple, value) -> list:
    data = make_coco_format(tmp_path, n_images=1)
    _set(data, path, value)
    ann = tmp_path / "instances.json"
    ann.write_text(_dump(data))
    return [*_build(tmp_path / "images", tmp_path / "o.jsonl", "coco-format"), "--ann", f"{ann}"]


def _labelme_case(tmp_path: Path, path: tuple, value) -> list:
    make_labelme(tmp_path, n_images=2)
    js = tmp_path / "ann" / "shot0.json"
    doc = json.loads(js.read_text())
    _set(doc, path, value)
    js.write_text(_dump(doc))
    return _build(tmp_path, tmp_path / "o.jsonl", "labelme")


def _mask_folder_case(tmp_path: Path, path: tuple, value) -> list:
    queries = make_mask_folder(tmp_path)
    _set(queries, path, value)
    (tmp_path / "queries.jsonl").write_text("".join(_dump(q) + "\n" for q in queries))
    return _build(tmp_path, tmp_path / "o.jsonl", "mask-folder")


def _json_case(files: dict, key: str, path: tuple, value) -> None:
    doc = json.loads(files[key].read_text())
    _set(doc, path, value)
    files[key].write_text(_dump(doc))


def _grefcoco_case(tmp_path: Path, path: tuple, value) -> list:
    from support.fakes import make_grefcoco

    make_grefcoco(tmp_path, n_images=2, splits=("val",))
    d = tmp_path / "grefcoco"
    _json_case({"inst": d / "instances.json", "grefs": d / "grefs(unc).json"}, path[0], path[1:], value)
    return _build(tmp_path, tmp_path / "o.jsonl", "grefcoco")


def _interactive_case(tmp_path: Path, path: tuple, value) -> list:
    from support.peers import make_coco_instances

    make_coco_instances(tmp_path, n_images=1)
    _json_case({"inst": tmp_path / "annotations" / "instances_val2017.json"}, path[0], path[1:], value)
    return [*_build(tmp_path, tmp_path / "o.jsonl", "coco-interactive"), "--split", "val2017"]


def _mevis_case(tmp_path: Path, path: tuple, value) -> list:
    write_mevis(tmp_path)
    files = {
        "meta": tmp_path / "train" / "meta_expressions.json",
        "masks": tmp_path / "train" / "mask_dict.json",
    }
    _json_case(files, path[0], path[1:], value)
    return [*_build(tmp_path, tmp_path / "o.jsonl", "mevis"), "--split", "train"]


FAMILIES = {
    "coco-format": (
        _coco_case,
        [
            ("images", 0, "height"),
            ("images", 0, "id"),
            ("annotations", 0, "id"),
            ("annotations", 0, "image_id"),
            ("annotations", 0, "category_id"),
            ("annotations", 0, "segmentation"),
            ("annotations", 2, "segmentation", "size"),
            ("annotations", 2, "segmentation", "counts"),
            ("categories", 0, "id"),
        ],
        ("instances.json",),
    ),
    "labelme": (
        _labelme_case,
        [("imageHeight",), ("imageWidth",), ("shapes", 0, "points"), ("shapes", 0, "label"), ("shapes", 0)],
        ("shot0.json",),
    ),
    "grefcoco": (
        _grefcoco_case,
        [
            ("inst", "images", 0, "height"),
            ("inst", "images", 0, "id"),
            ("inst", "annotations", 0, "segmentation"),
            ("grefs", 0, "ann_id"),
            ("grefs", 0, "image_id"),
            ("grefs", 0, "sentences"),
        ],
        ("instances.json", "grefs(unc).json"),
    ),
    "coco-interactive": (
        _interactive_case,
        [
            ("inst", "images", 0, "width"),
            ("inst", "annotations", 0, "bbox"),
            ("inst", "annotations", 0, "segmentation"),
            ("inst", "annotations", 0, "image_id"),
            ("inst", "annotations", 0, "category_id"),
        ],
        ("instances_val2017.json",),
    ),
    "mevis": (
        _mevis_case,
        [("meta", "videos", "vid_a", "expressions", "0", "anno_id"), ("masks", "101", 1), ("masks", "101")],
        ("meta_expressions.json", "mask_dict.json"),
    ),
    "mask-folder": (
        _mask_folder_case,
        [(0, "image"), (2, "id"), (0, "mask"), (1, "query")],
        ("queries.jsonl",),
    ),
}
MATRIX = [
    pytest.param(fam, path, kind, id=f"{fam}-{'.'.join(map(str, path))}-{kind}")
    for fam, (_, paths, _) in FAMILIES.items()
    for path in paths
    for kind in BAD_VALUES
]


@pytest.mark.parametrize(("family", "path", "kind"), MATRIX)
def test_a_wrong_type_in_an_annotation_file_is_one_line_naming_the_file(
    tmp_path, capsys, monkeypatch, family, path, kind
):
    from text4seg.cli import main

    case, _, names = FAMILIES[family]
    args = case(tmp_path, path, copy.deepcopy(BAD_VALUES[kind]))
    monkeypatch.delenv("TEXT4SEG_DEBUG", raising=False)
    rc = main(list(map(str, args)))
    err = capsys.readouterr().err
    if rc == 0:  # the value was acceptable there (e.g. a string id, a string label): the build is whole
        assert (tmp_path / "o.jsonl").exists(), err
        return
    assert rc == 2 and "Traceback" not in err, err[-2000:]
    lines = [x for x in err.splitlines() if "error:" in x]
    assert len(lines) == 1, err[-2000:]
    assert any(n in lines[0] for n in names), (names, lines[0])
    assert not (tmp_path / "o.jsonl").exists()


def test_classes_txt_not_utf8_is_one_line_naming_it(tmp_path):
    make_mask_folder(tmp_path)
    (tmp_path / "classes.txt").write_bytes(b"background\n\xff\xfesky\n")
    p = cli(_build(tmp_path, tmp_path / "o.jsonl", "mask-folder"), tmp_path)
    one_line_error(p, 2, "classes.txt", "UTF-8")


def test_a_csv_field_over_128_kb_is_one_line_naming_the_file_and_line(tmp_path):
    make_mask_folder(tmp_path, fmt="csv")
    with open(tmp_path / "queries.csv", "a") as fh:
        fh.write('p0.jpg,p0.png,,"' + "x" * 200_000 + '"\n')
    p = cli(_build(tmp_path, tmp_path / "o.jsonl", "mask-folder"), tmp_path)
    one_line_error(p, 2, "queries.csv", "field larger than field limit")


def test_a_superscript_digit_id_is_one_line_naming_the_line(tmp_path):
    queries = make_mask_folder(tmp_path)
    queries[2]["id"] = "²"
    (tmp_path / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    p = cli(_build(tmp_path, tmp_path / "o.jsonl", "mask-folder"), tmp_path)
    one_line_error(p, 2, "queries.jsonl:3", "'²'")


# ----------------------------------------------------------------------------- 5. links beside --out
def _coco_semantic(tmp_path: Path, out: Path) -> list:
    make_coco_format(tmp_path / "ds", n_images=1)
    args = _build(
        tmp_path / "ds" / "images", out, "coco-format", "--ann", f"{tmp_path / 'ds/instances.json'}"
    )
    return [*args, "--task", "semantic", "--with-gt"]


@pytest.mark.parametrize("level", ["labels", "split"])
def test_a_symlinked_label_folder_beside_out_is_refused_and_nothing_lands_behind_it(tmp_path, level):
    out = tmp_path / "o.jsonl"
    outside = tmp_path / "outside"
    outside.mkdir()
    if level == "labels":
        (tmp_path / "o_labels").symlink_to(outside, target_is_directory=True)
    else:
        (tmp_path / "o_labels").mkdir()
        (tmp_path / "o_labels" / "val").symlink_to(outside, target_is_directory=True)
    p = cli(_coco_semantic(tmp_path, out), tmp_path)
    one_line_error(p, 2, "symbolic link")
    assert not list(outside.iterdir()) and not out.exists()


def test_a_symlinked_image_folder_beside_out_is_refused_for_labelme(tmp_path):
    make_labelme(tmp_path / "ds", n_images=2)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "o_images").symlink_to(outside, target_is_directory=True)
    p = cli(_build(tmp_path / "ds", tmp_path / "o.jsonl", "labelme"), tmp_path)
    one_line_error(p, 2, "o_images", "symbolic link")
    assert not list(outside.iterdir())


def test_a_hard_linked_label_png_is_replaced_not_written_through(tmp_path):
    out = tmp_path / "o.jsonl"
    args = _coco_semantic(tmp_path, out)
    p = cli(args, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    png = next((tmp_path / "o_labels").rglob("*.png"))
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"precious")
    png.unlink()
    os.link(precious, png)
    p = cli(args, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert precious.read_bytes() == b"precious" and png.read_bytes()[:4] == b"\x89PNG"


def _claim(inst_path: Path, side: int = 4000) -> None:
    data = json.loads(inst_path.read_text())
    for im in data["images"]:
        im.update(height=side, width=side)
    inst_path.write_text(json.dumps(data))


@pytest.mark.parametrize("family", ["grefcoco", "coco-interactive"])
def test_refer_and_interactive_builders_check_claimed_sizes_against_the_header(tmp_path, capsys, family):
    from support.fakes import make_grefcoco
    from support.peers import make_coco_instances

    from text4seg.cli import main

    if family == "grefcoco":
        make_grefcoco(tmp_path, n_images=2, splits=("val",))
        inst = tmp_path / "grefcoco" / "instances.json"
        split = "val"
    else:
        make_coco_instances(tmp_path, n_images=2)
        inst = tmp_path / "annotations" / "instances_val2017.json"
        split = "val2017"
    _claim(inst)
    out = tmp_path / "o.jsonl"
    rc = main(["build", family, "--root", str(tmp_path), "--out", str(out), "--split", split, "--no-stats"])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "error:" in x]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "4000x4000" in lines[0] and inst.name in lines[0] and not out.exists(), lines[0]


@pytest.mark.parametrize("counts", ["PPP", "0P"])
def test_a_truncated_compressed_rle_is_one_line_naming_the_file_and_annotation(tmp_path, counts):
    from support.fakes import make_refer

    make_refer(tmp_path, "refclef", n_images=3, splits=("val",))
    inst = tmp_path / "refclef" / "instances.json"
    data = json.loads(inst.read_text())
    data["annotations"][0]["segmentation"] = {"size": [512, 512], "counts": counts}
    inst.write_text(json.dumps(data))
    out = tmp_path / "o.jsonl"
    args = ["build", "refclef", "--root", str(tmp_path), "--out", str(out), "--split", "val", "--no-stats"]
    line = one_line_error(cli(args, tmp_path), 2, inst.name, "annotation 1000", "end inside a value")
    assert not out.exists(), line
