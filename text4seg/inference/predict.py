"""Predict: run a trained model on images and queries, turn its answers into masks, refine them with SAM.

Python API
----------
``predict_jsonl(model, jsonl, out_dir, ...) -> Path`` runs every query of a built JSONL (one query per
user turn of a row; the row's first image) and returns the results JSONL path; ``predict_image`` does the
same for one image and question; ``Predictor`` is the reusable engine
(``Predictor(model).predict([Query, ...])`` yields result records). Queries come from
:mod:`text4seg.data.queries`; the result record, its schema and the answer-to-mask step
(``answer_to_masks``) live in :mod:`text4seg.data.results` (shared with ``text4seg decode``).

Generation goes through ms-swift's ``TransformersEngine`` in batches (greedy; every ms-swift call is in
:mod:`text4seg.inference.engine`). Constrained decoding reaches ``model.generate`` through the engine's
``pre_infer_hook`` (its ``logits_processor`` generate argument); the engine's template still builds the
inputs. The grammar engine (xgrammar or the own one), the budget
(:func:`~text4seg.descriptors.max_answer_tokens`, within which every constrained answer parses strictly)
and its cap by the model's context are :mod:`text4seg.inference.constrained`'s. A whole run (options,
checks, ``OUT/run.json``, the predictor of a model or a server) is :mod:`text4seg.inference.run`'s.

Results JSONL: ``OUT/results.jsonl``, one record per query (schema: :mod:`text4seg.data.results`),
appended and flushed per sample; overlays in ``OUT/overlays/``. A re-run with the same ``out_dir`` skips
the (id, turn) keys already in ``results.jsonl`` (resume after a crash); a partial last line is dropped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from text4seg._lazy import require
from text4seg.checkpoints.trust import check_trusted
from text4seg.data.overlay import save_overlay
from text4seg.data.queries import Query, load_queries
from text4seg.data.results import (
    RESULTS_NAME,
    ResultRecord,
    answer_to_masks,
    finished_keys,
    load_records,
    make_record,
    repair_report,
)
from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME, MAX_FREE
from text4seg.descriptors.multi import max_multi_tokens
from text4seg.inference.constrained import ConstrainedDecoder, context_room, logits_width
from text4seg.inference.engine import infer, load_engine
from text4seg.inference.outdir import check_out_dir


def _image_size(q: Query) -> tuple[int, int]:
    if q.width > 0 and q.height > 0:
        return q.height, q.width
    from text4seg.data.images import image_size

    w, h = image_size(q.image)
    return h, w


class Predictor:
    """A loaded model (ms-swift ``TransformersEngine``) plus optional SAM refiner.

    Args:
        model: model folder (or hub id, if online); ``adapters``: LoRA folders.
        batch_size: queries per ``generate`` call.
        max_new_tokens: generation budget (default: the query's answer bound, see :meth:`budget`).
        constrained: grammar-constrained decoding (every answer parses strictly within the budget).
        constrained_engine: ``"auto"`` (xgrammar when importable, else the own engine, said once),
            ``"xgrammar"`` or ``"own"`` (:mod:`text4seg.inference.constrained`).
        max_free: the bound on the text before ``<seg>`` under constrained decoding (characters with
            xgrammar, tokens with the own engine; part of the budget).
        sam: None, a :class:`text4seg.inference.refine.Refiner` or a ``segment_anything`` ``Sam`` model.
        logits_processors: extra ``transformers`` logits processors applied at every step of every
            batch, before the grammar (so the grammar still masks what they lift).
        trust_remote_code: load a model folder that carries code (``auto_map``, ``*.py``); refused
            otherwise (:mod:`text4seg.checkpoints.trust`: ms-swift always trusts it).
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
        constrained_engine: str = "auto",
        max_free: int = MAX_FREE,
        sam=None,
        logits_processors: Sequence | None = None,
        trust_remote_code: bool = False,
        **engine_kwargs,
    ):
        check_trusted([model, *(adapters or [])], trust_remote_code)  # ms-swift would run their code
        self.decoder = ConstrainedDecoder(constrained_engine, max_free)  # checks the engine name
        self.engine = load_engine(model, adapters or (), batch_size, **engine_kwargs)
        self.batch_size = max(1, int(batch_size))
        self.max_new_tokens = max_new_tokens
        self.constrained = constrained
        self.logits_processors = list(logits_processors or [])
        self.last_processor = None  # the constrained batch's processor (its .seconds = grammar overhead)
        if sam is not None:
            from text4seg.inference.refine import load_refiner

            sam = load_refiner(sam)
        self.refiner = sam

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    def budget(self, q: Query) -> int:
        """max_new_tokens for a query: the explicit value, or the answer bound of ``q.scheme``, ``q.grid``
        and ``q.labels`` (:meth:`~text4seg.inference.constrained.ConstrainedDecoder.bound`: every
        constrained answer parses strictly within it). :meth:`generate` caps it by the model's context."""
        if self.max_new_tokens:
            return int(self.max_new_tokens)
        if q.task == "multi":  # one block per label (text4seg.descriptors.multi)
            return max_multi_tokens(q.scheme, q.grid, q.labels, self.decoder.max_free)
        return self.decoder.bound(q)

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
        constrained = self.constrained if constrained is None else constrained
        max_new = max(self.budget(q) for q in batch)
        if constrained and any(q.task == "multi" for q in batch):
            raise ValueError("constrained decoding writes one <seg> block; task 'multi' needs one per label")

        def hook(kwargs):
            gen = kwargs["generation_config"]
            room = context_room(self.engine, kwargs["inputs"])
            if room is not None:  # ms-swift caps max_tokens the same way; the processors must know it
                gen.max_new_tokens = max(1, min(int(gen.max_new_tokens), room[0] - room[1]))
            procs = list(self.logits_processors)
            if constrained:  # the grammar last: it masks whatever the other processors lifted
                max_new = int(gen.max_new_tokens)
                self.decoder.check_room(batch, max_new, room)
                width = logits_width(self.engine.model, self.tokenizer)
                procs.append(self.decoder.processor(batch, max_new, self.tokenizer, self._eos_ids(), width))
                self.last_processor = procs[-1]
            if procs:
                transformers = require("transformers")
                kwargs["inputs"]["logits_processor"] = transformers.LogitsProcessorList(procs)
            return kwargs

        return infer(self.engine, [("<image>" + q.question, [q.image]) for q in batch], max_new, hook)

    def predict(
        self,
        queries: Iterable[Query],
        out_dir: str | os.PathLike | None = None,
        overlays: bool = True,
        constrained: bool | None = None,
    ) -> Iterator[ResultRecord]:
        """Yield one result record per query (schema: module docstring), batch by batch."""
        queries = list(queries)
        for start in range(0, len(queries), self.batch_size):
            batch = queries[start : start + self.batch_size]
            answers = self.generate(batch, constrained)
            for q, (text, ntok) in zip(batch, answers):
                yield self._record(q, text, ntok, out_dir, overlays, constrained)

    def _record(self, q: Query, text: str, ntok: int, out_dir, overlays: bool, constrained) -> ResultRecord:
        constrained = bool(self.constrained if constrained is None else constrained)
        return query_record(q, text, ntok, out_dir, overlays, constrained, self.refiner)


