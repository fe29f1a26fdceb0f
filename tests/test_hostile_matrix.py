"""The hostile matrix (issue 25): every command against every class of hostile input it reads.

Each case is generated here (tiny, seeded), run through the real command line in a subprocess under a
memory and a time limit (:func:`support.hostile.cli`), and held to one contract: exit 2, exactly one
``error:`` line naming the file (and the line where there is one), no traceback, and the folder of the
case unchanged afterwards apart from empty folders: nothing written outside ``--out``, no half-written
output, no hidden temporary file, no linked file written through. Case ids read ``command-class``.

Classes: 1 missing file, a folder, a FIFO where a file goes; 2 empty file, bytes that are not UTF-8, a
100000-deep JSON nesting, ``NaN``, a line over ``TEXT4SEG_MAX_LINE_BYTES``; 3 wrong types in key row
fields; 4 a decompression-bomb PNG and a truncated PNG as image, label map or mask; 5 RLE sizes
60000x60000 and negative; 6 a symbolic and a hard link where an output goes; 7 a model folder with code.
Plus ``predict --api`` against a hostile chat server and ``app`` on a port in use.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.fakes import make_refer
from support.hostile import (
    MEM_LIGHT,
    MEM_TORCH,
    ChatServer,
    bomb_png,
    cli,
    evil_model,
    one_line_error,
    row,
    snapshot,
    write_jsonl,
)
from support.owndata import make_coco_format, make_labelme, make_mask_folder

from text4seg.cli import main

LINE_LIMIT = 4096  # TEXT4SEG_MAX_LINE_BYTES of every case: a long line costs 8 KB, not 64 MiB
ENV = {"TEXT4SEG_MAX_LINE_BYTES": str(LINE_LIMIT)}
DEEP = b"[" * 100_000 + b"]" * 100_000
FIFO_TIMEOUT = 30  # a command that opens a FIFO for reading blocks forever: it must not get that far
HANG_TIMEOUT = 5  # for the known hangs (strict xfails): long enough to show the hang, short for the suite
HUGE_RLE = {"size": [60000, 60000], "counts": ""}
NEGATIVE_RLE = {"size": [-32, 48], "counts": ""}
ANSWER4 = "Sure.\n<seg>" + "box *4\n" * 3 + "box *4</seg>"
NP = ["--no-progress"]  # no progress bars


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Shared, read-only inputs: two 32x48 images, a built JSONL (ids a, b; grid 4x4), its decoded
    results, a model folder without code or weights."""
    d = tmp_path_factory.mktemp("matrix")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(d / f"img{i}.png")
    write_jsonl(d / "gt.jsonl", [row("a", str(d / "img0.png")), row("b", str(d / "img1.png"))])
    assert main(["decode", str(d / "gt.jsonl"), "--out", str(d / "dec"), "--no-progress", "--quiet"]) == 0
    shutil.copyfile(d / "dec" / "decoded.jsonl", d / "results.jsonl")
    (d / "plain_model").mkdir()
    (d / "plain_model" / "config.json").write_text("{}")
    return d


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> bytes:
    return bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png").read_bytes()


# ------------------------------------------------------------------------------------------- running
@dataclass
class Case:
    """A command line, what its one error line must name, and what it may leave behind."""

    args: list
    names: list[str]
    timeout: float = 60
    may_write: set[str] = field(default_factory=set)  # paths (relative to the case folder) it may create
    mem: int = MEM_LIGHT


def check(tmp: Path, case: Case, marker: Path | None = None) -> str:
    """Run ``case`` in ``tmp`` and hold it to the contract; returns the error line."""
    before = snapshot(tmp)
    p = cli(case.args, tmp, mem=case.mem, timeout=case.timeout, env=ENV)
    line = one_line_error(p, 2, *case.names)
    assert "--help)" not in line, line  # a usage error names the file too: the case must reach the data
    after = snapshot(tmp)
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, ("changed or removed", changed)
    new = sorted(k for k in after if k not in before and after[k] != ("dir",) and k not in case.may_write)
    assert not new, ("written", new)
    assert marker is None or not marker.exists(), "the model folder's code ran"
    return line


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _timeout(case_id: str, kind: str, xfails: dict[str, str]) -> float:
    """The time limit of a case: FIFO cases get 30 s, known hangs a few seconds."""
    if xfails.get(case_id, "").startswith("hangs"):
        return HANG_TIMEOUT
    return FIFO_TIMEOUT if kind == "fifo" else 60


