"""Predict: run a trained model on images and queries, turn its answers into masks, refine them with SAM.

Python API
----------
``predict_jsonl(model, jsonl, out_dir, ...) -> Path`` runs every query of a built JSONL (one query per
user turn of a row; the row's first image) and returns the results JSONL path; ``Predictor`` is the
reusable engine (``Predictor(model).predict([Query, ...])`` yields result records);
``answer_to_masks(answer, height, width, ...)`` is the decoding step alone (used by ``text4seg decode``).

Generation goes through ms-swift's ``TransformersEngine`` in batches (greedy). Constrained decoding
(:mod:`~text4seg.descriptors.constrain`) reaches ``model.generate`` through the engine's
``pre_infer_hook`` (its ``logits_processor`` generate argument);
the engine's template still builds the inputs.

Results JSONL (``OUT/results.jsonl``, one object per query, appended and flushed per sample)
------------------------------------------------------------------------------------------
::

    {"id": "shapes/val/3", "turn": 0,            # key = (id, turn), joins with the built JSONL
     "image": "/abs/img.png", "query": "Segment the red circle.", "labels": ["red circle"],
     "answer": "Sure.\\n<seg>others *16\\n ...</seg>",  # raw model text
     "scheme": "rrle", "grid": [16, 16], "width": 640, "height": 480,
     "parse_valid": true,                         # the answer parses with decode(strict=True)
     "repairs": [["row_short", 3, "14 cells for 16"]],  # lenient decoder repairs (kind, row, detail)
     "pred_labels": ["red circle"],               # non-"others" labels the answer names
     "coarse": {"size": [480, 640], "counts": "..."},   # COCO RLE (str counts) of the decoded mask
     "refined": {"size": [480, 640], "counts": "..."} | null,  # after SAM (null without SAM)
     "num_tokens": 57, "constrained": false, "overlay": "overlays/000003_t0.png" | null}

Masks: every non-``others`` cell is foreground (the published convention); ``label_map`` is kept per
label for multi-label refinement. A re-run with the same ``out_dir`` skips the (id, turn) keys already
in ``results.jsonl`` (resume after a crash); a partial last line is dropped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from text4seg._lazy import require
from text4seg.data.records import parse_shard
from text4seg.data.rle import mask_to_rle
from text4seg.descriptors import (
    BACKGROUND,
    Decoded,
    DescriptorError,
    decode,
    grid_to_label_map,
    max_answer_tokens,
    normalize_label,
)

RESULTS_NAME = "results.jsonl"


# ---------------------------------------------------------------------------------------- masks / RLE
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
    scheme: str = "rrle",
    labels: Sequence[str] | None = None,
) -> AnswerMasks:
    """Decode one answer (lenient) and paint it at ``height x width`` (PIL-nearest, whole image).

    ``labels=None``: every non-``others`` label is foreground; otherwise only those labels (normalised)
    are, and :attr:`AnswerMasks.other_labels` lists the others the answer named.
    """
    dec = decode(answer, size, scheme)
    try:
        decode(answer, size, scheme, strict=True)
        valid = True
    except DescriptorError:
        valid = False
    label_map, names = grid_to_label_map(dec.grid, height, width)
    if labels is None:
        mask, other = label_map > 0, []
    else:
        wanted = {normalize_label(x) for x in labels}
        ids = [k for k, n in enumerate(names) if n in wanted and n != BACKGROUND]
        mask = np.isin(label_map, ids)
        other = [n for n in names[1:] if n not in wanted]
    return AnswerMasks(dec, valid, label_map, names, mask, other)


def save_overlay(
    path: str | os.PathLike, image, coarse: np.ndarray, refined: np.ndarray | None = None
) -> None:
    """Write a PNG for people: the image (or black) with the coarse mask in red, the refined in green.

    ``image``: a path, a PIL image, an ``(H, W, 3)`` uint8 array or None; masks ``(H, W)`` bool.
    """
    from PIL import Image

    h, w = coarse.shape
    if image is None:
        base = np.zeros((h, w, 3), np.float32)
    else:
        img = Image.open(image) if isinstance(image, (str, os.PathLike)) else image
        if not isinstance(img, np.ndarray):
            img = np.asarray(img.convert("RGB"))
        base = img.astype(np.float32)[:h, :w]
    out = base.copy()
    out[coarse] = 0.5 * base[coarse] + 0.5 * np.array([230, 30, 30], np.float32)
    if refined is not None:
        out[refined] = 0.5 * out[refined] + 0.5 * np.array([30, 220, 30], np.float32)
    _atomic_png(path, out.clip(0, 255).astype(np.uint8))


def _atomic_png(path: str | os.PathLike, array: np.ndarray) -> None:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------ queries
@dataclass
class Query:
    """One inference query: an image and a question (no ``<image>`` tag).

    ``labels``: the target labels (allowed by constrained decoding besides ``others``); ``grid`` is
    ``(rows, cols)``; ``width``/``height`` 0 means "read from the image".
    """

    id: str
    image: str
    question: str
    turn: int = 0
    labels: list[str] = field(default_factory=list)
    grid: tuple[int, int] = (16, 16)
    scheme: str = "rrle"
    width: int = 0
    height: int = 0

    @property
    def key(self) -> tuple[str, int]:
        return (self.id, self.turn)


def _image_path(images, root: str | os.PathLike | None) -> str:
    if not images:
        raise ValueError("row has no image")
    first = images[0]
    p = first.get("path") if isinstance(first, dict) else first
    if not isinstance(p, str):
        raise ValueError(f"unsupported image entry {str(first)[:80]!r}: expected a path")
    if root is not None and not os.path.isabs(p):
        p = os.path.join(root, p)
    return p


def turn_labels(meta: dict, turn: int, n_turns: int) -> list[str]:
    """The target labels of one turn: ``labels[turn]`` when a referring row lists one label per turn
    (the builders' convention), else all of the row's labels."""
    labels = [str(x) for x in (meta.get("labels") or [])]
    if meta.get("task") == "semantic":  # the classes the question asks for, present or not
        return [str(x) for x in (meta.get("asked") or labels)]
    if n_turns > 1 and len(labels) == n_turns:
        return [labels[turn]]
    return labels


def queries_from_row(row: dict, root: str | os.PathLike | None = None, index: int = 0) -> list[Query]:
    """The queries of one built (ms-swift) JSONL row: one per user turn, all on the row's first image."""
    meta = row.get("text4seg") or {}
    image = _image_path(row.get("images"), root)
    users = [m["content"] for m in row.get("messages", []) if m.get("role") == "user"]
    if not users:
        raise ValueError(f"row {index}: no user message")
    grid = tuple(meta.get("grid") or (16, 16))
    return [
        Query(
            id=str(meta.get("id", index)),
            image=image,
            question=q.replace("<image>", "").strip(),
            turn=t,
            labels=turn_labels(meta, t, len(users)),
            grid=(int(grid[0]), int(grid[1])),
            scheme=meta.get("scheme", "rrle"),
            width=int(meta.get("width") or 0),
            height=int(meta.get("height") or 0),
        )
        for t, q in enumerate(users)
    ]


def load_queries(
    jsonl: str | os.PathLike,
    root: str | os.PathLike | None = None,
    limit: int | None = None,
    shard: str | tuple[int, int] | None = None,
) -> list[Query]:
    """Queries of a built JSONL (see :func:`queries_from_row`); ``shard`` ``i/N`` keeps rows i, i+N, ...;
    ``limit`` caps the number of queries."""
    from text4seg.data.records import read_jsonl

    i, n = parse_shard(shard)
    out: list[Query] = []
    for k, row in enumerate(read_jsonl(jsonl)):
        if k % n != i:
            continue
        out.extend(queries_from_row(row, root, k))
        if limit is not None and len(out) >= limit:
            return out[:limit]
    return out


def finished_keys(results: str | os.PathLike) -> set[tuple[str, int]]:
    """(id, turn) keys already in a results JSONL; a truncated last line (crash) is cut off the file."""
    path = Path(results)
    if not path.exists():
        return set()
    keys: set[tuple[str, int]] = set()
    good = 0
    with open(path, "rb") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break
            if not line.endswith(b"\n"):
                break
            keys.add((str(rec["id"]), int(rec.get("turn", 0))))
            good += len(line)
    if good != path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return keys


# ------------------------------------------------------------------------------------------- engine
def _enable_kv_cache(engine) -> None:
    """``swift sft`` saves ``use_cache: false`` in a trained checkpoint (gradient checkpointing needs it);
    ``generate`` then recomputes the whole sequence at every step. Turn the cache back on for inference."""
    model = getattr(engine, "model", None)
    for cfg in (getattr(model, "config", None), getattr(model, "generation_config", None)):
        if cfg is not None and getattr(cfg, "use_cache", None) is False:
            cfg.use_cache = True
    sub = getattr(getattr(model, "config", None), "text_config", None)
    if sub is not None and getattr(sub, "use_cache", None) is False:
        sub.use_cache = True
    gc = getattr(engine, "generation_config", None)
    if gc is not None and getattr(gc, "use_cache", None) is False:
        gc.use_cache = True


def _image_size(q: Query) -> tuple[int, int]:
    if q.width > 0 and q.height > 0:
        return q.height, q.width
    from PIL import Image

    with Image.open(q.image) as im:
        return im.height, im.width


class Predictor:
    """A loaded model (ms-swift ``TransformersEngine``) plus optional SAM refiner.

    Args:
        model: model folder (or hub id, if online); ``adapters``: LoRA folders.
        batch_size: queries per ``generate`` call.
        max_new_tokens: generation budget (default: enough for a 16x16 answer, see :meth:`budget`).
        constrained: use :class:`~text4seg.descriptors.constrain.DescriptorLogitsProcessor` (strict parse
            within the budget); max_free_tokens: its cap on the text before ``<seg>``.
        sam: None, a :class:`text4seg.inference.refine.Refiner` or a ``segment_anything`` ``Sam`` model.
        logits_processors: extra ``transformers`` logits processors applied at every step of every
            batch, before the grammar (so the grammar still masks what they lift).
        engine_kwargs: passed to ``TransformersEngine`` (``model_type``, ``template_type``, ...).
    """

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        adapters: Sequence[str] | None = None,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        constrained: bool = False,
        max_free_tokens: int | None = 64,
        sam=None,
        logits_processors: Sequence | None = None,
        **engine_kwargs,
    ):
        swift = require("swift")
        self.engine = swift.TransformersEngine(
            str(model),
            adapters=[str(a) for a in adapters] if adapters else None,
            max_batch_size=batch_size,
            **engine_kwargs,
        )
        _enable_kv_cache(self.engine)
        self.batch_size = max(1, int(batch_size))
        self.max_new_tokens = max_new_tokens
        self.constrained = constrained
        self.max_free_tokens = max_free_tokens
        self.logits_processors = list(logits_processors or [])
        self._token_table = None
        self.last_processor = None  # the constrained batch's processor (its .seconds = grammar overhead)
        if sam is not None and not hasattr(sam, "refine"):
            from text4seg.inference.refine import Refiner

            sam = Refiner(sam)
        self.refiner = sam

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    def budget(self, q: Query) -> int:
        """max_new_tokens for a query: the explicit value, or the scheme's bound for ``q.grid`` and
        ``q.labels`` (:func:`~text4seg.descriptors.max_answer_tokens`: the longest well-formed answer in
        characters, after ``max_free_tokens`` (64 when None) for the sentence before ``<seg>``)."""
        if self.max_new_tokens:
            return int(self.max_new_tokens)
        free = 64 if self.max_free_tokens is None else self.max_free_tokens
        return max_answer_tokens(q.scheme, q.grid, q.labels, free)

    def _processor(self, batch: Sequence[Query], max_new: int):
        from text4seg.descriptors.constrain import DescriptorLogitsProcessor, TokenTable

        if self._token_table is None:
            self._token_table = TokenTable.from_tokenizer(self.tokenizer, self._eos_ids())
        return DescriptorLogitsProcessor(
            self._token_table,
            [(q.scheme, q.grid, q.labels) for q in batch],
            max_new_tokens=max_new,
            max_free_tokens=self.max_free_tokens,
        )

    def _eos_ids(self) -> list[int]:
        ids: list[int] = []
        gc = self.engine.generation_config
        eos = getattr(gc, "eos_token_id", None) if gc is not None else None
        for v in eos if isinstance(eos, (list, tuple)) else [eos]:
            if v is not None:
                ids.append(int(v))
        if self.tokenizer.eos_token_id is not None:
            ids.append(int(self.tokenizer.eos_token_id))
        return sorted(set(ids))

    def generate(self, batch: Sequence[Query], constrained: bool | None = None) -> list[tuple[str, int]]:
        """Answers ``[(text, num_generated_tokens), ...]`` for one batch (greedy)."""
        swift = require("swift")
        constrained = self.constrained if constrained is None else constrained
        max_new = max(self.budget(q) for q in batch)
        reqs = [
            swift.InferRequest(
                messages=[{"role": "user", "content": "<image>" + q.question}], images=[q.image]
            )
            for q in batch
        ]
        cfg = swift.RequestConfig(max_tokens=max_new, temperature=0)
        procs = list(self.logits_processors)
        if constrained:  # the grammar last: it masks whatever the other processors lifted
            procs.append(self._processor(batch, max_new))
            self.last_processor = procs[-1]
        hook = None
        if procs:

            def hook(kwargs):
                transformers = require("transformers")
                kwargs["inputs"]["logits_processor"] = transformers.LogitsProcessorList(procs)
                return kwargs

        resps = self.engine._infer(reqs, cfg, pre_infer_hook=hook)
        out = []
        for r in resps:
            if isinstance(r, Exception):
                raise r
            out.append((r.choices[0].message.content or "", int(r.usage.completion_tokens)))
        return out

    def predict(
        self,
        queries: Iterable[Query],
        out_dir: str | os.PathLike | None = None,
        overlays: bool = True,
        constrained: bool | None = None,
    ) -> Iterator[dict]:
        """Yield one result record per query (schema: module docstring), batch by batch."""
        queries = list(queries)
        for start in range(0, len(queries), self.batch_size):
            batch = queries[start : start + self.batch_size]
            answers = self.generate(batch, constrained)
            for q, (text, ntok) in zip(batch, answers):
                yield self._record(q, text, ntok, out_dir, overlays, constrained)

    def _record(self, q: Query, text: str, ntok: int, out_dir, overlays: bool, constrained) -> dict:
        h, w = _image_size(q)
        am = answer_to_masks(text, h, w, q.grid, q.scheme)
        refined = None
        if self.refiner is not None:
            refined = self.refiner.refine_label_map(q.image, am.label_map, key=q.image) > 0
        overlay = None
        if out_dir is not None and overlays:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in q.id)[-80:]
            overlay = f"overlays/{safe}_t{q.turn}.png"
            save_overlay(Path(out_dir) / overlay, q.image, am.mask, refined)
        return {
            "id": q.id,
            "turn": q.turn,
            "image": q.image,
            "query": q.question,
            "labels": q.labels,
            "answer": text,
            "scheme": q.scheme,
            "grid": list(q.grid),
            "width": w,
            "height": h,
            "parse_valid": am.parse_valid,
            "repairs": [list(r) for r in am.decoded.repairs],
            "pred_labels": am.names[1:],
            "coarse": mask_to_rle(am.mask),
            "refined": None if refined is None else mask_to_rle(refined),
            "num_tokens": ntok,
            "constrained": bool(self.constrained if constrained is None else constrained),
            "overlay": overlay,
        }


