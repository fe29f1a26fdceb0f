"""Predict: run a trained model on queries (image + question) and turn its answers into result records.

Python API
----------
``Predictor(model).predict([Query, ...])`` yields result records (the reusable in-process engine);
:func:`predict_queries` runs queries into ``OUT/results.jsonl``. Whole runs from options or one call
(``predict_to``, ``predict_jsonl``, ``predict_image``, ``run_predict``) are
:mod:`text4seg.inference.run`'s. Queries come from :mod:`text4seg.data.queries`; one answer becomes a
record (decode, SAM, overlay) in :mod:`text4seg.inference.answer`; the record's schema is
:mod:`text4seg.data.results`'.

Generation goes through ms-swift's ``TransformersEngine`` in batches (greedy; every ms-swift call is in
:mod:`text4seg.inference.engine`). Logits processors reach ``model.generate`` through the engine's
``pre_infer_hook`` (its ``logits_processor`` generate argument), in this order: the label bias
(:mod:`text4seg.inference.bias`), extra processors, the grammar of constrained decoding last (it masks
whatever the others lifted). The grammar engine (xgrammar or the own one), the budget
(:func:`~text4seg.descriptors.max_answer_tokens`, within which every constrained answer parses strictly)
and its cap by the model's context are :mod:`text4seg.inference.constrained`'s.

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
from text4seg.data.queries import Query
from text4seg.data.results import RESULTS_NAME, ResultRecord, finished_keys, load_records, repair_report
from text4seg.descriptors import MAX_FREE
from text4seg.descriptors.multi import max_multi_tokens
from text4seg.inference.answer import query_record
from text4seg.inference.bias import LabelBias, LabelTokens
from text4seg.inference.constrained import ConstrainedDecoder, context_room, logits_width
from text4seg.inference.engine import infer, load_engine
from text4seg.inference.outdir import check_out_dir


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
        label_bias: a logit bias on each query's own label tokens (:mod:`text4seg.inference.bias`;
            None or 0: none); :meth:`generate` takes another per call.
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
        label_bias: float | None = None,
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
        self.label_bias = label_bias
        self._label_tokens = LabelTokens(self.engine.tokenizer)
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

    def generate(
        self, batch: Sequence[Query], constrained: bool | None = None, label_bias: float | None = None
    ) -> list[tuple[str, int]]:
        """Answers ``[(text, num_generated_tokens), ...]`` for one batch (greedy). ``constrained`` and
        ``label_bias``: this call's, instead of the predictor's (None: the predictor's)."""
        constrained = self.constrained if constrained is None else constrained
        bias = self.label_bias if label_bias is None else label_bias
        max_new = max(self.budget(q) for q in batch)
        if constrained and any(q.task == "multi" for q in batch):
            raise ValueError("constrained decoding writes one <seg> block; task 'multi' needs one per label")

        def hook(kwargs):
            gen = kwargs["generation_config"]
            room = context_room(self.engine, kwargs["inputs"])
            if room is not None:  # ms-swift caps max_tokens the same way; the processors must know it
                gen.max_new_tokens = max(1, min(int(gen.max_new_tokens), room[0] - room[1]))
            procs = list(self.logits_processors)
            if bias:  # first: the other processors and the grammar see the biased logits
                procs.insert(0, LabelBias([self._label_tokens(q.labels) for q in batch], bias))
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


def predict_queries(
    predictor: Predictor,
    queries: Sequence[Query],
    out_dir: str | os.PathLike,
    *,
    overlays: bool = True,
    progress: bool = True,
) -> Path:
    """Run ``queries`` not yet in ``out_dir/results.jsonl``, appending (and flushing) one line each. A
    query's ground truth (:attr:`~text4seg.data.queries.Query.truth`) is outlined on its overlay (a
    no-target query: a dashed frame)."""
    out = check_out_dir(out_dir, files=[RESULTS_NAME], folders=["overlays"])  # no write through a link
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
            fh.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
            fh.flush()
            bar.update(1)
    if progress and todo:
        dt = time.perf_counter() - t0
        print(
            f"predict: {len(todo)} new, {len(done)} already done, {len(todo) / dt:.2f} samples/s -> {results}"
        )
    return results


def results_report(results: str | os.PathLike) -> dict:
    """:func:`~text4seg.data.results.repair_report` of a results JSONL."""
    return repair_report(load_records(results, allow_empty=True))
