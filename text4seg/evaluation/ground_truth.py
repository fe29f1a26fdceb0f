"""The ground truth of ``text4seg evaluate``: built rows read, checked and keyed, and the join of result
records with them.

:func:`load_ground_truth` gives ``{(id, turn): entry}``; :func:`join_key` finds a record's entry: by
``(text4seg.id, turn)``, or, for a record without an id (``id == ""``: a ``swift infer`` row decoded by
``text4seg decode``, whose ``text4seg`` block ms-swift dropped), by the ground-truth query with the same
image path and question (the user message without ``<image>``); two such queries are an error, never a
guess. :func:`check_same_grid` refuses a record decoded on another grid or scheme than its row was built
with (its scores would be silently wrong). The ground truth of turn ``t`` is ``text4seg.gt.masks[t]``
(full resolution COCO RLE) for referring tasks, and the label-map PNG ``text4seg.gt.label_map`` (pixel
value ``v`` is class ``classes[v]``, values in ``gt.ignore`` ignored) for ``semantic`` and ``instance``
rows; the peers' tasks read the row's ``text4seg`` block (``entry["meta"]``). Relative paths resolve
against ``root``. ``evaluate`` reads it through :class:`GroundTruthIndex` (bounded memory);
:func:`load_ground_truth` holds every entry (the HTML report's gallery).
"""

from __future__ import annotations

import os

from text4seg.data.images import check_image_size
from text4seg.data.jsonl import iter_jsonl, iter_lines, parse_line
from text4seg.data.queries import turn_labels
from text4seg.data.result_checks import check_grid
from text4seg.data.results import ResultRecord, user_questions
from text4seg.data.rle import check_rle
from text4seg.descriptors import SCHEMES

PEER_TASKS = ("multi", "interactive", "panoptic")  # scored from the row's own fields (entry["meta"])
LABEL_MAP_TASKS = ("semantic", "instance")  # ground truth: a label-map PNG


def _resolve(path: str, root: str | os.PathLike | None) -> str:
    return path if (root is None or os.path.isabs(path)) else os.path.join(root, path)


def _gt_problem(meta, where: str) -> str | None:
    """Why a built row's ``text4seg`` block cannot serve as ground truth, as ``"<field>: <problem>"``."""
    if meta is not None and not isinstance(meta, dict):
        return f"text4seg: expected an object, got {type(meta).__name__} {str(meta)[:60]!r}"
    if not isinstance(meta, dict) or "gt" not in meta:
        return "no text4seg.gt (is this a built JSONL?)"
    rid = meta.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return f"text4seg.id: expected a string, got {type(rid).__name__} {str(rid)[:60]!r}"
    gt = meta["gt"]
    if not isinstance(gt, dict):
        return f"text4seg.gt: expected an object, got {type(gt).__name__}"
    if not isinstance(meta.get("task", "res"), str):
        return f"text4seg.task: expected a string, got {str(meta['task'])[:60]!r}"
    for k in ("labels", "asked"):
        if meta.get(k) is not None and not isinstance(meta[k], list):
            return f"text4seg.{k}: expected a list of labels, got {str(meta[k])[:60]!r}"
    if meta.get("scheme") is not None and (
        not isinstance(meta["scheme"], str) or meta["scheme"] not in SCHEMES
    ):
        return f"text4seg.scheme: unknown scheme {str(meta['scheme'])[:60]!r}"
    try:
        if meta.get("grid") is not None:
            check_grid(meta["grid"], "text4seg.grid")
        if meta.get("width") is not None or meta.get("height") is not None:
            check_image_size(meta.get("height"), meta.get("width"), "text4seg.height/width")
        masks = gt.get("masks") or []
        if not isinstance(masks, list):
            return f"text4seg.gt.masks: expected a list of COCO RLE, got {type(masks).__name__}"
        for j, m in enumerate(masks):
            check_rle(m, f"text4seg.gt.masks[{j}]")
    except ValueError as exc:
        return str(exc)
    if gt.get("label_map") is not None and not isinstance(gt["label_map"], str):
        return f"text4seg.gt.label_map: expected a path, got {type(gt['label_map']).__name__}"
    if not isinstance(gt.get("classes", []), list):
        return f"text4seg.gt.classes: expected a list of class names, got {str(gt['classes'])[:60]!r}"
    ignore = gt.get("ignore", [])
    if not (isinstance(ignore, list) and all(type(v) is int for v in ignore)):
        return f"text4seg.gt.ignore: expected a list of pixel values, got {str(ignore)[:60]!r}"
    return None


