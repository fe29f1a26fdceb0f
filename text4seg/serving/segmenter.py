"""The web app's model side: a :class:`Segmenter` answers one request (an uploaded image and up to
:data:`MAX_EXPRESSIONS` expressions) one at a time on a loaded predictor; the page is
:mod:`text4seg.serving.app`'s (Gradio).

A request: each expression is asked as the question template with its one literal ``{target}``
replaced by the expression (:func:`fill_template`: plain text, no format specs, no other braces; limits
of :data:`MAX_EXPRESSIONS` expressions of :data:`MAX_EXPRESSION_CHARS` characters and a template of
:data:`MAX_TEMPLATE_CHARS`); the upload is read through :mod:`text4seg.data.images` (the toolkit's pixel
limit checked on the header, a non-image refused in one line) and stored as PNG in the segmenter's
temporary folder; each ``max_new_tokens`` is bounded by the answer budget of the scheme, grid and
expression (:func:`text4seg.descriptors.max_answer_tokens`); the checkpoint's label bias of the decoding
mode is applied (:mod:`text4seg.inference.bias`). A :class:`Watch`, given to the predictor as a logits
processor, reports each decoding step and cancels the request at the next one. Each expression gives
a result dict: question, raw answer, repairs, tokens, the overlay (:mod:`text4seg.data.overlay`, at most
:data:`PREVIEW_SIDE` pixels a side) and the coarse and refined masks as 0/255 PNG files.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from text4seg.data.overlay import overlay_image
from text4seg.data.queries import Query
from text4seg.data.results import ResultRecord, answer_to_masks, rles_to_label_map
from text4seg.data.rle import rle_to_mask
from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME, max_answer_tokens, normalize_label

DEFAULT_TEMPLATE = "Can you segment {target} in this picture?"
PLACEHOLDER = "{target}"
MAX_EXPRESSIONS = 8
MAX_EXPRESSION_CHARS = 300
MAX_TEMPLATE_CHARS = 500
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


class Segmenter:
    """A predictor answering the page's requests, one at a time.

    ``predictor``: anything with ``generate(queries, constrained) -> [(text, ntok)]``, ``refiner`` (None
    without SAM) and a ``max_new_tokens`` attribute (set per query to the bounded budget); ``grid``
    ``(rows, cols)`` and ``scheme`` of the answers; ``watch``: the :class:`Watch` given to the predictor as
    a logits processor (None: cancel only between expressions); ``max_new_tokens``: the operator's cap;
    ``template``: the question template of a request that gives none (the checkpoint's); ``label_bias``:
    ``{constrained: bias}``, the checkpoint's label bias of each decoding mode
    (:mod:`text4seg.inference.bias`; given to ``generate`` as ``label_bias=`` when not 0).
    """

    def __init__(
        self,
        predictor,
        grid: tuple[int, int] = DEFAULT_GRID,
        scheme: str = DEFAULT_SCHEME,
        watch: Watch | None = None,
        max_new_tokens: int | None = None,
        template: str = DEFAULT_TEMPLATE,
        label_bias: dict[bool, float | None] | None = None,
    ):
        self.predictor, self.grid, self.scheme = predictor, (int(grid[0]), int(grid[1])), scheme
        self.template = template
        self.label_bias = dict(label_bias or {})
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
        from text4seg.inference.answer import query_record

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
                    bias = self.label_bias.get(bool(constrained))
                    extra = {"label_bias": bias} if bias else {}
                    (text, ntok) = self.predictor.generate([q], constrained, **extra)[0]
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
        Image.fromarray(shrink(np.asarray(picture))).save(overlay)
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


def shrink(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with its longest side at most :data:`PREVIEW_SIDE` (what the page shows)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    if max(h, w) <= PREVIEW_SIDE:
        return rgb
    s = PREVIEW_SIDE / max(h, w)
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s)))))