def predict_queries(
    predictor: Predictor,
    queries: Sequence[Query],
    out_dir: str | os.PathLike,
    *,
    overlays: bool = True,
    progress: bool = True,
) -> Path:
    """Run ``queries`` not yet in ``out_dir/results.jsonl``, appending (and flushing) one line each."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = out / RESULTS_NAME
    done = finished_keys(results)
    todo = [q for q in queries if q.key not in done]
    tqdm = require("tqdm").tqdm
    t0 = time.perf_counter()
    with (
        open(results, "a", encoding="utf-8") as fh,
        tqdm(total=len(todo), unit="sample", disable=not progress, desc="predict") as bar,
    ):
        for rec in predictor.predict(todo, out, overlays):
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()
            bar.update(1)
    if progress and todo:
        dt = time.perf_counter() - t0
        print(
            f"predict: {len(todo)} new, {len(done)} already done, {len(todo) / dt:.2f} samples/s -> {results}"
        )
    return results


def predict_jsonl(
    model: str | os.PathLike,
    jsonl: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    adapters: Sequence[str] | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    constrained: bool = False,
    max_free_tokens: int | None = 64,
    sam=None,
    limit: int | None = None,
    shard: str | tuple[int, int] | None = None,
    root: str | os.PathLike | None = None,
    overlays: bool = True,
    progress: bool = True,
    **engine_kwargs,
) -> Path:
    """Predict every query of a built JSONL into ``out_dir/results.jsonl`` (resumable); returns its path.

    ``engine_kwargs`` go to ``TransformersEngine`` (e.g. ``model_type="llava1_5_hf"``).
    """
    queries = load_queries(jsonl, root, limit, shard)
    predictor = Predictor(
        model,
        adapters=adapters,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        constrained=constrained,
        max_free_tokens=max_free_tokens,
        sam=sam,
        **engine_kwargs,
    )
    return predict_queries(predictor, queries, out_dir, overlays=overlays, progress=progress)


def repair_report(records: Iterable[dict]) -> dict:
    """``{"answers", "parse_valid", "answers_repaired", <repair kind>: answers with it, ...}``."""
    out: dict = {"answers": 0, "parse_valid": 0, "answers_repaired": 0}
    for rec in records:
        out["answers"] += 1
        out["parse_valid"] += bool(rec.get("parse_valid"))
        kinds = {r[0] for r in rec.get("repairs", [])}
        out["answers_repaired"] += bool(kinds)
        for k in sorted(kinds):
            out[k] = out.get(k, 0) + 1
    return out