def _xfail(cases: list, reasons: dict[str, str], raises: type[BaseException] | None = None) -> list:
    """``pytest.param`` for each (id, ...) tuple; ids in ``reasons`` are strict xfails (of ``raises``
    only, when given: any other failure of such a case is a failure)."""
    params = []
    for c in cases:
        marks = []
        if c[0] in reasons:
            marks = [pytest.mark.xfail(strict=True, reason=reasons[c[0]], raises=raises)]
        params.append(pytest.param(*c[1:], id=c[0], marks=marks))
    return params


# ------------------------------------------------------------------------ the files each command reads
@dataclass
class Slot:
    """Where a hostile file goes: ``target`` (written good first), the command, its line-oriented kind."""

    target: Path
    args: list
    kind: str  # "jsonl" (line numbers), "doc" (one JSON document), "yaml"
    may_write: set[str] = field(default_factory=set)


def _recipe(t: Path, model: Path, data: Path) -> Path:
    recipe = t / "r.yaml"
    recipe.write_text(f"model: {model}\ndataset: {data}\n")
    return recipe


TRAIN = ["--dry-run", "--no-check-args", "--no-check-lengths"]


def _slot_train(ws: Path, t: Path) -> Slot:
    data = _copy(ws / "gt.jsonl", t / "data.jsonl")
    return Slot(data, ["train", _recipe(t, ws / "plain_model", data), *TRAIN], "jsonl")


def _slot_train_recipe(ws: Path, t: Path) -> Slot:
    recipe = _recipe(t, ws / "plain_model", ws / "gt.jsonl")
    return Slot(recipe, ["train", recipe, *TRAIN], "yaml")


def _slot_export(ws: Path, t: Path) -> Slot:
    ckpt = t / "ckpt"
    ckpt.mkdir()
    (ckpt / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(ws / "plain_model")})
    )
    (ckpt / "args.json").write_text(json.dumps({"model": str(ws / "plain_model")}))
    args = ["export", ckpt, "--out", t / "merged", "--dry-run", "--swift", "swift"]
    return Slot(ckpt / "args.json", args, "doc")


def _build(root: Path, t: Path, builder: str, *extra) -> list:
    return ["build", builder, "--root", root, "--out", t / "o.jsonl", "--split", "val", "--no-stats", *extra]


def _slot_build_coco(ws: Path, t: Path) -> Slot:
    make_coco_format(t / "c", n_images=1)
    ann = t / "c" / "instances.json"
    return Slot(ann, _build(t / "c" / "images", t, "coco-format", "--ann", ann), "doc")


def _slot_build_labelme(ws: Path, t: Path) -> Slot:
    make_labelme(t / "l", n_images=2)
    return Slot(t / "l" / "ann" / "shot0.json", _build(t / "l", t, "labelme"), "doc")


def _slot_build_mask_folder(ws: Path, t: Path) -> Slot:
    make_mask_folder(t / "m")
    return Slot(t / "m" / "queries.jsonl", _build(t / "m", t, "mask-folder"), "jsonl")


def _slot_build_refclef(ws: Path, t: Path) -> Slot:
    make_refer(t / "r", "refclef", n_images=2, splits=("val",))
    return Slot(t / "r" / "refclef" / "instances.json", _build(t / "r", t, "refclef"), "doc")


def _slot_evaluate_gt(ws: Path, t: Path) -> Slot:
    gt = _copy(ws / "gt.jsonl", t / "gt.jsonl")
    return Slot(
        gt,
        ["evaluate", "--pred", ws / "results.jsonl", "--gt", gt, "--out", t / "ev", *NP],
        "jsonl",
    )


def _slot_evaluate_pred(ws: Path, t: Path) -> Slot:
    pred = _copy(ws / "results.jsonl", t / "res.jsonl")
    return Slot(pred, ["evaluate", "--pred", pred, "--gt", ws / "gt.jsonl", "--out", t / "ev", *NP], "jsonl")


