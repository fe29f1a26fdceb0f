"""Result records: one model answer turned into masks, the schema every results JSONL follows.

``text4seg predict`` (:mod:`text4seg.inference.predict`) and ``text4seg decode``
(:mod:`text4seg.inference.decode`) both build their records with :func:`make_record` (a
:class:`ResultRecord`) and write ``record.to_json()``; ``text4seg evaluate``, ``merge`` and the demo read
them with :func:`load_records` / :func:`iter_records`, which check every line once
(:meth:`ResultRecord.from_json`). Only numpy, PIL and pycocotools are needed here (no torch, no ms-swift),
so evaluation never imports the inference engine.

Record schema (one JSON object per line; every record has every key, in this order)
----------------------------------------------------------------------------------
::

    {"id": "shapes/val/3",            # str: text4seg.id of the built row (decode: the row's, else its index)
     "turn": 0,                       # int: user turn of the row; key = (id, turn) joins with the built JSONL
     "image": "/abs/img.png",         # str | null: the image the answer is about (null: decode given a size)
     "query": "Segment the red circle.",   # str: the question ("" when unknown, e.g. decode without messages)
     "labels": ["red circle"],        # list[str]: the target labels asked for ([] when unknown)
     "answer": "Sure.\\n<seg>...</seg>",   # str: the raw model text
     "scheme": "rrle", "grid": [16, 16],   # descriptor scheme and [rows, cols] the answer was decoded with
     "width": 640, "height": 480,     # int: image size in pixels; every mask below is height x width
     "parse_valid": true,             # bool: the answer parses with decode(strict=True)
     "repairs": [["row_short", 3, "14 cells for 16"]],  # lenient decoder repairs [kind, row|null, detail]
     "pred_labels": ["red circle"],   # list[str]: the non-"others" labels the answer names, in order
     "coarse": {"size": [480, 640], "counts": "..."},   # COCO RLE: every non-"others" cell (decoded answer)
     "refined": {"size": ..., "counts": ...} | null,  # COCO RLE: union of the refined labels (null: no SAM)
     "refined_labels": {"red circle": {"size": ..., "counts": ...}} | null,
                                      # per pred_label, its pixels of the refined label map (disjoint masks;
                                      # each label refined alone, later labels win overlaps); null: no SAM
     "num_tokens": 57 | null,         # int: generated tokens (null: unknown, e.g. decode)
     "constrained": false | null,     # bool: grammar-constrained decoding (null: unknown, e.g. decode)
     "overlay": "overlays/shapes_val_3_t0.png" | null,  # PNG for people, relative to the output folder
     "mask_png": "masks/000003.png" | null}             # coarse mask PNG (0/255), relative (decode only)

COCO RLE as in :mod:`text4seg.data.rle` (``counts`` a ``str``). A worked example: the answer
``"<seg>others *2\\n cat *2\\n</seg>"`` decoded on a 2 x 2 grid for a 2 x 2 image without SAM gives
``parse_valid: true``, ``repairs: []``, ``pred_labels: ["cat"]``, ``coarse: {"size": [2, 2], "counts":
"1110"}`` (the bottom row is the cat: column-major runs 1, 1, 1, 1, which pycocotools compresses to
"1110"), ``refined: null`` and ``refined_labels: null``.

Masks: every non-``others`` cell is foreground (the published convention); the per-label map is kept so
that semantic answers are refined and scored label by label.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from text4seg.data.jsonl import atomic_path
from text4seg.data.result_checks import is_int, record_verdict
from text4seg.data.rle import mask_to_rle, rle_to_mask
from text4seg.descriptors import (
    BACKGROUND,
    DEFAULT_SCHEME,
    Decoded,
    Repair,
    count_repairs,
    decode,
    grid_to_label_map,
    normalize_label,
)

RESULTS_NAME = "results.jsonl"


# ---------------------------------------------------------------------------------------- masks
@dataclass
class AnswerMasks:
    """An answer decoded to pixels.

    ``decoded``: the lenient :class:`~text4seg.descriptors.Decoded`; ``parse_valid``: strict parse succeeded;
    ``label_map``: ``(H, W)`` int32, 0 = ``others``, k = ``names[k]``; ``mask``: ``(H, W)`` bool of the
    scored labels; ``other_labels``: labels named by the answer outside ``labels`` (when given).
    """

    decoded: Decoded
    parse_valid: bool
    label_map: np.ndarray
    names: list[str]
    mask: np.ndarray
    other_labels: list[str] = field(default_factory=list)


def answer_to_masks(
    answer: str,
    height: int,
    width: int,
    size: int | tuple[int, int] = 16,
    scheme: str = DEFAULT_SCHEME,
    labels: Sequence[str] | None = None,
    geometry: str = "pil",
) -> AnswerMasks:
    """Decode one answer (lenient) and paint it at ``height x width`` (whole image; ``geometry``: "pil"
    nearest, the default, or "official", see :data:`text4seg.descriptors.GEOMETRIES`).

    ``labels=None``: every non-``others`` label is foreground; otherwise only those labels (normalised)
    are, and :attr:`AnswerMasks.other_labels` lists the others the answer named.
    """
    dec = decode(answer, size, scheme)
    valid = dec.ok  # exactly: the answer decodes with strict=True
    label_map, names = grid_to_label_map(dec.grid, height, width, geometry)
    mask, other = select_labels(label_map, names, labels)
    return AnswerMasks(dec, valid, label_map, names, mask, other)


def select_labels(
    label_map: np.ndarray, names: Sequence[str], labels: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    """``(mask, other_labels)`` of an ``(H, W)`` int label map (0 = ``others``, k = ``names[k]``).

    ``labels=None``: every non-zero pixel; otherwise the pixels of those labels (normalised), and the
    names outside them.
    """
    if labels is None:
        return label_map > 0, []
    wanted = {normalize_label(x) for x in labels}
    ids = [k for k, n in enumerate(names) if n in wanted and n != BACKGROUND]
    return np.isin(label_map, ids), [n for n in names[1:] if n not in wanted]


def label_map_to_rles(label_map: np.ndarray, names: Sequence[str]) -> dict[str, dict]:
    """``{names[k]: COCO RLE of label_map == k}`` for k >= 1 (the ``refined_labels`` form)."""
    return {n: mask_to_rle(label_map == k) for k, n in enumerate(names) if k > 0}


def rles_to_label_map(
    rles: dict[str, dict], height: int, width: int, where: str = "refined_labels"
) -> tuple[np.ndarray, list[str]]:
    """Inverse of :func:`label_map_to_rles`: ``((H, W) int32 map, ["others", *labels])`` (``{}``: all 0).
    ``where`` names the field in errors (a mask of another size, a malformed RLE)."""
    if not isinstance(rles, dict):
        raise ValueError(f"{where}: expected an object {{label: RLE}}, got {type(rles).__name__}")
    out = np.zeros((height, width), np.int32)
    for k, (name, rle) in enumerate(rles.items(), 1):
        m = rle_to_mask(rle, f"{where}[{name!r}]")
        if m.shape != out.shape:
            raise ValueError(f"{where}: mask is {m.shape[0]}x{m.shape[1]}, record is {height}x{width}")
        out[m] = k
    return out, [BACKGROUND, *rles]


# ---------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class ResultRecord:
    """One result record (schema and worked example: module docstring), fields in file order.

    ``grid`` is a ``(rows, cols)`` tuple and ``repairs`` a list of
    :class:`~text4seg.descriptors.Repair`; masks stay COCO RLE dicts (decode with
    :func:`text4seg.data.rle.rle_to_mask`). Build one with :func:`make_record`, read one with
    :meth:`from_json` (the one validation), write one with :meth:`to_json`.
    """

    id: str
    turn: int
    image: str | None
    query: str
    labels: list[str]
    answer: str
    scheme: str
    grid: tuple[int, int]
    width: int
    height: int
    parse_valid: bool
    repairs: list[Repair]
    pred_labels: list[str]
    coarse: dict | None
    refined: dict | None
    refined_labels: dict[str, dict] | None
    num_tokens: int | None
    constrained: bool | None
    overlay: str | None
    mask_png: str | None

    def to_json(self) -> dict:
        """The JSON object of the record: every key of :data:`RECORD_KEYS`, in that order."""
        return {
            "id": self.id,
            "turn": self.turn,
            "image": self.image,
            "query": self.query,
            "labels": list(self.labels),
            "answer": self.answer,
            "scheme": self.scheme,
            "grid": [self.grid[0], self.grid[1]],
            "width": self.width,
            "height": self.height,
            "parse_valid": self.parse_valid,
            "repairs": [list(r) for r in self.repairs],
            "pred_labels": list(self.pred_labels),
            "coarse": self.coarse,
            "refined": self.refined,
            "refined_labels": self.refined_labels,
            "num_tokens": self.num_tokens,
            "constrained": self.constrained,
            "overlay": self.overlay,
            "mask_png": self.mask_png,
        }

    @classmethod
    def from_json(cls, obj, where: str) -> ResultRecord:
        """The record of one parsed results line, checked
        (:func:`~text4seg.data.result_checks.record_problem`); ``ValueError``
        ``"<where>: id '<id>': <field>: <problem>"`` (``where``: file and line) otherwise. Fields an older
        record lacks take their "unknown" value (``turn`` 0, ``query`` "", lists empty, the rest null)."""
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: not a result record (a JSON {type(obj).__name__}, not an object)")
        grid = record_verdict(obj)
        if isinstance(grid, str):
            rid = obj.get("id")
            who = f" id {rid!r}:" if isinstance(rid, str) or is_int(rid) else ""
            raise ValueError(f"{where}:{who} {grid}")
        get = obj.get
        rec = object.__new__(cls)  # the fields below are checked: no __init__ (20 frozen setattrs)
        rec.__dict__.update(
            id=str(obj["id"]),
            turn=int(get("turn", 0)),
            image=get("image"),
            query=get("query", ""),
            labels=list(get("labels", [])),
            answer=obj["answer"],
            scheme=obj["scheme"],
            grid=grid,
            width=int(obj["width"]),
            height=int(obj["height"]),
            parse_valid=get("parse_valid", False),
            repairs=[Repair(*r) for r in get("repairs", [])],
            pred_labels=list(get("pred_labels", [])),
            coarse=get("coarse"),
            refined=get("refined"),
            refined_labels=get("refined_labels"),
            num_tokens=get("num_tokens"),
            constrained=get("constrained"),
            overlay=get("overlay"),
            mask_png=get("mask_png"),
        )
        return rec

    @property
    def key(self) -> tuple:
        """The key that names the record (:func:`record_key`)."""
        return (self.id, self.turn) if self.id else (self.id, self.turn, self.image, self.query)


RECORD_KEYS = tuple(f.name for f in fields(ResultRecord))


def make_record(
    *,
    id: str,
    turn: int,
    image: str | None,
    query: str,
    labels: Sequence[str],
    answer: str,
    scheme: str,
    grid: tuple[int, int],
    masks: AnswerMasks,
    refined_map: np.ndarray | None = None,
    num_tokens: int | None = None,
    constrained: bool | None = None,
    overlay: str | None = None,
    mask_png: str | None = None,
) -> ResultRecord:
    """The result record of an answer decoded to ``masks``.

    ``refined_map``: the SAM-refined ``(H, W)`` int label map (same ids as ``masks.names``), or None.
    """
    h, w = masks.label_map.shape
    names = masks.names
    return ResultRecord(
        id=str(id),
        turn=int(turn),
        image=image,
        query=query,
        labels=list(labels),
        answer=answer,
        scheme=scheme,
        grid=(int(grid[0]), int(grid[1])),
        width=int(w),
        height=int(h),
        parse_valid=masks.parse_valid,
        repairs=list(masks.decoded.repairs),
        pred_labels=names[1:],
        coarse=mask_to_rle(masks.mask),
        refined=None if refined_map is None else mask_to_rle(refined_map > 0),
        refined_labels=None if refined_map is None else label_map_to_rles(refined_map, names),
        num_tokens=None if num_tokens is None else int(num_tokens),
        constrained=None if constrained is None else bool(constrained),
        overlay=overlay,
        mask_png=mask_png,
    )


BAD_LINES_SUFFIX = ".bad-lines.txt"


def _record_key(line: bytes) -> tuple[str, int] | None:
    """The (id, turn) of one results line, or None when it is not a result record."""
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict) or "id" not in rec or not isinstance(rec.get("answer"), str):
        return None
    try:
        return str(rec["id"]), int(rec.get("turn", 0))
    except (TypeError, ValueError):
        return None


def finished_keys(results: str | os.PathLike, echo=None) -> set[tuple[str, int]]:
    """(id, turn) keys already in a results JSONL, for a resumed run; every good line is kept.

    A line that is not a result record (corrupt JSON, a partial last line after a crash, a record
    without ``id``/``answer``) is reported through ``echo`` (default: stderr) by its line number and
    moved to ``<results>.bad-lines.txt`` (appended; nothing is deleted), and the file is rewritten
    atomically with the good lines only, so that readers of the results never meet it. A file whose
    first line is not a result record is not a results file: ``ValueError`` naming it (nothing touched).
    """
    path = Path(results)
    if not path.exists():
        return set()
    if not path.is_file():
        raise ValueError(f"{path} is not a file; move it away or choose another --out")
    keys: set[tuple[str, int]] = set()
    good: list[bytes] = []
    bad: list[tuple[int, bytes]] = []
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            key = _record_key(line)
            if key is None:
                if not good and not bad:
                    raise ValueError(
                        f"{path} is not a results file (line {n} is not a result record); "
                        "move it away or choose another --out"
                    )
                bad.append((n, line))
                continue
            keys.add(key)
            good.append(line if line.endswith(b"\n") else line + b"\n")
    if bad:
        say = echo or (lambda m: print(m, file=sys.stderr))
        aside = path.with_name(path.name + BAD_LINES_SUFFIX)
        with open(aside, "ab") as fh:
            for n, line in bad:
                fh.write(f"# {path.name}:{n}\n".encode() + line.rstrip(b"\n") + b"\n")
        say(
            f"{path}: line(s) {', '.join(str(n) for n, _ in bad)} not a result record: moved to {aside}; "
            f"keeping {len(good)} good line(s), redoing what is missing"
        )
    if bad or (good and sum(map(len, good)) != path.stat().st_size):
        mode = path.stat().st_mode & 0o777
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                fh.writelines(good)
            os.chmod(tmp, mode)
    return keys


def user_questions(messages) -> list[str]:
    """The user turns' text of a messages list, ``<image>`` tags removed and stripped (the ``query`` of
    a record; what joins a ``swift infer`` row, which has no id, with its ground-truth row)."""
    if not isinstance(messages, list):
        return []
    return [
        m["content"].replace("<image>", "").strip()
        for m in messages
        if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str)
    ]


def record_key(rec: dict) -> tuple:
    """The key that names one result record's JSON object (:attr:`ResultRecord.key` of a read one):
    ``(id, turn)``; a record without an id (``id == ""``, a ``swift infer`` row decoded without one) is
    named by ``("", turn, image, query)`` instead."""
    key = (str(rec["id"]), int(rec.get("turn", 0)))
    return key if key[0] else (*key, rec.get("image"), rec.get("query", ""))


def iter_records(path: str | os.PathLike, allow_empty: bool = False) -> list[tuple[int, ResultRecord]]:
    """``(line, record)`` of a results JSONL, each read with :meth:`ResultRecord.from_json`; ``ValueError``
    names the file, line, id (when readable) and field of the first bad one, or an empty file (unless
    ``allow_empty``)."""
    from text4seg.data.jsonl import iter_jsonl

    out = [(n, ResultRecord.from_json(obj, f"{path}:{n}")) for n, obj in iter_jsonl(path)]
    if not out and not allow_empty:
        raise ValueError(f"{path} has no result records (an empty file?)")
    return out


def load_records(path: str | os.PathLike, allow_empty: bool = False) -> list[ResultRecord]:
    """The records of a results JSONL, checked as by :func:`iter_records`."""
    return [rec for _, rec in iter_records(path, allow_empty)]


def repair_report(records: Iterable[ResultRecord]) -> dict:
    """``{"answers", "parse_valid", "answers_repaired", <repair kind>: answers with it, ...}`` of records.

    The per-kind counts are :func:`text4seg.descriptors.count_repairs` of the records' repairs.
    """
    answers = valid = 0
    decoded = []
    for rec in records:
        answers += 1
        valid += bool(rec.parse_valid)
        decoded.append(Decoded([], (0, 0), list(rec.repairs)))
    counts = count_repairs(decoded)
    repaired = counts.pop("answers_repaired")
    return {
        "answers": answers,
        "parse_valid": valid,
        "answers_repaired": repaired,
        **dict(sorted(counts.items())),
    }