# out_dir -> {(id, turn): ground truth} while predict_queries runs: query_record (also called by the API
# client's worker threads) outlines a query's ground truth on its overlay
_TRUTH: dict[str, dict[tuple[str, int], dict]] = {}


def overlay_truth(
    jsonl: str | os.PathLike, queries: Sequence[Query], root: str | os.PathLike | None = None
) -> dict[tuple[str, int], dict]:
    """``{(id, turn): truth}`` of the ``queries`` whose rows of ``jsonl`` carry ground truth (``--with-gt``
    rows: ``text4seg.gt.masks[turn]`` as COCO RLE -> ``{"rle": ...}``, or the label map of a semantic
    row -> ``{"label_map": path, "classes": [...], "ignore": [...]}``). Lazy: the overlay decodes it."""
    from text4seg.data.records import read_jsonl

    wanted = {q.key for q in queries}
    out: dict[tuple[str, int], dict] = {}
    for k, row in enumerate(read_jsonl(jsonl)):
        meta = row.get("text4seg") if isinstance(row, dict) else None
        gt = meta.get("gt") if isinstance(meta, dict) else None
        if not isinstance(gt, dict):
            continue
        rid = str(meta.get("id", k))
        masks = gt.get("masks") if isinstance(gt.get("masks"), list) else []
        label_map = gt.get("label_map")
        turns = max(len(masks), 1 if label_map else 0)
        for t in range(turns):
            if (rid, t) not in wanted:
                continue
            if t < len(masks) and isinstance(masks[t], dict) and masks[t]:
                out[(rid, t)] = {"rle": masks[t]}
            elif isinstance(label_map, str) and label_map:
                path = Path(label_map) if root is None else Path(root) / label_map
                out[(rid, t)] = {
                    "label_map": str(path),
                    "classes": [str(c) for c in gt.get("classes") or []],
                    "ignore": [v for v in gt.get("ignore") or [] if isinstance(v, int)],
                }
    return out