def _join_image(row: dict, root) -> str | None:
    """The normalised image path of a row or record (the join key of records without an id)."""
    images = row.get("images")
    first = images[0] if isinstance(images, list) and images else row.get("image")
    path = first.get("path") if isinstance(first, dict) else first
    if not isinstance(path, str) or not path:
        return None
    return os.path.realpath(_resolve(path, root))


def _swift_problem(row: dict) -> str | None:
    """Why a built row's ms-swift fields (``messages``, ``images``) are not what a built row holds."""
    messages = row.get("messages")
    if messages is not None and not isinstance(messages, list):
        return f"messages: expected a list of messages, got {type(messages).__name__} {str(messages)[:60]!r}"
    for j, m in enumerate(messages or []):
        if not isinstance(m, dict) or not isinstance(m.get("content", ""), (str, list)):
            return f"messages[{j}]: expected a {{'role', 'content'}} object, got {str(m)[:60]!r}"
    images = row.get("images")
    if images is not None and not isinstance(images, list):
        return f"images: expected a list of paths, got {type(images).__name__} {str(images)[:60]!r}"
    return None


def _check_row(row: dict, n: int, gt_path) -> dict:
    """The row's ``text4seg`` block once it is checked (:func:`_gt_problem`, and the ms-swift fields by
    :func:`_swift_problem`); ``ValueError`` naming the file, line, id and field otherwise."""
    meta = row.get("text4seg")
    problem = _gt_problem(meta, f"{gt_path}:{n}") or _swift_problem(row)
    if problem:
        rid = meta.get("id") if isinstance(meta, dict) else None
        who = f" id {rid!r}:" if isinstance(rid, (str, int)) and not isinstance(rid, bool) else ""
        raise ValueError(f"{gt_path}:{n}:{who} {problem}")
    task = meta.get("task", "res")
    if task in LABEL_MAP_TASKS and not meta["gt"].get("label_map"):
        raise ValueError(f"{gt_path}:{n}: id {meta['id']!r}: text4seg.gt.label_map: missing (a {task} row)")
    return meta


def _row_keys(row: dict, meta: dict) -> list[tuple[str, int]]:
    """The ``(id, turn)`` keys a checked row gives ground truth for (a referring turn without a stored
    mask gives none)."""
    turns = len(user_questions(row.get("messages"))) or 1
    task = meta.get("task", "res")
    if task not in LABEL_MAP_TASKS and task not in PEER_TASKS:
        turns = min(turns, len(meta["gt"].get("masks") or []))
    return [(str(meta["id"]), t) for t in range(turns)]


def _row_entries(
    row: dict, meta: dict, n: int, gt_path, root, with_image: bool = True, turn: int | None = None
):
    """``(key, entry)`` of each scorable turn of a checked row (entry fields: :func:`load_ground_truth`;
    ``with_image=False`` leaves ``image`` None, the realpath only the join of records without an id
    needs; ``turn``: that turn's only, when the row has it)."""
    gt, task = meta["gt"], meta.get("task", "res")
    where = f"{gt_path}:{n}: id {meta['id']!r}"
    questions = user_questions(row.get("messages"))
    turns = len(questions) or 1
    image = _join_image(row, root) if with_image else None
    grid = check_grid(meta["grid"]) if meta.get("grid") is not None else None
    for t in range(turns) if turn is None else range(turn, min(turn + 1, turns)):
        entry = {"task": task, "labels": turn_labels(meta, t, turns), "width": meta.get("width")}
        entry["dataset"] = str((meta.get("source") or {}).get("dataset", ""))
        entry.update(where=where, image=image, query=questions[t] if questions else "")
        entry.update(grid=grid, scheme=meta.get("scheme"))
        entry["meta"] = meta  # the peers' scorers read the row's own fields
        if task in LABEL_MAP_TASKS:
            entry.update(
                label_map=_resolve(gt["label_map"], root),
                classes=list(gt.get("classes", [])),
                ignore=list(gt.get("ignore", [])),
            )
        elif task not in PEER_TASKS:  # referring: the turn's mask
            masks = gt.get("masks") or []
            if t >= len(masks):
                continue  # no stored mask for this turn: not scorable
            entry["rle"] = masks[t]
            entry["rle_where"] = f"{where}: text4seg.gt.masks[{t}]"
        yield (str(meta["id"]), t), entry


