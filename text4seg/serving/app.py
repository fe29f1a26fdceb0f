"""``text4seg app``: a Gradio page to point a trained model at an image (the ``app`` extra).

Upload an image, type one or more referring expressions (one per line), tick constrained decoding and SAM
refinement; each expression comes back as an overlay (:mod:`text4seg.data.overlay`) in a gallery, its
masks as downloadable PNGs (0/255; the coarse one always, the SAM-refined one when refinement ran), and
its details (question, raw answer, the repairs the lenient decoder made, tokens). The page shows the
loaded model, its scheme, grid and question template.

What Gradio gives and this module configures: a queue (:data:`CONCURRENCY` request(s) on the model at a
time, :data:`MAX_QUEUE` waiting; the next ones are told the queue is full, never a reset connection),
progress while generating (tokens of the current expression), a Stop button that cancels the running
request at its next decoding step (:class:`Watch`), an upload limit of :data:`MAX_UPLOAD` bytes and an
API client (``gradio_client``: ``Client(url).predict(handle_file(png), "the cat", api_name="/segment")``).

Security (issue 25): each expression is asked as the template with its one literal ``{target}`` replaced
by the expression (:func:`fill_template`: plain text, no format specs, no other braces); limits of
:data:`MAX_EXPRESSIONS` expressions of :data:`MAX_EXPRESSION_CHARS` characters and a template of
:data:`MAX_TEMPLATE_CHARS`; an upload is read through :mod:`text4seg.data.images` (the toolkit's pixel
limit checked on the header, a non-image refused in one line). Every refusal and every failure inside a
request is one line on the page (and a ``gradio_client`` error); no request ends the server. Each
``max_new_tokens`` is bounded by the answer budget of the scheme, grid and expression
(:func:`text4seg.descriptors.max_answer_tokens`). Uploads and Gradio's cache live in one temporary folder,
removed when the server stops (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from text4seg.data.overlay import overlay_image
from text4seg.data.queries import Query
from text4seg.data.results import ResultRecord, answer_to_masks, rles_to_label_map
from text4seg.data.rle import rle_to_mask
from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME, max_answer_tokens, normalize_label

DEFAULT_TEMPLATE = "Can you segment {target} in this picture?"
PLACEHOLDER = "{target}"
MAX_UPLOAD = 32 * 1024 * 1024  # bytes of one upload (Gradio refuses more before it is stored)
MAX_EXPRESSIONS = 8
MAX_EXPRESSION_CHARS = 300
MAX_TEMPLATE_CHARS = 500
CONCURRENCY = 1  # requests on the model at once (one model, one GPU)
MAX_QUEUE = 64  # requests waiting their turn; more are told the queue is full
PREVIEW_SIDE = 1024  # longest side of the preview and overlays shown on the page


def fill_template(template: str, target: str) -> str:
    """``template`` with its one literal ``{target}`` replaced by ``target``.

    A template is plain text: exactly one ``{target}``, no other ``{`` or ``}`` (no format specs such as
    ``{target:>30000000}``, no attribute or index access), at most :data:`MAX_TEMPLATE_CHARS` characters;
    ``ValueError`` quoting the template otherwise. ``target``: at most :data:`MAX_EXPRESSION_CHARS`.
    """
    if not isinstance(template, str) or len(template) > MAX_TEMPLATE_CHARS:
        n = len(template) if isinstance(template, str) else type(template).__name__
        raise ValueError(
            f"the question template must be text of at most {MAX_TEMPLATE_CHARS} characters, got {n}"
        )
    rest = template.replace(PLACEHOLDER, "", 1)
    if PLACEHOLDER not in template or "{" in rest or "}" in rest:
        raise ValueError(
            f"the question template must be plain text with exactly one {PLACEHOLDER} and no other braces, "
            f"got {template[:80]!r}"
        )
    if len(target) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"an expression has {len(target)} characters; at most {MAX_EXPRESSION_CHARS}")
    return template.replace(PLACEHOLDER, target)


def split_expressions(text) -> list[str]:
    """The expressions of the page's text box (one per line, blank lines dropped), checked for count and
    length (``ValueError`` in one line)."""
    if not isinstance(text, str):
        raise ValueError(f"expressions must be text, one per line, got {type(text).__name__}")
    exprs = [e.strip() for e in text.splitlines() if e.strip()]
    if not exprs:
        raise ValueError("type at least one expression")
    if len(exprs) > MAX_EXPRESSIONS:
        raise ValueError(f"at most {MAX_EXPRESSIONS} expressions per request, got {len(exprs)}")
    for e in exprs:
        if len(e) > MAX_EXPRESSION_CHARS:
            raise ValueError(f"an expression has {len(e)} characters; at most {MAX_EXPRESSION_CHARS}")
    return exprs


class Cancelled(Exception):
    """The user pressed Stop: raised inside generation by :class:`Watch`."""


class Watch:
    """A ``transformers`` logits processor that reports each decoding step and raises :class:`Cancelled`
    at the next step once :attr:`cancel` is set. The :class:`Segmenter` points it at the running request."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.on_step: Callable[[int], None] | None = None
        self.step = 0

    def start(self, on_step: Callable[[int], None] | None) -> None:
        self.step, self.on_step = 0, on_step

    def __call__(self, input_ids, scores):
        if self.cancel.is_set():
            raise Cancelled("stopped")
        self.step += 1
        if self.on_step is not None:
            self.on_step(self.step)
        return scores


