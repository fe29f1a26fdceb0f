"""The neutral sample record and its ms-swift JSONL row.

A builder yields :class:`Sample` records; :func:`to_swift_row` turns one into the row that every backbone
trains on (ms-swift's multimodal "messages" format); :func:`write_jsonl` writes rows atomically (the file
side, reading included, is :mod:`text4seg.data.jsonl`).

JSONL row schema (one JSON object per line, keys in this order)
----------------------------------------------------------------
::

    {
      "messages": [                                   # 2 * n_turns messages, user first
        {"role": "user", "content": "<image>Segment the red circle."},
        {"role": "assistant", "content": "Here it is.\\n<seg>others *16\\n ...</seg>"},
        ...                                           # further turns: no "<image>" tag
      ],
      "images": ["/abs/path/to/image.png"],           # exactly one absolute path
      "text4seg": {                                   # FIXED schema: same keys and types in every row
        "id": "refcoco/val/r123/s456",                # unique sample id (str)
        "task": "res",                                # one of TASKS (str)
        "labels": ["red circle"],                     # target labels (list[str], [] for none)
        "asked": ["red circle"],                      # labels the question asks for (list[str])
        "grid": [16, 16],                             # [rows, cols] (list[int])
        "scheme": "rrle",                             # descriptor scheme (str)
        "width": 640, "height": 480,                  # image size in pixels (int)
        "source": {                                   # provenance, all strings
          "dataset": "refcoco", "split": "val", "image_id": "581857",
          "ref_id": "123", "ann_ids": ["1234"], "sent_ids": ["456"]
        },
        "gt": {                                       # ground truth for evaluation, no dataset root needed
          "masks": [{"size": [480, 640], "counts": "..."}],   # COCO RLE per assistant turn ([] = not stored)
          "label_map": "",                            # semantic: absolute path of the label-map PNG
          "classes": [],                              # semantic: pixel value v -> classes[v]; "others" = bg
          "ignore": [],                               # semantic: pixel values to ignore (e.g. [255])
          "boxes": []                                 # target boxes [x, y, w, h] in pixels (floats)
        }
      }
    }

``gt.masks[i]`` is the full-resolution binary target mask of the i-th assistant turn as a COCO RLE with
``counts`` as a ``str`` (``pycocotools.mask.decode`` accepts it after ``counts.encode()``). An empty target
(no-target expression) is a valid all-zero RLE, never a missing entry. Absent values are ``""`` or ``[]``,
never ``null``, so ``datasets.load_dataset("json", ...)`` infers one schema for the file. A list that is
empty in every row of a file (e.g. ``gt.masks`` of a train file) is inferred as a list of nulls, which
does not merge with another file's typed list: to load several files together pass
``features=hf_features()``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from text4seg.data.jsonl import AtomicWriter
from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME

IMAGE_TAG = "<image>"
TASKS = ("res", "gres", "semantic", "reason", "shapes", "multi", "interactive", "panoptic", "vres", "vreason")
SOURCE_KEYS = ("dataset", "split", "image_id", "ref_id", "ann_ids", "sent_ids")


@dataclass
class Sample:
    """One training or evaluation sample, independent of any backbone.

    Attributes:
        id: unique sample id.
        image: absolute path of the image file.
        width, height: image size in pixels.
        turns: ``[(question, answer), ...]``; one pair for a single-round sample. Questions carry no
            ``<image>`` tag (the writer adds it to the first); answers are complete (sentence + ``<seg>``).
        task: one of :data:`TASKS`.
        labels: target label strings (what the answer's descriptors name).
        asked: the labels the question asks for, when they differ from ``labels`` (semantic questions
            list classes absent from the image); empty means "the same as ``labels``". Constrained
            decoding allows these, so it never learns from the ground truth which classes are present.
        grid: ``(rows, cols)``; scheme: descriptor scheme name.
        source: provenance; keys of :data:`SOURCE_KEYS` (missing ones are written as ``""``/``[]``).
        masks: per turn, a COCO RLE dict ``{"size": [h, w], "counts": str}`` (or ``[]`` when not stored).
        label_map, classes, ignore: semantic ground truth (see the module docstring).
        boxes: target boxes ``[x, y, w, h]`` in pixels.
    """

    id: str
    image: str
    width: int
    height: int
    turns: list[tuple[str, str]]
    task: str
    labels: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    grid: tuple[int, int] = DEFAULT_GRID
    scheme: str = DEFAULT_SCHEME
    source: dict = field(default_factory=dict)
    masks: list[dict] = field(default_factory=list)
    label_map: str = ""
    classes: list[str] = field(default_factory=list)
    ignore: list[int] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)  # video samples: T frame paths (text4seg.data.video)


_SOURCE_TEXT = tuple(k for k in SOURCE_KEYS if not k.endswith("_ids"))  # strings
_SOURCE_IDS = tuple(k for k in SOURCE_KEYS if k.endswith("_ids"))  # lists of strings
assert _SOURCE_TEXT + _SOURCE_IDS == SOURCE_KEYS  # the row's key order


def _source(src: dict) -> dict:
    """The row's ``source``: every key of :data:`SOURCE_KEYS`, strings (lists of strings for ``*_ids``);
    a value that already is a ``str`` is taken as is (what ``str()`` would return)."""
    out = {}
    for k in _SOURCE_TEXT:
        v = src.get(k, "")
        out[k] = v if type(v) is str else ("" if v is None else str(v))
    for k in _SOURCE_IDS:
        v = src.get(k, ())
        out[k] = [str(x) for x in v] if type(v) is not list or v else []
    return out


def _check(sample: Sample) -> None:
    if not sample.turns:
        raise ValueError(f"sample {sample.id!r} has no turns")
    if sample.task not in TASKS:
        raise ValueError(f"sample {sample.id!r}: unknown task {sample.task!r}; choose one of {TASKS}")


def _messages(sample: Sample) -> list[dict]:
    """User and assistant messages of every turn, ``<image>`` before the first question (a video question
    holds its frames' tags instead)."""
    messages = []
    tag = "" if sample.frames else IMAGE_TAG
    for q, a in sample.turns:
        messages.append({"role": "user", "content": tag + q})
        messages.append({"role": "assistant", "content": a})
        tag = ""
    return messages


def _typed_row(sample: Sample) -> dict | None:
    """:func:`to_swift_row` for a sample whose fields already have the row's types (``str``, ``int``, lists
    of ``str``, masks ``{"size": [int, int], "counts": str}``, boxes lists of ``float``, no frames, classes
    or ignore values): the same row without converting each value again. ``None`` when a field needs
    converting (the caller takes the converting path)."""
    s = sample
    grid, labels, asked = s.grid, s.labels, s.asked or s.labels
    if not (
        type(s.id) is str
        and type(s.image) is str
        and type(s.width) is int
        and type(s.height) is int
        and type(s.label_map) is str
        and (type(grid) is tuple or type(grid) is list)
        and len(grid) == 2
        and type(grid[0]) is int
        and type(grid[1]) is int
        and type(labels) is list
        and type(asked) is list
        and not s.frames
        and not s.classes
        and not s.ignore
        and type(s.boxes) is list
        and type(s.masks) is list
    ):
        return None
    boxes = []
    for b in s.boxes:
        if type(b) is not list:
            return None
        for v in b:
            if type(v) is not float:
                return None
        boxes.append(b[:])
    for x in labels:
        if type(x) is not str:
            return None
    if asked is not labels:
        for x in asked:
            if type(x) is not str:
                return None
    masks = []
    for m in s.masks:
        if type(m) is not dict:
            return None
        size, counts = m.get("size"), m.get("counts")
        if not (type(size) is list and len(size) == 2 and type(counts) is str):
            return None
        h, w = size
        if type(h) is not int or type(w) is not int:
            return None
        masks.append({"size": [h, w], "counts": counts})
    return _row(
        s,
        [s.image],
        s.id,
        labels[:],
        asked[:],
        [grid[0], grid[1]],
        s.width,
        s.height,
        masks,
        s.label_map,
        [],
        [],
        boxes,
    )


def _converted_row(sample: Sample) -> dict:
    """:func:`to_swift_row` converting every value to the row's type (``str()``, ``int()``, ``float()``)."""
    s = sample
    return _row(
        s,
        [str(f) for f in s.frames] or [str(s.image)],
        str(s.id),
        [str(x) for x in s.labels],
        [str(x) for x in (s.asked or s.labels)],
        [int(s.grid[0]), int(s.grid[1])],
        int(s.width),
        int(s.height),
        [{"size": [int(m["size"][0]), int(m["size"][1])], "counts": str(m["counts"])} for m in s.masks],
        str(s.label_map),
        [str(c) for c in s.classes],
        [int(v) for v in s.ignore],
        [[float(v) for v in b] for b in s.boxes],
    )


def _row(
    s: Sample, images, sid, labels, asked, grid, width, height, masks, label_map, classes, ignore, boxes
):
    """The row (schema and key order: the module docstring) of values already of the row's types."""
    return {
        "messages": _messages(s),
        "images": images,
        "text4seg": {
            "id": sid,
            "task": s.task,
            "labels": labels,
            "asked": asked,
            "grid": grid,
            "scheme": s.scheme,
            "width": width,
            "height": height,
            "source": _source(s.source),
            "gt": {
                "masks": masks,
                "label_map": label_map,
                "classes": classes,
                "ignore": ignore,
                "boxes": boxes,
            },
        },
    }


def to_swift_row(sample: Sample) -> dict:
    """The ms-swift JSONL row of a sample (see the module docstring for the schema)."""
    _check(sample)
    row = _typed_row(sample)
    return _converted_row(sample) if row is None else row


def hf_features():
    """The row schema as ``datasets.Features`` (for ``load_dataset("json", ..., features=...)``)."""
    from text4seg._lazy import require

    d = require("datasets")
    string, int64 = d.Value("string"), d.Value("int64")
    rle = {"size": d.Sequence(int64), "counts": string}
    return d.Features(
        {
            "messages": [{"role": string, "content": string}],
            "images": d.Sequence(string),
            "text4seg": {
                "id": string,
                "task": string,
                "labels": d.Sequence(string),
                "asked": d.Sequence(string),
                "grid": d.Sequence(int64),
                "scheme": string,
                "width": int64,
                "height": int64,
                "source": {k: d.Sequence(string) if k.endswith("_ids") else string for k in SOURCE_KEYS},
                "gt": {
                    "masks": [rle],
                    "label_map": string,
                    "classes": d.Sequence(string),
                    "ignore": d.Sequence(int64),
                    "boxes": d.Sequence(d.Sequence(d.Value("float64"))),
                },
            },
        }
    )


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # what json.dumps builds per call


def dumps_row(row: dict) -> str:
    """One JSONL line (no newline): UTF-8 text, compact separators, key order as given (deterministic)."""
    return _ENCODER.encode(row)


def write_jsonl(rows: Iterable[dict | Sample], path: str | os.PathLike) -> int:
    """Write rows (dicts, or :class:`Sample` records converted with :func:`to_swift_row`) atomically.

    Returns the number of rows written.
    """
    with AtomicWriter(path) as w:
        for row in rows:
            w.write(dumps_row(to_swift_row(row) if isinstance(row, Sample) else row))
    return w.count
