"""Merge the ``results.jsonl`` of ``text4seg predict --shard i/N`` workers into one file to evaluate.

``merge_results([shard0, shard1, ...], out_dir) -> Path`` writes ``out_dir/results.jsonl`` (atomically):
every record of every input, once per ``(id, turn)`` key, in input order. An input is a results JSONL or
the output folder that holds one. Rules:

* a key in two inputs with the same ``answer`` is kept once (a shard re-run by hand); with different
  answers it is an error naming the key and both files (the shards disagree: which one to trust?);
* a last line without its newline (a worker killed mid-write) is skipped and counted, like a resume
  does; a broken line elsewhere is an error naming the file and line;
* every record is checked as ``text4seg evaluate`` checks it
  (:meth:`~text4seg.data.results.ResultRecord.from_json`): a wrong type is an error naming the file, line,
  id and field; a record without an id (``text4seg decode`` of ``swift infer`` output) is keyed by
  ``(turn, image, query)`` instead;
* ``overlay`` / ``mask_png`` paths (relative to their shard's folder) are rewritten relative to
  ``out_dir`` so they still point at the shard's PNGs (nothing is copied).

Worked example: shard 0 holds keys (a, 0), (c, 0); shard 1 holds (b, 0) and a half-written line;
``merge_results([s0, s1], out)`` writes a, c, b and returns counts ``{"records": 3, "inputs": 2,
"duplicates": 0, "partial_lines": 1}`` through ``stats`` when given a dict.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from text4seg.data.jsonl import AtomicWriter, iter_lines, parse_line
from text4seg.data.results import RESULTS_NAME, ResultRecord, record_key

COMPLETE = ("answer", "width", "height", "grid", "scheme")  # a record evaluate can score


def _results_file(p: str | os.PathLike) -> Path:
    p = Path(p)
    f = p / RESULTS_NAME if p.is_dir() else p
    if not f.is_file():
        raise OSError(f"no results file: {f}")
    return f


def _records(path: Path):
    """``(line_no, record)`` of a results JSONL; ``(None, None)`` for a partial last line (no newline: the
    writer was stopped before flushing it). Lines are read in bounded memory and parsed strictly
    (:func:`text4seg.data.jsonl.parse_line`); every record is type-checked (:func:`_problem`)."""
    for n, raw in iter_lines(path):
        if not raw.strip():
            continue
        if not raw.endswith(b"\n"):  # only the last line can lack its newline
            yield None, None
            return
        rec = parse_line(raw, path, n)
        if "id" not in rec:
            raise ValueError(f"{path}:{n}: not a result record (no 'id')")
        if all(k in rec for k in COMPLETE):  # checked in full, as evaluate checks it
            ResultRecord.from_json(rec, f"{path}:{n}")
        elif problem := _problem(rec):
            who = f" id {rec['id']!r}:" if isinstance(rec["id"], (str, int)) and rec["id"] is not True else ""
            raise ValueError(f"{path}:{n}:{who} {problem}")
        for k in ("overlay", "mask_png"):
            if rec.get(k) is not None and not isinstance(rec[k], str):
                raise ValueError(
                    f"{path}:{n}: id {rec['id']!r}: {k}: expected a relative path, got {rec[k]!r:.60}"
                )
        yield n, rec


def _problem(rec: dict) -> str | None:
    """Why an incomplete record (one lacking a field of :data:`COMPLETE`) cannot be merged: the fields
    merge reads (``id``, ``turn``, ``answer``) of the wrong type."""
    rid, turn = rec["id"], rec.get("turn", 0)
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return f"id: expected a string, got {type(rid).__name__} {str(rid)[:60]!r}"
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 0:
        return f"turn: expected an int >= 0, got {turn!r}"
    if "answer" in rec and not isinstance(rec["answer"], str):
        return f"answer: expected a string, got {type(rec['answer']).__name__}"
    return None


def merge_results(
    inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, stats: dict | None = None
) -> Path:
    """Merge shard results into ``out_dir/results.jsonl`` (rules: module docstring); returns its path."""
    if not inputs:
        raise ValueError("nothing to merge: give the shards' output folders or results files")
    out = Path(out_dir)
    target = (out / RESULTS_NAME).resolve()
    files = [_results_file(p) for p in inputs]
    if target in {f.resolve() for f in files}:
        raise ValueError(f"--out {out} holds one of the inputs ({target}); merge into another folder")
    seen: dict[tuple, tuple[str, Path, int]] = {}
    merged: list[dict] = []
    dup = partial = 0
    for f in files:
        for n, rec in _records(f):
            if rec is None:
                partial += 1
                continue
            key = record_key(rec)
            if key in seen:
                answer, f0, n0 = seen[key]
                if answer != rec.get("answer"):
                    raise ValueError(f"{f}:{n}: key {key} also in {f0}:{n0} with a different answer")
                dup += 1
                continue
            seen[key] = (rec.get("answer"), f, n)
            for k in ("overlay", "mask_png"):
                if rec.get(k):
                    rec[k] = os.path.relpath(f.parent.resolve() / rec[k], out.resolve())
            merged.append(rec)
    if not merged:
        raise ValueError(f"nothing to merge: no result record in {', '.join(map(str, files))[:300]}")
    out.mkdir(parents=True, exist_ok=True)
    with AtomicWriter(out / RESULTS_NAME) as wr:
        for rec in merged:
            wr.write(json.dumps(rec, ensure_ascii=False))
    if stats is not None:
        stats.update(records=len(merged), inputs=len(files), duplicates=dup, partial_lines=partial)
    return out / RESULTS_NAME