def truth_mask(truth: dict | None, q: Query, h: int, w: int):
    """The ``(h, w)`` bool ground truth of ``q`` for its overlay (an all-false one: a no-target query), or
    None when there is none or it cannot be read or does not fit the image (an overlay is no place to
    fail a run: ``text4seg evaluate`` checks the ground truth)."""
    if not truth:
        return None
    import numpy as np

    try:
        if "rle" in truth:
            from text4seg.data.rle import rle_to_mask

            mask = rle_to_mask(truth["rle"], where=f"{q.id} gt")
        else:
            from text4seg.data.images import open_image

            with open_image(truth["label_map"]) as im:
                values = np.asarray(im)
            classes, ignore = truth["classes"], set(truth["ignore"])
            wanted = set(q.labels) - {"others"}
            keep = [v for v, c in enumerate(classes) if c in wanted and v not in ignore]
            mask = np.isin(values, keep) if values.ndim == 2 else None
    except (ValueError, OSError, KeyError, TypeError):
        return None
    if mask is None or mask.shape != (h, w):
        return None
    return mask


def query_record(
    q: Query, text: str, ntok: int | None, out_dir, overlays: bool, constrained: bool | None, refiner=None
) -> ResultRecord:
    """The result record of one answer to ``q``: decode, SAM-refine (``refiner``: a ``Refiner`` or None),
    write the overlay under ``out_dir`` (when ``overlays``). Shared by :class:`Predictor` and
    :class:`text4seg.inference.api_client.ApiPredictor`."""
    h, w = _image_size(q)
    am = answer_to_masks(text, h, w, q.grid, q.scheme)
    refined = None
    if refiner is not None:
        refined = refiner.refine_label_map(q.image, am.label_map, key=q.image)
    overlay = None
    if out_dir is not None and overlays:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in q.id)[-80:]
        overlay = f"overlays/{safe}_t{q.turn}.png"
        save_overlay(
            Path(out_dir) / overlay,
            q.image,
            am.mask,
            refined,
            label_map=am.label_map,
            names=am.names,
            query=q.question,
            gt=truth_mask(_TRUTH.get(str(out_dir), {}).get(q.key), q, h, w),
            grid=q.grid,
        )
    return make_record(
        id=q.id,
        turn=q.turn,
        image=q.image,
        query=q.question,
        labels=q.labels,
        answer=text,
        scheme=q.scheme,
        grid=q.grid,
        masks=am,
        refined_map=refined,
        num_tokens=ntok,
        constrained=constrained,
        overlay=overlay,
    )