@dataclass
class ModelInfo:
    """What the page says about the loaded model."""

    model: str = "?"
    scheme: str = DEFAULT_SCHEME
    grid: tuple[int, int] = DEFAULT_GRID
    template: str = DEFAULT_TEMPLATE
    source: str = "defaults"  # where scheme/grid/template came from (the checkpoint's text4seg.json...)
    sam: bool = False
    max_new_tokens: int | None = None


class Segmenter:
    """A predictor answering the page's requests, one at a time.

    ``predictor``: anything with ``generate(queries, constrained) -> [(text, ntok)]``, ``refiner`` (None
    without SAM) and a ``max_new_tokens`` attribute (set per query to the bounded budget); ``grid``
    ``(rows, cols)`` and ``scheme`` of the answers; ``watch``: the :class:`Watch` given to the predictor as
    a logits processor (None: cancel only between expressions); ``max_new_tokens``: the operator's cap;
    ``template``: the question template of a request that gives none (the checkpoint's).
    """

    def __init__(
        self,
        predictor,
        grid: tuple[int, int] = DEFAULT_GRID,
        scheme: str = DEFAULT_SCHEME,
        watch: Watch | None = None,
        max_new_tokens: int | None = None,
        template: str = DEFAULT_TEMPLATE,
    ):
        self.predictor, self.grid, self.scheme = predictor, (int(grid[0]), int(grid[1])), scheme
        self.template = template
        self.watch = watch or Watch()
        self.max_new_tokens = max_new_tokens
        self.lock = threading.Lock()
        self.workdir = Path(tempfile.mkdtemp(prefix="text4seg_app_"))
        self._n = 0
        self._running: str | None = None  # the session whose request is on the model

    @property
    def has_sam(self) -> bool:
        return getattr(self.predictor, "refiner", None) is not None

    def close(self) -> None:
        """Remove the uploads, masks and Gradio's cache."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def budget(self, label: str, requested: int | None = None) -> int:
        """``max_new_tokens`` of one expression: ``requested`` (or the operator's cap) bounded by the answer
        budget of the scheme, grid and label; the budget itself when neither is given."""
        bound = max_answer_tokens(self.scheme, self.grid, [label])
        cap = requested or self.max_new_tokens
        return bound if not cap or cap <= 0 else min(int(cap), bound)

    def stop(self, session: str | None = None) -> bool:
        """Cancel the running request (of ``session`` when given); True when one was running."""
        if self._running is None or (session is not None and session != self._running):
            return False
        self.watch.cancel.set()
        return True

    def load_upload(self, path) -> tuple[str, np.ndarray]:
        """``(png path, RGB array)`` of an uploaded file, stored as PNG under :attr:`workdir`; one-line
        ``ValueError`` for a missing, non-image or too large upload."""
        from text4seg.data.images import load_rgb

        if not path:
            raise ValueError("upload an image first")
        name = Path(str(path)).name
        rgb = load_rgb(str(path), f"the upload {name!r}")
        self._n += 1
        out = self.workdir / f"upload{self._n}.png"
        rgb.save(out, format="PNG")
        return str(out), np.asarray(rgb)

    def segment(
        self,
        image,
        expressions,
        template: str | None = None,
        constrained: bool = False,
        refine: bool = False,
        max_new_tokens: int | None = None,
        progress: Callable[[float, str], None] | None = None,
        session: str | None = None,
    ) -> list[dict]:
        """One result per expression (keys: expression, question, answer, parse_valid, repairs,
        pred_labels, num_tokens, budget, width, height, overlay (RGB array), overlay_png (the page's
        copy), mask and refined_mask (PNG paths)). ``image``: an uploaded file's path; ``expressions``:
        text, one per line, or a list."""
        from text4seg.inference.predict import query_record

        if isinstance(expressions, (list, tuple)):
            expressions = "\n".join(str(e) for e in expressions)
        exprs = split_expressions(expressions)
        questions = [fill_template(template or self.template, e) for e in exprs]  # before the model
        if refine and not self.has_sam:
            raise ValueError("SAM refinement needs the app started with --sam-checkpoint")
        budgets = [self.budget(normalize_label(e), max_new_tokens) for e in exprs]
        with self.lock:
            path, _ = self.load_upload(image)
            self._running, n = session, len(exprs)
            self.watch.cancel.clear()
            try:
                recs = []
                for i, (e, question, budget) in enumerate(zip(exprs, questions, budgets)):
                    if self.watch.cancel.is_set():
                        raise Cancelled("stopped")
                    q = Query(
                        id=Path(path).stem,
                        turn=i,
                        image=path,
                        question=question,
                        labels=[normalize_label(e)],
                        grid=self.grid,
                        scheme=self.scheme,
                    )
                    self.watch.start(_step_reporter(progress, i, n, e, budget))
                    self.predictor.max_new_tokens = budget
                    (text, ntok) = self.predictor.generate([q], constrained)[0]
                    refiner = self.predictor.refiner if refine else None
                    recs.append((q, budget, query_record(q, text, ntok, None, False, constrained, refiner)))
            finally:
                self._running = None
                self.watch.start(None)
            return [self._result(e, q, b, r) for e, (q, b, r) in zip(exprs, recs)]

    def _result(self, expression: str, q: Query, budget: int, rec: ResultRecord) -> dict:
        from PIL import Image

        h, w = rec.height, rec.width
        am = answer_to_masks(rec.answer, h, w, rec.grid, rec.scheme)
        refined = None
        if rec.refined_labels is not None:
            refined = rles_to_label_map(rec.refined_labels, h, w)[0]
        picture = overlay_image(
            q.image, am.mask, refined, label_map=am.label_map, names=am.names, query=q.question, grid=rec.grid
        )
        stem = f"{Path(q.image).stem}_{q.turn}"
        # files named per request: Gradio caches an array by its content, and twenty equal answers would
        # rewrite one cached file while other clients download it
        overlay = self.workdir / f"{stem}_overlay.png"
        Image.fromarray(_shrink(np.asarray(picture))).save(overlay)
        mask = self.workdir / f"{stem}_coarse_mask.png"
        Image.fromarray(rle_to_mask(rec.coarse).astype(np.uint8) * 255).save(mask)
        refined_path = None
        if rec.refined is not None:
            refined_path = self.workdir / f"{stem}_refined_mask.png"
            Image.fromarray(rle_to_mask(rec.refined).astype(np.uint8) * 255).save(refined_path)
        return {
            "expression": expression,
            "question": q.question,
            "answer": rec.answer,
            "parse_valid": rec.parse_valid,
            "repairs": [list(r) for r in rec.repairs],
            "pred_labels": rec.pred_labels,
            "num_tokens": rec.num_tokens,
            "budget": budget,
            "width": w,
            "height": h,
            "overlay": np.asarray(picture),
            "overlay_png": str(overlay),
            "mask": str(mask),
            "refined_mask": None if refined_path is None else str(refined_path),
        }


def _step_reporter(progress, i: int, n: int, expression: str, budget: int):
    if progress is None:
        return None
    label = expression if len(expression) <= 40 else expression[:39] + "…"

    def report(step: int) -> None:
        if step == 1 or step % 8 == 0:
            progress(
                (i + min(step, budget) / budget) / n, f"{i + 1}/{n} {label!r}: token {step} of ≤{budget}"
            )

    return report


def check_port(host: str, port: int) -> None:
    """``OSError`` naming ``host:port`` when it cannot be bound (in use, no permission), before loading."""
    import socket

    if not 0 <= int(port) <= 65535:
        raise ValueError(f"--port {port}: expected 0..65535")
    try:
        with socket.create_server((host, port), reuse_port=False):
            pass
    except OSError as exc:
        raise OSError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def free_port(host: str) -> int:
    """A port free on ``host`` now (for ``--port 0``: Gradio wants a number)."""
    import socket

    with socket.create_server((host, 0)) as s:
        return int(s.getsockname()[1])


def header_markdown(info: ModelInfo) -> str:
    """The page's line about the loaded model (HTML-escaped: a path may hold ``<`` or ``*``)."""
    grid = f"{info.grid[0]}x{info.grid[1]}"
    budget = f"≤ {info.max_new_tokens}" if info.max_new_tokens else "the answer bound"
    parts = [
        f"<b>model</b> <code>{html.escape(info.model)}</code>",
        f"<b>scheme</b> <code>{html.escape(info.scheme)}</code>",
        f"<b>grid</b> <code>{grid}</code>",
        f"<b>SAM</b> {'yes' if info.sam else 'no'}",
        f"<b>max new tokens</b> {budget}",
        f"<i>({html.escape(info.source)})</i>",
    ]
    return "<div id='model-info'>" + " · ".join(parts) + "</div>"


CSS = """
#overlays img { object-fit: contain; }
#model-info { font-size: 14px; padding: 4px 2px; }
"""


def build(segmenter: Segmenter, info: ModelInfo):
    """The Gradio ``Blocks`` of the page (not launched; the queue configured)."""
    import gradio as gr

    def preview(path):
        if not path:
            return None, ""
        try:
            _, rgb = segmenter.load_upload(path)
        except ValueError as e:  # shown in the size box and as a toast; the page stays usable
            line = _one_line(e, path)
            gr.Warning(line)
            return None, f"refused: {line}"
        return _shrink(rgb), f"{rgb.shape[1]}x{rgb.shape[0]} pixels"

    def run(path, expressions, template, constrained, refine, max_new, request=None, progress=gr.Progress()):  # noqa: B008
        session = getattr(request, "session_hash", None)
        try:
            results = segmenter.segment(
                path,
                expressions,
                template,
                bool(constrained),
                bool(refine),
                int(max_new or 0),
                lambda f, desc: progress(f, desc=desc),
                session,
            )
        except Cancelled:
            raise gr.Error("stopped: the request was cancelled", print_exception=False) from None
        except (ValueError, OSError, RecursionError) as e:
            raise gr.Error(_one_line(e, path), print_exception=False) from None
        except Exception as e:  # a bug or a library failure: this request fails, the server lives on
            raise gr.Error(
                f"internal error: {type(e).__name__}: {_one_line(e)[:200]}", print_exception=False
            ) from None
        gallery = [(r["overlay_png"], r["expression"]) for r in results]
        files = [p for r in results for p in (r["mask"], r["refined_mask"]) if p]
        details = [
            {k: v for k, v in r.items() if k not in ("overlay", "overlay_png", "mask", "refined_mask")}
            for r in results
        ]
        summary = "; ".join(_summary(r) for r in results)
        return gallery, files, details, summary

    def stop(request=None):
        segmenter.stop(getattr(request, "session_hash", None))
        return "stopped"

    # Gradio finds the request by its annotation (a class, not this module's postponed string)
    run.__annotations__ = {"request": gr.Request}
    stop.__annotations__ = {"request": gr.Request}

    with gr.Blocks(title="text4seg", analytics_enabled=False) as demo:
        gr.Markdown("## text4seg: upload an image, type expressions, see the masks")
        gr.HTML(header_markdown(info))
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                upload = gr.File(label="Image", file_types=["image"], type="filepath", elem_id="upload")
                shown = gr.Image(label="Preview", interactive=False, height=240, elem_id="preview")
                size = gr.Textbox(label="Size", interactive=False, elem_id="size", max_lines=3)
                exprs = gr.Textbox(
                    label=f"Expressions (one per line, at most {MAX_EXPRESSIONS})",
                    lines=3,
                    elem_id="expressions",
                )
                template = gr.Textbox(
                    label="Question template (one literal {target})",
                    value=info.template,
                    max_lines=2,
                    elem_id="template",
                )
                constrained = gr.Checkbox(label="constrained decoding", value=False, elem_id="constrained")
                refine = gr.Checkbox(
                    label="SAM refinement" + ("" if info.sam else " (start with --sam-checkpoint)"),
                    value=False,
                    interactive=info.sam,
                    elem_id="refine",
                )
                max_new = gr.Number(
                    label="max new tokens (0: the answer bound; never more)",
                    value=info.max_new_tokens or 0,
                    precision=0,
                    minimum=0,
                    elem_id="max-new",
                )
                with gr.Row():
                    go = gr.Button("Segment", variant="primary", elem_id="submit")
                    cancel = gr.Button("Stop", variant="stop", elem_id="stop")
            with gr.Column(scale=3):
                status = gr.Textbox(label="Status", interactive=False, elem_id="status", max_lines=3)
                gallery = gr.Gallery(
                    label="Overlays (one per expression: pick below)",
                    columns=MAX_EXPRESSIONS,
                    height=720,
                    preview=True,
                    selected_index=0,
                    object_fit="contain",
                    elem_id="overlays",
                )
                files = gr.File(label="Masks (PNG, 0/255)", file_count="multiple", elem_id="masks")
                details = gr.JSON(label="Answers and repairs", elem_id="details")
        upload.change(preview, upload, [shown, size], api_name="preview", concurrency_limit=4)
        job = go.click(
            run,
            [upload, exprs, template, constrained, refine, max_new],
            [gallery, files, details, status],
            api_name="segment",
            concurrency_limit=CONCURRENCY,
            concurrency_id="model",
            show_progress_on=[status],  # one progress bar (tokens of the current expression), not four
        )
        cancel.click(stop, None, status, cancels=[job], api_name="stop", queue=False)
    demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=CONCURRENCY)
    return demo


