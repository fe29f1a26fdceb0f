"""``text4seg app``: a Gradio page to upload an image, type expressions and see the masks.

Scheme, grid, question template and the label bias of each decoding mode come from what the
checkpoint was trained with (its ``text4seg.json``, :mod:`text4seg.checkpoints.trained`); a
``--grid``/``--scheme`` that disagrees is a one-line error unless ``--force-options``. Everything that
can be checked (options, trust, port, SAM file) is checked before the model loads."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from text4seg.commands._args import add_grid, add_scheme, add_trust
from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME

HELP = "serve a web page (127.0.0.1 by default): upload an image, type expressions, get overlays and masks"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model folder (ms-swift loadable)")
    p.add_argument("--adapters", nargs="*", default=None, help="LoRA adapter folders")
    p.add_argument("--model-type", default=None, help="ms-swift model_type (e.g. qwen2_5_vl, llava1_5_hf)")
    p.add_argument("--template", default=None, help="ms-swift template type (default: the model type's)")
    p.add_argument("--sam-checkpoint", type=Path, default=None, help="SAM weights (.pth): enables refinement")
    p.add_argument("--sam-type", default="vit_h", choices=["vit_h", "vit_l", "vit_b"], help="SAM variant")
    p.add_argument("--max-new-tokens", type=int, default=None)
    add_grid(p, default=None, extra=" of the answers; default: the checkpoint's text4seg.json, else 16")
    add_scheme(p, default=None, extra=f"; default: the checkpoint's text4seg.json, else {DEFAULT_SCHEME}")
    p.add_argument(
        "--question",
        default=None,
        help="question template with one literal {target} (default: the checkpoint's, else the toolkit's)",
    )
    p.add_argument(
        "--force-options", action="store_true", help="use --grid/--scheme even where the checkpoint disagrees"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=7860, help="port (0: any free one; default 7860)")
    add_trust(p)
    p.add_argument(
        "--verbose", action="store_true", help="show the libraries' logs and warnings (default: the URL only)"
    )


def app_options(args: argparse.Namespace, trained=None):
    """The :class:`~text4seg.inference.options.PredictOptions` of an ``app`` command line (its model,
    SAM, budget, grid and scheme; the page asks per request for constrained decoding and refinement).
    ``trained``: the checkpoint's :class:`~text4seg.checkpoints.trained.TrainedWith` (defaults)."""
    from text4seg.checkpoints.trained import resolve
    from text4seg.inference.options import PredictOptions

    where = trained.where() if trained is not None else None
    grid = resolve("--grid", args.grid, trained and tuple(trained.grid), args.force_options, where=where)
    scheme = resolve("--scheme", args.scheme, trained and trained.scheme, args.force_options, where=where)
    return PredictOptions(
        model=args.model,
        adapters=list(args.adapters or []),
        model_type=args.model_type,
        template=args.template,
        sam_checkpoint=args.sam_checkpoint,
        sam_type=args.sam_type,
        max_new_tokens=args.max_new_tokens,
        grid=tuple(grid or DEFAULT_GRID),
        scheme=scheme or DEFAULT_SCHEME,
        trust_remote_code=args.trust_remote_code,
    )


def question_template(args: argparse.Namespace, trained) -> tuple[str, str]:
    """``(template, where it came from)``: ``--question``, else the checkpoint's first question template,
    else the toolkit's; checked as the page checks a typed one (one literal ``{target}``)."""
    from text4seg.serving.segmenter import DEFAULT_TEMPLATE, fill_template

    if args.question is not None:
        template, source = args.question, "--question"
    elif trained is not None and trained.question:
        template, source = trained.question, trained.where()
    else:
        template, source = DEFAULT_TEMPLATE, "default"
    try:
        fill_template(template, "x")
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    return template, source


@contextlib.contextmanager
def silenced(verbose: bool = False) -> Iterator[None]:
    """The libraries' INFO/WARNING logs, Python warnings and progress bars (ms-swift's trust_remote_code
    notes: text4seg checked the folder already; transformers' "Loading weights") off inside the block, all
    restored afterwards; nothing changed when ``verbose``. Errors still raise."""
    if verbose:
        yield
        return
    import io
    import logging
    import warnings

    from text4seg._lazy import quiet_libraries

    loggers = [logging.getLogger(n) for n in ("swift", "transformers", "datasets", "modelscope", "httpx")]
    levels = [lg.level for lg in loggers]
    with quiet_libraries(), warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _require_gradio() -> None:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise ValueError("text4seg app needs Gradio: pip install 'text4seg[app]'")


def run(args: argparse.Namespace) -> int:
    import io
    import time

    from text4seg.checkpoints.trained import read_trained
    from text4seg.inference.run import make_predictor
    from text4seg.serving.app import ModelInfo, check_port, launch
    from text4seg.serving.segmenter import Segmenter, Watch

    # everything that can be checked is checked before the model loads (seconds to minutes)
    # a model that is not a folder (a hub id, a mistyped path, a file) is PredictOptions.validate's to judge
    local = args.model if Path(args.model).is_dir() else None
    trained = read_trained(local, [a for a in args.adapters or [] if Path(a).is_dir()])
    options = app_options(args, trained).validate()
    template, source = question_template(args, trained)
    check_port(args.host, args.port)
    _require_gradio()
    watch = Watch()
    with silenced(args.verbose):
        predictor = make_predictor(options, logits_processors=[watch])
    biases = {False: trained.bias(False), True: trained.bias(True)} if trained is not None else None
    seg = Segmenter(predictor, options.grid, options.scheme, watch, options.max_new_tokens, template, biases)
    info = ModelInfo(
        model=str(args.model),
        scheme=options.scheme,
        grid=tuple(options.grid),
        template=template,
        source=f"scheme/grid/question from {trained.where()}"
        if trained is not None
        else f"question: {source}",
        sam=seg.has_sam,
        max_new_tokens=options.max_new_tokens,
        label_bias=biases,
    )
    demo = None
    try:
        with silenced(args.verbose):
            demo, url = launch(seg, info, args.host, args.port)
        print(f"text4seg app: {url} (Ctrl+C to stop)", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (text4seg.cli turns it into the same)
        pass
    finally:
        if demo is not None:
            with contextlib.redirect_stdout(io.StringIO()):  # Gradio's "Closing server running on port"
                demo.close()
        seg.close()  # the uploads folder goes with the server
    return 0
