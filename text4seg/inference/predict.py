"""Predict: run a trained model on images and queries, turn its answers into masks, refine them with SAM.

Python API
----------
``predict_jsonl(model, jsonl, out_dir, ...) -> Path`` runs every query of a built JSONL (one query per
user turn of a row; the row's first image) and returns the results JSONL path; ``predict_image`` does the
same for one image and question; ``Predictor`` is the reusable engine
(``Predictor(model).predict([Query, ...])`` yields result records). Queries come from
:mod:`text4seg.inference.queries`; the result record, its schema and the answer-to-mask step
(``answer_to_masks``) live in :mod:`text4seg.inference.results` (shared with ``text4seg decode``).

Generation goes through ms-swift's ``TransformersEngine`` in batches (greedy). Constrained decoding
(:mod:`~text4seg.descriptors.constrain`) reaches ``model.generate`` through the engine's
``pre_infer_hook`` (its ``logits_processor`` generate argument);
the engine's template still builds the inputs.

Results JSONL: ``OUT/results.jsonl``, one record per query (schema: :mod:`text4seg.inference.results`),
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
from text4seg.data.records import read_jsonl
from text4seg.descriptors import DEFAULT_SCHEME, max_answer_tokens
from text4seg.inference.queries import Query, load_queries
from text4seg.inference.results import (
    RESULTS_NAME,
    answer_to_masks,
    finished_keys,
    make_record,
    repair_report,
    save_overlay,
)


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
        constrained = bool(self.constrained if constrained is None else constrained)
        return query_record(q, text, ntok, out_dir, overlays, constrained, self.refiner)


def query_record(
    q: Query, text: str, ntok: int | None, out_dir, overlays: bool, constrained: bool | None, refiner=None
) -> dict:
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


def _load_sam(sam, sam_type: str):
    """``sam`` as given, or the SAM model of a checkpoint path (``.pth``) wrapped in a Refiner."""
    if isinstance(sam, (str, os.PathLike)):
        from text4seg.inference.refine import Refiner, load_sam

        if not os.path.isfile(sam):
            raise OSError(f"no such SAM checkpoint: {sam}")
        return Refiner(load_sam(sam, sam_type))
    return sam


def predict_to(
    model: str | os.PathLike,
    queries: Sequence[Query],
    out_dir: str | os.PathLike,
    *,
    adapters: Sequence[str] | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    constrained: bool = False,
    max_free_tokens: int | None = 64,
    sam=None,
    sam_type: str = "vit_h",
    logits_processors: Sequence | None = None,
    overlays: bool = True,
    progress: bool = True,
    client=None,
    **engine_kwargs,
) -> Path:
    """Load a :class:`Predictor` and run ``queries`` into ``out_dir/results.jsonl`` (resumable).

    ``sam``: None, a SAM checkpoint path (of ``sam_type``), a ``Refiner`` or a ``Sam`` model;
    ``logits_processors`` and ``engine_kwargs`` go to :class:`Predictor` (e.g. ``model_type="llava1_5_hf"``).
    ``client``: an object with :meth:`Predictor.predict`'s signature used instead of loading ``model``
    (:class:`text4seg.inference.api_client.ApiPredictor`: the answers come from a server).
    """
    if client is not None:
        return predict_queries(client, queries, out_dir, overlays=overlays, progress=progress)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    predictor = Predictor(
        model,
        adapters=adapters,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        constrained=constrained,
        max_free_tokens=max_free_tokens,
        sam=_load_sam(sam, sam_type),
        logits_processors=logits_processors,
        **engine_kwargs,
    )
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
    grid: tuple[int, int] = (16, 16),
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
    """:func:`~text4seg.inference.results.repair_report` of a results JSONL."""
    return repair_report(read_jsonl(results))