FILE_SLOTS: dict[str, Callable[[Path, Path], Slot]] = {
    "stats": lambda ws, t: Slot(f := _copy(ws / "gt.jsonl", t / "in.jsonl"), ["stats", f], "jsonl"),
    "mix": lambda ws, t: Slot(
        f := _copy(ws / "gt.jsonl", t / "in.jsonl"), ["mix", f, "--out", t / "mix.jsonl"], "jsonl"
    ),
    "train": _slot_train,
    "train_recipe": _slot_train_recipe,
    "export_args": _slot_export,
    "predict": lambda ws, t: Slot(
        f := _copy(ws / "gt.jsonl", t / "in.jsonl"),
        ["predict", "--model", ws / "plain_model", "--jsonl", f, "--out", t / "out", *NP],
        "jsonl",
    ),
    "decode": lambda ws, t: Slot(
        f := _copy(ws / "gt.jsonl", t / "in.jsonl"), ["decode", f, "--out", t / "out", *NP], "jsonl"
    ),
    "evaluate_pred": _slot_evaluate_pred,
    "evaluate_gt": _slot_evaluate_gt,
    "merge": lambda ws, t: Slot(
        f := _copy(ws / "results.jsonl", t / "s0" / "results.jsonl"),
        ["merge", f, "--out", t / "out"],
        "jsonl",
    ),
    "build_coco": _slot_build_coco,
    "build_labelme": _slot_build_labelme,
    "build_mask_folder": _slot_build_mask_folder,
    "build_refclef": _slot_build_refclef,
}


def _second_line(data: bytes, change: Callable[[bytes], bytes]) -> bytes:
    lines = data.splitlines()
    assert len(lines) >= 2, data[:200]
    return b"\n".join([lines[0], change(lines[1]), *lines[2:]]) + b"\n"


def _add_field(obj: bytes, text: bytes) -> bytes:
    """A JSON object's text with one more member ``text`` before its closing brace."""
    obj = obj.rstrip()
    assert obj.endswith(b"}"), obj[-50:]
    return obj[:-1] + b", " + text + b"}"


CONTENT = {  # class -> change of one JSON text (a JSONL line or a whole document)
    "not_utf8": lambda b: b.replace(b'": "', b'": "caf\xe9 ', 1),
    "deep_nesting": lambda b: _add_field(b, b'"deep": ' + DEEP),
    "nan": lambda b: _add_field(b, b'"x": NaN'),
    "long_line": lambda b: _add_field(b, b'"pad": "' + b"x" * (2 * LINE_LIMIT) + b'"'),
}
YAML_CONTENT = {
    "not_utf8": lambda b: b + b"note: caf\xe9\n",
    "deep_nesting": lambda b: b + b"deep: " + DEEP + b"\n",
}
FILE_CLASSES = ["missing", "folder", "fifo", "empty", *CONTENT]


def apply_file_class(slot: Slot, kind: str) -> list[str]:
    """Turn ``slot.target`` into class ``kind``; returns what the error line must name."""
    t = slot.target
    if kind in ("missing", "folder", "fifo", "empty"):
        t.unlink()
        {"folder": t.mkdir, "fifo": lambda: os.mkfifo(t), "empty": t.touch}.get(kind, lambda: None)()
        return [t.name]
    if slot.kind == "yaml":
        t.write_bytes(YAML_CONTENT[kind](t.read_bytes()))
        return [t.name]
    if slot.kind == "jsonl":
        t.write_bytes(_second_line(t.read_bytes(), CONTENT[kind]))
        return [f"{t.name}:2"]
    t.write_bytes(CONTENT[kind](t.read_bytes()))
    return [t.name]


def _file_cases() -> list[tuple]:
    cases = []
    for slot in FILE_SLOTS:
        for kind in FILE_CLASSES:
            doc = slot in ("train_recipe", "export_args", "build_coco", "build_labelme", "build_refclef")
            if kind == "long_line" and doc or (kind == "nan" and slot == "train_recipe"):
                continue  # a recipe is YAML: no NaN literal; one-document files have no line limit
            if slot == "build_labelme" and kind == "missing":
                continue  # the builder takes the *.json files there are: one fewer is no error
            cases.append((f"{slot}-{kind}", slot, kind))
    return cases


FILE_XFAIL: dict[str, str] = {}