def launch(segmenter: Segmenter, info: ModelInfo, host: str = "127.0.0.1", port: int = 7860):
    """Build and start the page (not blocking); returns ``(demo, url)``. ``port`` 0: a free one.
    Gradio's uploads and cache go under the segmenter's temporary folder."""
    cache = segmenter.workdir / "gradio"
    cache.mkdir(exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = build(segmenter, info)
    port = port or free_port(host)
    demo.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        show_error=True,
        max_file_size=MAX_UPLOAD,
        allowed_paths=[str(segmenter.workdir)],
        inbrowser=False,
        share=False,
        css=CSS,
    )
    return demo, f"http://{host}:{port}/"


def _shrink(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with its longest side at most :data:`PREVIEW_SIDE` (what the page shows)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    if max(h, w) <= PREVIEW_SIDE:
        return rgb
    s = PREVIEW_SIDE / max(h, w)
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s)))))


def _summary(r: dict) -> str:
    """One expression's result in a few words (the status line)."""
    state = "valid answer" if r["parse_valid"] else f"{len(r['repairs'])} repair(s)"
    return f"{r['expression']!r}: {state}, {r['num_tokens']} tokens of <= {r['budget']}"


def _one_line(e: BaseException, upload=None) -> str:
    """The message of ``e`` on one line (at most 400 characters): ``upload``'s server path shown as its
    file name, any other quoted absolute path (Gradio's cache, in a library's message) left out."""
    text = str(e)
    if upload:
        text = text.replace(str(upload), Path(str(upload)).name)
    text = re.sub(r"\s*'/[^']*'?", "", text)  # no server paths (Gradio's cache, cut or whole) on the page
    return " ".join(text.split())[:400] or type(e).__name__