def predict_queries(
    predictor: Predictor,
    queries: Sequence[Query],
    out_dir: str | os.PathLike,
    *,
    overlays: bool = True,
    progress: bool = True,
    truth: dict[tuple[str, int], dict] | None = None,
) -> Path:
    """Run ``queries`` not yet in ``out_dir/results.jsonl``, appending (and flushing) one line each.
    ``truth``: :func:`overlay_truth`, outlined on the overlays (a no-target query: a dashed frame)."""
    out = check_out_dir(out_dir, files=[RESULTS_NAME], folders=["overlays"])  # no write through a link
    results = out / RESULTS_NAME
    done = finished_keys(results)
    todo = [q for q in queries if q.key not in done]
    tqdm = require("tqdm").tqdm
    t0 = time.perf_counter()
    if truth:
        _TRUTH[str(out)] = truth
    try:
        with (
            open(results, "a", encoding="utf-8") as fh,
            tqdm(total=len(todo), unit="sample", disable=not progress, desc="predict") as bar,
        ):
            for rec in predictor.predict(todo, out, overlays):
                fh.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
                fh.flush()
                bar.update(1)
    finally:
        _TRUTH.pop(str(out), None)
    if progress and todo:
        dt = time.perf_counter() - t0
        print(
            f"predict: {len(todo)} new, {len(done)} already done, {len(todo) / dt:.2f} samples/s -> {results}"
        )
    return results


# the keyword arguments of predict_to that are PredictOptions fields (the rest go to TransformersEngine)
MODEL_OPTIONS = (
    "adapters",
    "model_type",
    "template",
    "trust_remote_code",
    "batch_size",
    "max_new_tokens",
    "constrained",
    "constrained_engine",
    "max_free",
    "sam_type",
)


def predict_to(
    model: str | os.PathLike | None,
    queries: Sequence[Query],
    out_dir: str | os.PathLike,
    *,
    sam=None,
    logits_processors: Sequence | None = None,
    overlays: bool = True,
    progress: bool = True,
    client=None,
    **options,
) -> Path:
    """Load ``model`` and run ``queries`` into ``out_dir/results.jsonl`` (resumable); returns its path.

    ``options``: :class:`~text4seg.inference.options.PredictOptions` fields of the model and decoding
    (``adapters``, ``model_type``, ``template`` (or ``template_type``), ``batch_size``,
    ``max_new_tokens``, ``constrained``, ``constrained_engine``, ``max_free``, ``sam_type``,
    ``trust_remote_code``); any other keyword goes to ``TransformersEngine``. ``sam``: None, a SAM
    checkpoint path (of ``sam_type``), a ``Refiner`` or a ``Sam`` model; ``logits_processors``: extra
    ``transformers`` processors. ``client``: an object with :meth:`Predictor.predict`'s signature used
    instead of loading a model (:class:`text4seg.inference.api_client.ApiPredictor`: the answers come
    from a server); it carries its own options, so ``model``, ``sam`` and ``options`` are then an error.
    """
    if client is not None:
        given = sorted(options) + [k for k, v in (("model", model), ("sam", sam)) if v is not None]
        given += ["logits_processors"] if logits_processors else []
        if given:
            raise ValueError(
                f"predict_to(client=...): {', '.join(given)} apply to an in-process model, not to a client "
                "(give the client its options, e.g. ApiPredictor(url, sam=..., constrained=...))"
            )
        return predict_queries(client, queries, out_dir, overlays=overlays, progress=progress)
    from text4seg.inference.options import PredictOptions
    from text4seg.inference.run import make_predictor

    fields = {k: options.pop(k) for k in MODEL_OPTIONS if k in options}
    if "template_type" in options:
        fields["template"] = options.pop("template_type")
    if fields.get("adapters") is not None:
        fields["adapters"] = [str(x) for x in fields["adapters"]]
    else:
        fields.pop("adapters", None)
    path = isinstance(sam, (str, os.PathLike))
    run = PredictOptions(model=model, sam_checkpoint=sam if path else None, engine_kwargs=options, **fields)
    predictor = make_predictor(run, sam=None if path else sam, logits_processors=logits_processors)
    return predict_queries(predictor, queries, out_dir, overlays=overlays, progress=progress)


