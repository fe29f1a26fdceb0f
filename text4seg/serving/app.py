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

Security (issue 25): what a request may hold (templates, expressions, uploads, budgets) is checked by
the model side, :mod:`text4seg.serving.segmenter`. Every refusal and every failure inside a request is
one line on the page (and a ``gradio_client`` error); no request ends the server. Uploads and Gradio's
cache live in one temporary folder, removed when the server stops (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME
from text4seg.serving.segmenter import DEFAULT_TEMPLATE, MAX_EXPRESSIONS, Cancelled, Segmenter, shrink

MAX_UPLOAD = 32 * 1024 * 1024  # bytes of one upload (Gradio refuses more before it is stored)
CONCURRENCY = 1  # requests on the model at once (one model, one GPU)
MAX_QUEUE = 64  # requests waiting their turn; more are told the queue is full


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
    label_bias: dict[bool, float | None] | None = None  # {constrained: bias} (text4seg.inference.bias)


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
    ]
    biases = {k: v for k, v in (info.label_bias or {}).items() if v}
    if biases:
        modes = " / ".join(f"{biases[k]:g} {'constrained' if k else 'greedy'}" for k in sorted(biases))
        parts.append(f"<b>label bias</b> {modes}")
    parts.append(f"<i>({html.escape(info.source)})</i>")
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
        return shrink(rgb), f"{rgb.shape[1]}x{rgb.shape[0]} pixels"

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