@pytest.mark.parametrize("slot,kind", _xfail(_file_cases(), FILE_XFAIL))
def test_every_command_refuses_every_hostile_file_with_one_line_naming_it(ws, tmp_path, slot, kind):
    s = FILE_SLOTS[slot](ws, tmp_path)
    names = apply_file_class(s, kind)
    check(tmp_path, Case(s.args, names, _timeout(f"{slot}-{kind}", kind, FILE_XFAIL), s.may_write))


# ------------------------------------------------------------------------- 3. wrong types in row fields
def _set_t4s(key: str, value) -> Callable[[dict], None]:
    return lambda r: r["text4seg"].__setitem__(key, value)


BUILT_ROWS: dict[str, Callable[[dict], None]] = {
    "id_list": _set_t4s("id", [1]),
    "text4seg_string": lambda r: r.__setitem__("text4seg", "oops"),
    "messages_string": lambda r: r.__setitem__("messages", "hello"),
    "images_dict": lambda r: r.__setitem__("images", {"a": 1}),
    "grid_1e9": _set_t4s("grid", [10**9, 1]),
    "width_infinity": _set_t4s("width", math.inf),
}
RESULT_ROWS: dict[str, Callable[[dict], None]] = {
    "id_list": lambda r: r.__setitem__("id", [1]),
    "turn_null": lambda r: r.__setitem__("turn", None),
    "image_dict": lambda r: r.__setitem__("image", {"a": 1}),
    "coarse_string": lambda r: r.__setitem__("coarse", "oops"),
    "grid_1e9": lambda r: r.__setitem__("grid", [10**9, 1]),
    "width_infinity": lambda r: r.__setitem__("width", math.inf),
}
# mix and train read the ms-swift fields only (ms-swift drops the text4seg column); stats no grid
SWIFT_ROWS = {k: BUILT_ROWS[k] for k in ("messages_string", "images_dict", "width_infinity")}
ROW_SLOTS = {  # slot -> the row fields it reads
    "stats": {k: v for k, v in BUILT_ROWS.items() if k != "grid_1e9"},
    "mix": SWIFT_ROWS,
    "train": SWIFT_ROWS,
    "predict": BUILT_ROWS,
    "decode": BUILT_ROWS,
    "evaluate_gt": BUILT_ROWS,
    "evaluate_pred": RESULT_ROWS,
    "merge": RESULT_ROWS,
}
ROW_CASES = [(f"{s}-{k}", s, k) for s, kinds in ROW_SLOTS.items() for k in kinds]
ROW_XFAIL: dict[str, str] = {}


@pytest.mark.parametrize("slot,kind", _xfail(ROW_CASES, ROW_XFAIL))
def test_every_command_refuses_a_wrong_typed_row_field_naming_file_and_line(ws, tmp_path, slot, kind):
    s = FILE_SLOTS[slot](ws, tmp_path)
    rows = [json.loads(x) for x in s.target.read_text().splitlines()]
    ROW_SLOTS[slot][kind](rows[1])
    write_jsonl(s.target, rows)
    check(tmp_path, Case(s.args, [f"{s.target.name}:2"], 60, s.may_write))


# ------------------------------------------------------------------ 4. bombs and truncated images; FIFO
def _image_predict(ws: Path, t: Path) -> tuple[Path, list]:
    img = _copy(ws / "img0.png", t / "img.png")
    f = write_jsonl(t / "in.jsonl", [row("a", str(img)), row("b", str(ws / "img1.png"))])
    return img, ["predict", "--model", ws / "plain_model", "--jsonl", f, "--out", t / "out", *NP]


def _image_predict_image(ws: Path, t: Path) -> tuple[Path, list]:
    img = _copy(ws / "img0.png", t / "img.png")
    args = ["predict", "--model", ws / "plain_model", "--image", img, "--query", "Segment the box."]
    return img, [*args, "--out", t / "out", *NP]


def _image_decode(ws: Path, t: Path) -> tuple[Path, list]:
    img = _copy(ws / "img0.png", t / "img.png")
    swift = {"response": ANSWER4, "messages": [{"role": "user", "content": "<image>Segment the box."}]}
    f = write_jsonl(t / "swift.jsonl", [{**swift, "images": [{"bytes": None, "path": str(img)}]}])
    return img, ["decode", f, "--out", t / "out", "--grid", "4", *NP]


