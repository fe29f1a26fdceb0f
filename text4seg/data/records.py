"""The neutral sample record, its ms-swift JSONL row, and atomic JSONL files.

A builder yields :class:`Sample` records; :func:`to_swift_row` turns one into the row that every backbone
trains on (ms-swift's multimodal "messages" format); :func:`write_jsonl` writes rows atomically.

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

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from text4seg.data.images import (  # noqa: F401 (check_image_size and the limits are re-exported)
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    check_image_size,
    check_regular_file,
)
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
    return {
        "messages": _messages(s),
        "images": [s.image],
        "text4seg": {
            "id": s.id,
            "task": s.task,
            "labels": labels[:],
            "asked": asked[:],
            "grid": [grid[0], grid[1]],
            "scheme": s.scheme,
            "width": s.width,
            "height": s.height,
            "source": _source(s.source),
            "gt": {"masks": masks, "label_map": s.label_map, "classes": [], "ignore": [], "boxes": boxes},
        },
    }


def _converted_row(sample: Sample) -> dict:
    """:func:`to_swift_row` converting every value to the row's type (``str()``, ``int()``, ``float()``)."""
    masks = [
        {"size": [int(m["size"][0]), int(m["size"][1])], "counts": str(m["counts"])} for m in sample.masks
    ]
    return {
        "messages": _messages(sample),
        "images": [str(f) for f in sample.frames] or [str(sample.image)],
        "text4seg": {
            "id": str(sample.id),
            "task": sample.task,
            "labels": [str(x) for x in sample.labels],
            "asked": [str(x) for x in (sample.asked or sample.labels)],
            "grid": [int(sample.grid[0]), int(sample.grid[1])],
            "scheme": sample.scheme,
            "width": int(sample.width),
            "height": int(sample.height),
            "source": _source(sample.source),
            "gt": {
                "masks": masks,
                "label_map": str(sample.label_map),
                "classes": [str(c) for c in sample.classes],
                "ignore": [int(v) for v in sample.ignore],
                "boxes": [[float(v) for v in b] for b in sample.boxes],
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write (any writer: PIL, bytes, ...); renamed onto ``path`` when the
    block ends, removed on any failure (Ctrl-C included): ``path`` is always absent, old or complete.

    >>> with atomic_path("mask.png") as tmp:      # doctest: +SKIP
    ...     Image.fromarray(a).save(tmp, format="PNG")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class AtomicWriter:
    """Write lines to ``path`` through a temporary file in the same folder, renamed on :meth:`commit`.

    Use as a context manager; leaving the block with an exception removes the temporary file, so the
    target is never half-written.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self.tmp = Path(tmp)
        try:
            self.fh = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise
        self.count = 0

    def write(self, line: str) -> None:
        self.fh.write(line)
        self.fh.write("\n")
        self.count += 1

    def commit(self) -> None:
        """Close and rename onto ``path``; on any failure (a full disk at the last flush, a signal) the
        temporary file is removed and ``path`` keeps its old content."""
        try:
            self.fh.close()
            os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
            os.replace(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        """Close and remove the temporary file (``path`` is left as it was)."""
        try:
            self.fh.close()
        except OSError:
            pass  # a flush that fails (disk full) must not keep the temporary file
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:  # any BaseException: an error, Ctrl-C, SIGTERM turned into KeyboardInterrupt, SystemExit
            self.abort()


def write_jsonl(rows: Iterable[dict | Sample], path: str | os.PathLike) -> int:
    """Write rows (dicts, or :class:`Sample` records converted with :func:`to_swift_row`) atomically.

    Returns the number of rows written.
    """
    with AtomicWriter(path) as w:
        for row in rows:
            w.write(dumps_row(to_swift_row(row) if isinstance(row, Sample) else row))
    return w.count


MAX_LINE_BYTES = int(os.environ.get("TEXT4SEG_MAX_LINE_BYTES") or 64 << 20)  # bytes per JSONL line
QUOTE_CHARS = 200  # a value quoted in an error message is cut to this many characters


def quote(value, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` marks the cut): error lines stay short whatever
    a hostile file holds. Large containers are cut before ``repr`` builds their whole text."""
    if isinstance(value, (list, tuple)) and len(value) > limit:
        value = type(value)(value[:limit])
    elif isinstance(value, dict) and len(value) > limit:
        value = dict(list(value.items())[:limit])
    elif isinstance(value, (str, bytes)) and len(value) > limit:
        value = value[: limit + 1]
    try:
        text = repr(value)
    except RecursionError:
        text = f"<a {type(value).__name__} nested too deep to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def iter_lines(path: str | os.PathLike, limit: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw_bytes)`` of a file, newline kept, blank lines included, streaming with
    bounded memory: a line longer than ``limit`` bytes (default :data:`MAX_LINE_BYTES`, environment
    variable ``TEXT4SEG_MAX_LINE_BYTES``) raises ``ValueError`` naming the file and line; a missing file or
    a folder raises ``OSError`` naming it."""
    limit = MAX_LINE_BYTES if limit is None else limit
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; expected a JSONL file")
    check_regular_file(path, "file")
    with open(path, "rb") as fh:
        n = 0
        while True:
            raw = fh.readline(limit + 1)  # bounded: never more than limit + 1 bytes in memory
            if not raw:
                return
            n += 1
            if len(raw) > limit and not (len(raw) == limit + 1 and raw.endswith(b"\n")):
                raise ValueError(
                    f"{path}:{n}: line longer than {limit} bytes (not a JSONL row; "
                    "raise TEXT4SEG_MAX_LINE_BYTES if it is one)"
                )
            yield n, raw


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


# One strict decoder for every line (``json.loads`` builds a new one per call when given ``parse_constant``);
# ``json.loads`` itself shares its default decoder across threads the same way: the C scanner keeps no state
# between calls but its key-interning memo.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_decode = _DECODER.decode  # leading/trailing JSON whitespace skipped, "Extra data" after the value


def parse_line(raw: bytes | str, path: str | os.PathLike, n: int) -> dict | None:
    """One JSONL line as a dict (``None`` for a blank line). ``ValueError`` naming ``path:n`` for bytes that
    are not UTF-8, text that is not strict JSON (``NaN``/``Infinity`` included), nesting deeper than the
    parser handles, or a JSON value that is not an object."""
    if isinstance(raw, bytes):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path}:{n}: not UTF-8 text (byte {raw[exc.start]:#04x} at {exc.start})"
            ) from None
    else:
        line = raw
    if not line or line.isspace():  # blank (``not line.strip()`` without copying the line)
        return None
    try:
        if line[0] == "\ufeff":  # json.loads refuses a BOM with this message
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", line, 0)
        row = _decode(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError(f"{path}:{n}: JSON nested too deep (not a JSONL row)") from None
    except ValueError as exc:  # parse_constant: NaN, Infinity, -Infinity
        raise ValueError(f"{path}:{n}: not valid JSON ({exc}; write null or a number)") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}:{n}: a JSON {type(row).__name__}, expected an object {{...}}")
    return row


MAX_DOCUMENT_BYTES = 16 << 20  # a JSON settings file (args.json, a config): larger is not one


def read_json_object(path: str | os.PathLike, max_bytes: int = MAX_DOCUMENT_BYTES) -> dict:
    """A small JSON document (``args.json``, a config) that must be an object, read strictly: a regular
    file of at most ``max_bytes``, UTF-8, no ``NaN``/``Infinity``, bounded nesting; ``ValueError`` or
    ``OSError`` naming the file otherwise."""
    check_regular_file(path, "file")
    with open(path, "rb") as fh:
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ValueError(f"{path}: over {max_bytes} bytes; not a settings file")
    row = parse_line(raw.replace(b"\n", b" ").replace(b"\r", b" "), path, 1)
    if row is None:
        raise ValueError(f"{path}: empty; expected a JSON object")
    return row


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, row)`` of a JSONL file (blank lines skipped), streaming in bounded memory.
    ``ValueError`` names the file and line of a line that is too long (:func:`iter_lines`), not UTF-8, not
    strict JSON, too deeply nested or not a JSON object (:func:`parse_line`); ``OSError`` names a missing
    file or a folder."""
    for n, raw in iter_lines(path):
        row = parse_line(raw, path, n)
        if row is not None:
            yield n, row


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the rows of a JSONL file; a bad line raises ``ValueError`` naming the file and line."""
    for _, row in iter_jsonl(path):
        yield row


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"2/8" -> (2, 8)``; ``None -> (0, 1)``. Raises ``ValueError`` naming the bad value."""
    if shard is None:
        return 0, 1
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like i/N (e.g. 0/4), got {shard!r}") from None
    else:
        i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard i/N needs 0 <= i < N, got {i}/{n}")
    return i, n