def load_ground_truth(gt_path: str | os.PathLike, root=None) -> dict[tuple[str, int], dict]:
    """``{(id, turn): {"task", "labels", "mask" | ("label_map", "classes", "ignore")}}`` (lazy masks:
    ``"rle"`` / ``"label_map"`` paths are decoded by the caller). Each entry also carries ``where``
    (file, line and id, for errors), ``image`` and ``query`` (the join of records without an id), and
    the ``grid`` and ``scheme`` the row was built with (None when the row does not say).

    Every row is checked first (types, sizes, RLE forms; nothing decoded): ``ValueError`` naming the file,
    line, id and field. The whole file is held in memory: ``evaluate`` uses :class:`GroundTruthIndex`."""
    out: dict[tuple[str, int], dict] = {}
    for n, row in iter_jsonl(gt_path):
        meta = _check_row(row, n, gt_path)
        out.update(_row_entries(row, meta, n, gt_path, root))
    return out


class GroundTruthIndex:
    """The ground truth of ``evaluate`` in bounded memory: every row is read and checked once (as by
    :func:`load_ground_truth`), and only a 64-bit hash of each ``(id, turn)`` key with the byte offset and
    line of its row is kept (~20 bytes a key, numpy arrays sorted by hash). :meth:`get` reads the one row
    of a key again from the file (hash collisions resolved by comparing the real keys; a key given by
    two rows is the later row's, as in :func:`load_ground_truth`). :meth:`mark` records the keys joined,
    :attr:`missing` counts the others. ``label_map_classes``: the classes of the first label-map row
    (the semantic class list). The index of records without an id (image and question) is built on
    first use (:meth:`by_question`), by a second pass over the file."""

    def __init__(self, gt_path: str | os.PathLike, root=None):
        from array import array

        import numpy as np

        self.path, self.root = gt_path, root
        self.label_map_classes: list | None = None
        self._by_question: dict | None = None
        hashes, offsets, lines, sizes = array("q"), array("q"), array("q"), array("q")
        offset, any_row = 0, False
        for n, raw in iter_lines(gt_path):
            row = parse_line(raw, gt_path, n)
            if row is not None:
                any_row = True
                meta = _check_row(row, n, gt_path)
                if self.label_map_classes is None and meta.get("task", "res") in LABEL_MAP_TASKS:
                    self.label_map_classes = list(meta["gt"].get("classes", []))
                for key in _row_keys(row, meta):
                    hashes.append(hash(key))
                    offsets.append(offset)
                    lines.append(n)
                    sizes.append(len(raw))
            offset += len(raw)
        if not len(lines) and not any_row:
            raise ValueError(
                f"{gt_path}: no rows (an empty file?); expected built rows with their ground truth"
            )
        h = np.frombuffer(hashes, np.int64) if len(hashes) else np.zeros(0, np.int64)
        order = np.argsort(h, kind="stable")
        self._hash = h[order]
        self._offset = (np.frombuffer(offsets, np.int64) if len(offsets) else np.zeros(0, np.int64))[order]
        self._line = (np.frombuffer(lines, np.int64) if len(lines) else np.zeros(0, np.int64))[order]
        self._size = (np.frombuffer(sizes, np.int64) if len(sizes) else np.zeros(0, np.int64))[order]
        self._alive = np.ones(len(order), bool)
        self._seen = np.zeros(len(order), bool)
        self._fh = open(gt_path, "rb")  # noqa: SIM115 (closed by close())
        self._drop_superseded()

    def _drop_superseded(self) -> None:
        """Keys given by more than one row (or 64-bit hashes equal by chance): each key's slot is its
        last row's, the others are dead."""
        import numpy as np

        dup = np.flatnonzero(self._hash[1:] == self._hash[:-1])
        if not dup.size:
            return
        latest: dict[tuple[str, int], int] = {}
        slots = sorted({*dup.tolist(), *(dup + 1).tolist()}, key=lambda s: (self._offset[s], s))
        for slot in slots:  # file order
            row, meta, _ = self._read(slot)
            key = next(k for k in _row_keys(row, meta) if hash(k) == self._hash[slot])
            if key in latest:
                self._alive[latest[key]] = False
            latest[key] = slot

    def _read(self, slot: int) -> tuple[dict, dict, int]:
        """The row of a slot read again (checked on the first pass), its ``text4seg`` block and line: one
        ``pread`` of the line's bytes (``parse_line`` names the line if the file changed since the first
        pass)."""
        n = int(self._line[slot])
        raw = os.pread(self._fh.fileno(), int(self._size[slot]), int(self._offset[slot]))
        row = parse_line(raw, self.path, n)
        if not isinstance(row, dict) or not isinstance(row.get("text4seg"), dict):
            raise ValueError(f"{self.path}:{n}: the row changed while evaluate read the file")
        return row, row["text4seg"], n

    def __len__(self) -> int:
        return int(self._alive.sum())

    def get(self, key: tuple[str, int]) -> tuple[int, dict] | None:
        """``(slot, entry)`` of a key (entry as :func:`load_ground_truth`'s, ``image`` None), or None."""

        h, hashes = hash(key), self._hash
        i = int(hashes.searchsorted(h))
        while i < len(hashes) and hashes[i] == h:
            if self._alive[i]:
                row, meta, n = self._read(i)
                if str(meta["id"]) == key[0]:  # else a 64-bit hash equal by chance
                    for _, entry in _row_entries(row, meta, n, self.path, self.root, False, key[1]):
                        return i, entry
            i += 1
        return None

    def seen(self, slot: int) -> bool:
        return bool(self._seen[slot])

    def mark(self, slot: int) -> None:
        """Record that the key of ``slot`` was joined (:attr:`missing`)."""
        self._seen[slot] = True

    @property
    def missing(self) -> int:
        """Keys with ground truth that no record joined."""
        return int((self._alive & ~self._seen).sum())

    def by_question(self) -> dict[tuple, list[tuple[str, int]]]:
        """``{(image realpath, question): [keys]}`` (the join of records without an id), built once."""
        if self._by_question is None:
            self._by_question = {}
            for n, row in iter_jsonl(self.path):
                meta = row["text4seg"]
                for key, g in _row_entries(row, meta, n, self.path, self.root):
                    self._by_question.setdefault((g["image"], g["query"]), []).append(key)
        return self._by_question

    def close(self) -> None:
        self._fh.close()