def _image_report(ws: Path, t: Path) -> tuple[Path, list]:
    img = _copy(ws / "img0.png", t / "img.png")
    recs = [json.loads(x) for x in (ws / "results.jsonl").read_text().splitlines()]
    pred = write_jsonl(t / "res.jsonl", [{**recs[0], "image": str(img)}, recs[1]])
    args = [
        "evaluate",
        "--pred",
        pred,
        "--gt",
        ws / "gt.jsonl",
        "--out",
        t / "ev",
        "--report",
        t / "report.html",
    ]
    return img, [*args, *NP]


def _image_label_map(ws: Path, t: Path) -> tuple[Path, list]:
    lm = t / "lm.png"
    Image.fromarray(np.ones((32, 48), np.uint8)).save(lm)
    gt = row("s", str(ws / "img0.png"))
    gt["text4seg"].update(task="semantic", labels=["box"], asked=["box"])
    gt["text4seg"]["gt"] = {"masks": [], "label_map": str(lm), "classes": ["others", "box"]}
    gtf = write_jsonl(t / "gt.jsonl", [gt])
    first = json.loads((ws / "results.jsonl").read_text().splitlines()[0])
    pred = write_jsonl(t / "res.jsonl", [{**first, "id": "s"}])
    return lm, ["evaluate", "--pred", pred, "--gt", gtf, "--out", t / "ev", *NP]


def _image_build(make: Callable[[Path, Path], Slot], image: str) -> Callable[[Path, Path], tuple[Path, list]]:
    def setup(ws: Path, t: Path) -> tuple[Path, list]:
        s = make(ws, t)
        return t / image, s.args

    return setup


IMAGE_SLOTS = {
    "predict_image": _image_predict,
    "predict_one_image": _image_predict_image,
    "decode_image": _image_decode,
    "evaluate_report_image": _image_report,
    "evaluate_label_map": _image_label_map,
    "build_coco_image": _image_build(_slot_build_coco, "c/images/img0.png"),
    "build_labelme_image": _image_build(_slot_build_labelme, "l/images/shot0.png"),
    "build_mask_folder_image": _image_build(_slot_build_mask_folder, "m/images/p0.jpg"),
    "build_mask_folder_mask": _image_build(_slot_build_mask_folder, "m/masks/p0.png"),
    "build_refclef_image": _image_build(_slot_build_refclef, "r/images/saiapr_tc-12/100.jpg"),
}
IMAGE_CLASSES = ["bomb_png", "truncated_png", "fifo"]
# decode needs only the image's size: it reads the header, and a truncated PNG keeps its header
IMAGE_CASES = [
    (f"{s}-{k}", s, k)
    for s in IMAGE_SLOTS
    for k in IMAGE_CLASSES
    if f"{s}-{k}" != "decode_image-truncated_png"
]
IMAGE_XFAIL: dict[str, str] = {}


