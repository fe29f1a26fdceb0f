"""A predict run from its :class:`~text4seg.inference.options.PredictOptions`: the one place a predictor
is assembled, and the one function ``text4seg predict`` calls.

* :func:`make_predictor`: the predictor of the options: a :class:`~text4seg.inference.predict.Predictor`
  (``model``: ms-swift in-process) or an :class:`~text4seg.inference.api_client.ApiPredictor` (``api``:
  a server), with the SAM refiner of ``sam_checkpoint`` (:func:`text4seg.inference.refine.load_refiner`).
  Used by ``predict`` (images, JSONL, video), ``app``, the demo and :func:`predict_to`.
* :func:`run_predict`: validate (the checkpoint's ``text4seg.json`` gives the defaults and the label bias,
  :meth:`~text4seg.inference.options.PredictOptions.apply_trained`; a ``--jsonl`` row trained otherwise is
  an error unless ``force_options``), check the data and the output folder and record ``OUT/run.json``
  (:mod:`text4seg.inference.prepare`), load, predict into ``OUT/results.jsonl`` (resumable), or for a
  ``video`` write its masks and ``OUT/video_results.jsonl`` (:mod:`text4seg.inference.video`).
* :func:`predict_to`, :func:`predict_jsonl`, :func:`predict_image`: the same from Python in one call
  (``predict_jsonl("CKPT", "built/val.jsonl", "runs/val", batch_size=8)`` returns the results path).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from text4seg.data.queries import Query, load_queries
from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME
from text4seg.inference.options import PredictOptions


@dataclass
class PredictSummary:
    """What a run did: the ``results`` file, the ``skipped`` queries (``skip_bad``), the lenient decoder's
    ``repairs`` report (None for a video) and the answers cut at their bound (``cut_answers``, ``api``)."""

    results: Path
    skipped: list[str] = field(default_factory=list)
    repairs: dict | None = None
    cut_answers: int = 0


def make_predictor(options: PredictOptions, *, sam=None, logits_processors: Sequence | None = None):
    """The predictor of ``options`` (validated first; module docstring). ``sam``: a ``Refiner`` or a
    ``segment_anything`` ``Sam`` model to use instead of ``options.sam_checkpoint``;
    ``logits_processors``: extra ``transformers`` processors of an in-process model (Python only)."""
    options.validate()
    if sam is not None and options.sam_checkpoint is not None:
        raise ValueError("give a SAM model or options.sam_checkpoint, not both")
    return _assemble(options, sam, logits_processors)


def _assemble(options: PredictOptions, sam=None, logits_processors: Sequence | None = None):
    from text4seg.inference.refine import load_refiner

    refiner = load_refiner(options.sam_checkpoint if sam is None else sam, options.sam_type)
    if options.api is not None:
        if logits_processors:
            raise ValueError("logits_processors apply to an in-process model (--model), not to --api")
        from text4seg.inference.api_client import ApiPredictor

        return ApiPredictor(
            options.api,
            options.served_model,
            concurrency=options.concurrency,
            timeout=options.timeout,
            retries=options.retries,
            max_new_tokens=options.max_new_tokens,
            constrained=options.constrained,
            sam=refiner,
            server=options.server,
            label_bias=options.label_bias,
            tokenizer=options.bias_tokenizer,
        )
    from text4seg.inference.predict import Predictor

    engine = dict(options.engine_kwargs)
    if options.model_type:
        engine["model_type"] = options.model_type
    if options.template:
        engine["template_type"] = options.template
    return Predictor(
        options.model,
        adapters=options.adapters,
        batch_size=1 if options.video is not None else options.batch_size,  # a video is one request
        max_new_tokens=options.max_new_tokens,
        constrained=options.constrained,
        constrained_engine=options.constrained_engine,
        max_free=options.max_free,
        sam=refiner,
        logits_processors=logits_processors,
        label_bias=options.label_bias,
        trust_remote_code=options.trust_remote_code,
        **engine,
    )


def run_predict(options: PredictOptions, log: Callable[[str], None] = print) -> PredictSummary:
    """One ``text4seg predict`` run (module docstring); everything that can fail on the options, the rows,
    the images or the output folder fails before the model loads. ``log``: where a video run says how it
    filled its frames."""
    if options.out is None:
        raise ValueError("--out is needed")
    options.validate()
    if options.video is not None:
        return _run_video(options, log)
    from text4seg.inference.predict import predict_queries, results_report
    from text4seg.inference.prepare import prepare_queries

    queries, skipped = prepare_queries(options)
    if options.jsonl is not None:
        check_rows_trained(queries, options)
    predictor = _assemble(options)  # (a label bias: in-process only; validate refuses one with --api)
    results = predict_queries(
        predictor, queries, options.out, overlays=options.overlays, progress=options.progress
    )
    cut = int(getattr(predictor, "cut_answers", 0))
    return PredictSummary(results, skipped, results_report(results), cut)


def check_rows_trained(queries, options: PredictOptions) -> None:
    """``ValueError`` for the first ``--jsonl`` query whose grid or scheme disagrees with what the
    checkpoint was trained with (``text4seg.json``), unless ``options.force_options``."""
    from text4seg.checkpoints.trained import resolve

    trained = options.trained
    if trained is None or options.force_options:
        return
    for q in queries:
        for name, value, want in (
            ("grid", tuple(q.grid), trained.grid),
            ("scheme", q.scheme, trained.scheme),
        ):
            resolve(f"{options.jsonl} row {q.id!r}: text4seg.{name}", value, want, where=trained.where())


def _run_video(options: PredictOptions, log: Callable[[str], None]) -> PredictSummary:
    from text4seg.inference.video import VIDEO_RESULTS, predict_video

    predictor = _assemble(options)
    predict_video(
        predictor,
        options.video,
        options.query,
        options.out,
        expression_id=options.expression_id,
        n_frames=options.frames,
        sampling=options.sampling,
        grid=options.grid,
        scheme=options.scheme,
        form=options.form,
        max_new_tokens=options.max_new_tokens,
        sam2_checkpoint=options.sam2_checkpoint,
        sam2_config=options.sam2_config,
        log=log,
    )
    return PredictSummary(Path(options.out) / VIDEO_RESULTS)


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
    "label_bias",
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
    ``label_bias``, ``trust_remote_code``); any other keyword goes to ``TransformersEngine``. ``sam``:
    None, a SAM checkpoint path (of ``sam_type``), a ``Refiner`` or a ``Sam`` model;
    ``logits_processors``: extra ``transformers`` processors. ``client``: an object with
    :meth:`~text4seg.inference.predict.Predictor.predict`'s signature used instead of loading a model
    (:class:`text4seg.inference.api_client.ApiPredictor`: the answers come from a server); it carries its
    own options, so ``model``, ``sam`` and ``options`` are then an error.
    """
    from text4seg.inference.predict import predict_queries

    if client is not None:
        given = sorted(options) + [k for k, v in (("model", model), ("sam", sam)) if v is not None]
        given += ["logits_processors"] if logits_processors else []
        if given:
            raise ValueError(
                f"predict_to(client=...): {', '.join(given)} apply to an in-process model, not to a client "
                "(give the client its options, e.g. ApiPredictor(url, sam=..., constrained=...))"
            )
        return predict_queries(client, queries, out_dir, overlays=overlays, progress=progress)
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