def join_key(rec: ResultRecord, line: str, gts: dict[tuple[str, int], dict], by_question: dict, root=None):
    """The ground-truth key of one record: ``(id, turn)``; a record without an id (``swift infer``
    output decoded by ``text4seg decode``) joins the ground-truth query with the same image and question
    (``by_question``), and two such queries are an error (which one?). None: no ground truth."""
    if rec.id:
        return rec.id, rec.turn
    image = _join_image({"image": rec.image}, root)
    keys = by_question.get((image, rec.query), [])
    if len(keys) > 1:
        ids = ", ".join(repr(k[0]) for k in keys[:4])
        raise ValueError(
            f"{line}: id: the record has no id and {len(keys)} ground-truth queries have its image "
            f"{rec.image!r} and question {rec.query[:80]!r} (ids {ids}): the join is "
            "ambiguous; decode rows that keep their text4seg.id"
        )
    return keys[0] if keys else None


def check_same_grid(rec: ResultRecord, g: dict, line: str) -> None:
    """Refuse a record decoded on another grid or scheme than its ground-truth row was built with."""
    grid, scheme = rec.grid, rec.scheme
    if (g["grid"] is None or g["grid"] == grid) and (g["scheme"] is None or g["scheme"] == scheme):
        return
    want_grid = g["grid"] or grid
    raise ValueError(
        f"{line}: id {rec.id!r}: grid/scheme: the answer was decoded on grid {grid[0]}x{grid[1]} "
        f"scheme {scheme}, the ground truth ({g['where']}) was built with grid {want_grid[0]}x{want_grid[1]} "
        f"scheme {g['scheme'] or scheme}: decode again with --grid {want_grid[0]}x{want_grid[1]} "
        f"--scheme {g['scheme'] or scheme}"
    )