@pytest.mark.parametrize("slot,kind", _xfail(IMAGE_CASES, IMAGE_XFAIL))
def test_every_image_reader_refuses_a_bomb_a_truncated_png_and_a_fifo_naming_the_file(
    ws, tmp_path, bomb, slot, kind
):
    image, args = IMAGE_SLOTS[slot](ws, tmp_path)
    assert image.is_file(), image
    good = image.read_bytes()
    image.unlink()
    if kind == "bomb_png":
        image.write_bytes(bomb)
    elif kind == "truncated_png":
        buf = image.with_suffix(".tmp.png")
        Image.open(_copy(ws / "img0.png", buf)).save(buf)  # a PNG whatever the name says
        image.write_bytes(buf.read_bytes()[: len(good) // 2 or 100])
        buf.unlink()
    else:
        os.mkfifo(image)
    # the report is written last: the metrics of a run whose report failed are complete files
    report = {"ev/metrics.json", "ev/per_sample.jsonl"} if slot == "evaluate_report_image" else set()
    timeout = _timeout(f"{slot}-{kind}", kind, IMAGE_XFAIL)
    check(tmp_path, Case(args, [image.name], timeout, report))


# ------------------------------------------------------------------------------------- 5. RLE sizes
def _rle_row_slot(slot: str, path: list) -> Callable[[Path, Path, dict], tuple[list, list[str]]]:
    def setup(ws: Path, t: Path, rle: dict) -> tuple[list, list[str]]:
        s = FILE_SLOTS[slot](ws, t)
        rows = [json.loads(x) for x in s.target.read_text().splitlines()]
        cur = rows[0]
        for k in path[:-1]:
            cur = cur[k]
        cur[path[-1]] = rle
        write_jsonl(s.target, rows)
        return s.args, [f"{s.target.name}:1"]

    return setup


def _rle_coco(ws: Path, t: Path, rle: dict) -> tuple[list, list[str]]:
    s = _slot_build_coco(ws, t)
    doc = json.loads(s.target.read_text())
    ann = next(a for a in doc["annotations"] if isinstance(a["segmentation"], dict))
    ann["segmentation"] = rle
    s.target.write_text(json.dumps(doc))
    return s.args, [s.target.name]


def _rle_refclef(ws: Path, t: Path, rle: dict) -> tuple[list, list[str]]:
    s = _slot_build_refclef(ws, t)
    doc = json.loads(s.target.read_text())
    ann = next(a for a in doc["annotations"] if isinstance(a["segmentation"], list) and a["segmentation"]
               and isinstance(a["segmentation"][0], dict))  # fmt: skip
    ann["segmentation"] = [rle]
    s.target.write_text(json.dumps(doc))
    return s.args, [s.target.name]


RLE_SLOTS = {
    "evaluate_pred": _rle_row_slot("evaluate_pred", ["coarse"]),
    "evaluate_gt": _rle_row_slot("evaluate_gt", ["text4seg", "gt", "masks", 0]),
    "merge": _rle_row_slot("merge", ["coarse"]),
    "build_coco": _rle_coco,
    "build_refclef": _rle_refclef,
}
RLE_CLASSES = {"rle_60000x60000": HUGE_RLE, "rle_negative_size": NEGATIVE_RLE}
RLE_CASES = [(f"{s}-{k}", s, k) for s in RLE_SLOTS for k in RLE_CLASSES]
RLE_XFAIL: dict[str, str] = {}


@pytest.mark.parametrize("slot,kind", _xfail(RLE_CASES, RLE_XFAIL))
def test_every_rle_reader_refuses_an_absurd_size_before_allocating(ws, tmp_path, slot, kind):
    args, names = RLE_SLOTS[slot](ws, tmp_path, RLE_CLASSES[kind])
    check(tmp_path, Case(args, names))


# ----------------------------------------------------------------------- 6. links where an output goes
LINK_SLOTS: dict[str, Callable[[Path, Path], tuple[list, Path]]] = {
    "build_synthetic": lambda ws, t: (
        [
            "build",
            "synthetic",
            "--out",
            t / "o.jsonl",
            "--limit",
            "2",
            "--no-stats",
            "--image-size",
            "32",
        ],
        t / "o.jsonl",
    ),
    "mix": lambda ws, t: (["mix", ws / "gt.jsonl", "--out", t / "mix.jsonl"], t / "mix.jsonl"),
    "decode": lambda ws, t: (
        ["decode", ws / "gt.jsonl", "--out", t / "out", *NP],
        t / "out" / "decoded.jsonl",
    ),
    "evaluate": lambda ws, t: (
        ["evaluate", "--pred", ws / "results.jsonl", "--gt", ws / "gt.jsonl", "--out", t / "ev", *NP],
        t / "ev" / "metrics.json",
    ),
    "evaluate_report": lambda ws, t: (
        [
            "evaluate",
            "--pred",
            ws / "results.jsonl",
            "--gt",
            ws / "gt.jsonl",
            "--out",
            t / "ev",
            "--report",
            t / "ev" / "report.html",
            *NP,
        ],
        t / "ev" / "report.html",
    ),
    "merge": lambda ws, t: (["merge", ws / "results.jsonl", "--out", t / "out"], t / "out" / "results.jsonl"),
    "predict": lambda ws, t: (
        ["predict", "--model", ws / "plain_model", "--jsonl", ws / "gt.jsonl", "--out", t / "out", *NP],
        t / "out" / "results.jsonl",
    ),
}
LINK_CASES = [(f"{s}-{k}", s, k) for s in LINK_SLOTS for k in ("symlink", "hardlink")]
# Outputs written whole (build, mix, evaluate, report, merge) go to a temporary file renamed over the name:
# a link there is replaced by the new file, never written through, and nothing outside --out changes. Outputs
# appended to (predict's results.jsonl, decode's) must refuse a link: appending would write through it.
REPLACED = {"build_synthetic", "mix", "evaluate", "evaluate_report", "merge"}


@pytest.mark.parametrize("slot,kind", _xfail(LINK_CASES, {}))
def test_every_output_refuses_or_replaces_a_link_and_the_linked_file_is_untouched(ws, tmp_path, slot, kind):
    args, output = LINK_SLOTS[slot](ws, tmp_path)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    (output.symlink_to if kind == "symlink" else output.hardlink_to)(precious)
    p = cli(args, tmp_path, env=ENV)
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    assert precious.read_text() == "keep me\n", "written through the link"
    if slot in REPLACED:
        assert p.returncode == 0, p.stderr[-2000:]
        assert not output.is_symlink() and output.stat().st_ino != precious.stat().st_ino
    else:
        one_line_error(p, 2, output.name)


# ------------------------------------------------------------------ 7. model folders: code, missing
def _model_args(ws: Path, t: Path, command: str, model: Path) -> list:
    if command == "train":
        return ["train", _recipe(t, model, ws / "gt.jsonl"), *TRAIN]
    if command == "export":
        return ["export", model, "--out", t / "merged", "--dry-run", "--swift", "swift"]
    if command == "predict":
        return ["predict", "--model", model, "--jsonl", ws / "gt.jsonl", "--out", t / "out", *NP]
    return ["app", "--model", model, "--port", "0"]


MODEL_COMMANDS = ["train", "export", "predict", "app"]
MODEL_CASES = [
    (f"{c}-{k}", c, k) for c in MODEL_COMMANDS for k in ("model_with_code", "missing_model", "file_as_model")
]
MODEL_XFAIL: dict[str, str] = {}


@pytest.mark.parametrize("command,kind", _xfail(MODEL_CASES, MODEL_XFAIL))
def test_model_folders_with_code_never_run_and_missing_ones_are_one_line(ws, tmp_path, command, kind):
    marker = tmp_path / "MARKER"
    if kind == "model_with_code":
        model = evil_model(tmp_path / "evil", marker)
        names = ["configuration_x.py", "--trust-remote-code"]
    elif kind == "missing_model":
        model, names = tmp_path / "nowhere", ["nowhere"]
    else:
        model = tmp_path / "model.bin"
        model.write_bytes(b"\0" * 16)
        names = ["model.bin"]
    may = {"out/run.json"} if command == "predict" else set()  # predict records its options first
    check(tmp_path, Case(_model_args(ws, tmp_path, command, model), names, 120, may, MEM_TORCH), marker)


def test_app_on_a_port_in_use_is_one_line_naming_the_port(ws, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        check(tmp_path, Case(["app", "--model", ws / "plain_model", "--port", port], [str(port)], 120))


# ------------------------------------------------------------------ predict --api: a hostile chat server
def _reply(data: bytes):
    return lambda h: h.send(data)


API_REPLIES = {
    "empty": b"",
    "not_utf8": b'{"choices": [{"message": {"content": "caf\xe9"}}]}',
    "deep_nesting": b'{"choices": ' + DEEP + b"}",
    "nan": b'{"choices": [{"message": {"content": NaN}}]}',
    "wrong_types": b'{"choices": {"message": [1]}}',
}
API_CASES = [(f"predict_api-{k}", k) for k in API_REPLIES]
API_XFAIL: dict[str, str] = {}


@pytest.mark.parametrize("kind", _xfail(API_CASES, API_XFAIL))
def test_predict_api_refuses_every_hostile_reply_with_one_line_naming_the_endpoint(ws, tmp_path, kind):
    with ChatServer(_reply(API_REPLIES[kind])) as s:
        args = ["predict", "--api", s.url, "--served-model", "m", "--server", "vllm", "--retries", "0"]
        args += ["--jsonl", ws / "gt.jsonl", "--out", tmp_path / "out", *NP]
        check(tmp_path, Case(args, ["chat/completions"], may_write={"out/run.json", "out/results.jsonl"}))
    results = tmp_path / "out" / "results.jsonl"
    assert not results.exists() or results.read_bytes() == b"", "an answer was written"
