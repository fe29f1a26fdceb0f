"""The checks of a result record (:mod:`text4seg.data.results`): :func:`record_problem` says why a
parsed results line cannot be scored (every field's type, the grid, the image size, and every mask's form
and size, nothing decoded or allocated), :func:`record_verdict` gives the checked grid instead when there
is no problem (what :meth:`~text4seg.data.results.ResultRecord.from_json` reads), and :func:`check_grid`
reads a grid field (results and built rows alike). Errors are ``"<field>: <problem>"`` quoting the value;
the caller adds the file, line and id.
"""

from __future__ import annotations

from functools import lru_cache

from text4seg.data.images import check_image_size
from text4seg.data.rle import check_rle
from text4seg.descriptors import SCHEMES, grid_shape


def is_int(v) -> bool:
    """An ``int`` that is not a ``bool`` (JSON ``true`` is not a count)."""
    return isinstance(v, int) and not isinstance(v, bool)


def check_grid(value, field: str = "grid") -> tuple[int, int]:
    """``(rows, cols)`` of a grid field (an int or a pair of ints within the descriptor limits);
    ``ValueError`` naming ``field`` and quoting the value."""
    if type(value) is list and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        try:  # the usual [rows, cols] of ints: one cached verdict a pair
            return _grid_pair(value[0], value[1])
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{field}: {exc}") from None
    pair = value if isinstance(value, (list, tuple)) else [value]
    if not (len(pair) in (1, 2) and all(is_int(v) for v in pair)):
        raise ValueError(f"{field}: expected an int or [rows, cols] of ints, got {str(value)[:60]!r}")
    try:
        return grid_shape(value if is_int(value) else tuple(value))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{field}: {exc}") from None


@lru_cache(maxsize=256)
def _grid_pair(rows: int, cols: int) -> tuple[int, int]:
    """:func:`text4seg.descriptors.grid_shape` of ``(rows, cols)`` (an error is raised, not cached)."""
    return grid_shape((rows, cols))


def _rle_problem(value, field: str, hw: tuple[int, int]) -> str | None:
    try:
        if check_rle(value, field) != hw:
            return f"{field}: mask size {value['size']} is not the record's [height, width] {list(hw)}"
    except ValueError as exc:
        return str(exc)
    return None


_TYPED = (
    ("image", (str, type(None)), "a path or null"),
    ("query", (str,), "a string"),
    ("num_tokens", (int, type(None)), "an int or null"),
    ("overlay", (str, type(None)), "a relative path or null"),
    ("mask_png", (str, type(None)), "a relative path or null"),
)
_FLAGS = (
    ("parse_valid", (bool,), "true or false"),
    ("constrained", (bool, type(None)), "a bool or null"),
)


def record_problem(rec: dict) -> str | None:
    """Why a results line cannot be scored (None: it can), as ``"<field>: <problem>"``: it needs ``id``
    (a string or an int), the ``answer`` text, the image ``width``/``height``, and the ``grid`` and
    ``scheme`` the answer is to be decoded with; every other field present must have its type
    (the schema of :mod:`text4seg.data.results`) and every mask the record's size. Nothing is decoded or
    allocated."""
    problem = record_verdict(rec)
    return problem if isinstance(problem, str) else None


def record_verdict(rec: dict) -> str | tuple[int, int]:
    """:func:`record_problem`'s verdict, or the record's checked grid when there is no problem (what
    :meth:`~text4seg.data.results.ResultRecord.from_json` reads)."""
    missing = [k for k in ("id", "answer", "width", "height", "grid", "scheme") if k not in rec]
    if missing:
        return f"not a result record: no {missing} (write it with text4seg predict or decode)"
    if not isinstance(rec["id"], str) and not is_int(rec["id"]):
        return f"id: expected a string, got {type(rec['id']).__name__} {str(rec['id'])[:60]!r}"
    turn = rec.get("turn", 0)
    if not is_int(turn) or turn < 0:
        return f"turn: expected an int >= 0, got {turn!r}"
    if not isinstance(rec["answer"], str):
        return f"answer: expected a string, got {type(rec['answer']).__name__}"
    if not isinstance(rec["scheme"], str) or rec["scheme"] not in SCHEMES:
        return f"scheme: unknown scheme {str(rec['scheme'])[:60]!r}; choose one of {sorted(SCHEMES)}"
    try:
        grid = check_grid(rec["grid"])
        hw = check_image_size(rec["height"], rec["width"], "height/width")
    except ValueError as exc:
        return str(exc)
    for k, types, want in _TYPED:
        if k in rec and (not isinstance(rec[k], types) or isinstance(rec[k], bool)):
            return f"{k}: expected {want}, got {type(rec[k]).__name__} {str(rec[k])[:40]!r}"
    for k, types, want in _FLAGS:
        if k in rec and not isinstance(rec[k], types):
            return f"{k}: expected {want}, got {type(rec[k]).__name__} {str(rec[k])[:40]!r}"
    for k in ("labels", "pred_labels"):
        if k in rec and not (isinstance(rec[k], list) and all(isinstance(x, str) for x in rec[k])):
            return f"{k}: expected a list of strings, got {str(rec[k])[:60]!r}"
    reps = rec.get("repairs", [])
    if not isinstance(reps, list) or not all(
        isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) for r in reps
    ):
        return f"repairs: expected a list of [kind, row, detail], got {str(reps)[:60]!r}"
    return _masks_problem(rec, hw) or grid


def _masks_problem(rec: dict, hw: tuple[int, int]) -> str | None:
    """The first bad mask of a record (``coarse``, ``refined``, each of ``refined_labels``), or None. A
    label's mask equal to the checked ``refined`` union (the one label of a referring answer) is not
    checked twice."""
    for k in ("coarse", "refined"):
        if rec.get(k) is not None and (problem := _rle_problem(rec[k], k, hw)):
            return problem
    rl = rec.get("refined_labels")
    if rl is not None:
        if not isinstance(rl, dict):
            return f"refined_labels: expected an object {{label: RLE}}, got {type(rl).__name__}"
        union = rec.get("refined")
        for name, rle in rl.items():
            if union is not None and rle == union:
                continue
            if problem := _rle_problem(rle, f"refined_labels[{name!r}]", hw):
                return problem
    return None