def predict_jsonl(
    model: str | os.PathLike,
    jsonl: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    limit: int | None = None,
    shard: str | tuple[int, int] | None = None,
    root: str | os.PathLike | None = None,
    **options,
) -> Path:
    """Predict every query of a built JSONL into ``out_dir/results.jsonl`` (resumable); returns its path.

    ``root``: folder of relative image paths; ``shard`` ``i/N`` keeps rows i, i+N, ...; ``limit`` caps
    the queries; ``options``: those of :func:`predict_to` (``logits_processors``, ``sam``, ...).
    """
    if not os.path.isfile(jsonl):
        raise OSError(f"no such file: {jsonl}")
    return predict_to(model, load_queries(jsonl, root, limit, shard), out_dir, **options)


def predict_image(
    model: str | os.PathLike,
    image: str | os.PathLike,
    question: str,
    out_dir: str | os.PathLike,
    *,
    labels: Sequence[str] = (),
    grid: tuple[int, int] = DEFAULT_GRID,
    scheme: str = DEFAULT_SCHEME,
    **options,
) -> Path:
    """Predict one question on one image (id = the file's stem) into ``out_dir/results.jsonl``.

    ``labels``: the target labels (constrained decoding needs them); ``grid`` ``(rows, cols)`` and
    ``scheme`` of the answer; ``options``: those of :func:`predict_to`.
    """
    if options.get("constrained") and not labels:
        raise ValueError("constrained decoding on one image needs the target label(s): --label TEXT")
    if not os.path.isfile(image):
        raise OSError(f"no such image: {image}")
    q = Query(
        id=Path(image).stem,
        image=str(Path(image).resolve()),
        question=question,
        labels=list(labels),
        grid=(int(grid[0]), int(grid[1])),
        scheme=scheme,
    )
    return predict_to(model, [q], out_dir, **options)


def results_report(results: str | os.PathLike) -> dict:
    """:func:`~text4seg.data.results.repair_report` of a results JSONL."""
    return repair_report(load_records(results, allow_empty=True))


class ForegroundBias:
    """A ``LogitsProcessor`` adding ``bias`` to the logits of every target-label cell token.

    A decoding knob (the demo tunes it on its validation split and records it in the checkpoint's
    ``text4seg.json``, which ``predict`` applies): a model trained briefly knows *where* the object is
    but is shy to *start* a run after a row of ``others``; a constant bias on the label tokens moves that
    threshold. ``scores``: float tensor (batch, vocab), changed in place and returned.
    """

    def __init__(self, token_ids: Sequence[int], bias: float):
        self.token_ids, self.bias = list(token_ids), float(bias)

    def __call__(self, input_ids, scores):
        if self.bias and self.token_ids:
            scores[:, self.token_ids] += self.bias
        return scores


def label_token_ids(tokenizer, labels: Sequence[str]) -> list[int]:
    """Ids of the single-token cells of ``labels`` (``L``, ``"| L"``, ``"\\n L"``) that the vocabulary has."""
    vocab = tokenizer.get_vocab()
    return sorted({vocab[t] for lab in labels for t in (lab, "| " + lab, "\n " + lab) if t in vocab})


def apply_label_bias(
    predictor: Predictor, labels: Sequence[str], bias: float | None
) -> ForegroundBias | None:
    """Add a :class:`ForegroundBias` of ``bias`` on the tokens of ``labels`` to an in-process predictor
    (None and nothing added for no bias); returns it (remove it from ``predictor.logits_processors`` to
    undo)."""
    if not bias:
        return None
    proc = ForegroundBias(label_token_ids(predictor.tokenizer, sorted(set(labels))), bias)
    predictor.logits_processors.append(proc)
    return proc
