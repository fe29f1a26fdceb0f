"""``text4seg app``: a small web page on a stdlib ``http.server`` to point a trained model at an image.

Upload an image, type one or more referring expressions (one per line), tick constrained decoding and SAM
refinement; each expression comes back with the overlay (:mod:`text4seg.data.overlay`), the mask as
a downloadable PNG (0/255; the SAM-refined one when refinement ran, the coarse one always), the raw
answer text and the repairs the lenient decoder made. No dependency beyond the inference extra.

HTTP API (what the page's script calls; also usable with ``curl``)::

    GET  /            the page (text4seg.serving.page.PAGE)
    GET  /health      {"ok": true, "sam": false, "grid": [16, 16], "scheme": "rrle"}
    POST /api/segment {"image": "data:image/png;base64,...", "expressions": ["the red circle"],
                       "template": "Can you segment {target} in this picture?",
                       "constrained": false, "refine": false}
      200 -> {"results": [{"expression": "the red circle", "question": "Can you segment the red circle
               in this picture?", "answer": "...", "parse_valid": true, "repairs": [[kind, row, detail]],
               "pred_labels": [...], "num_tokens": 57, "width": 640, "height": 480,
               "overlay": "data:image/png;base64,...", "mask": "data:image/png;base64,..." (coarse),
               "refined_mask": "data:..." | null}]}
      400 -> {"error": "one line"}

Each expression is asked as the template with its one literal ``{target}`` replaced by the expression
(:func:`fill_template`: plain text, no format specs, no other braces), with the expression as its target
label (what constrained decoding allows besides ``others``). Limits, each answered with a 400/413 and one
line: a body of :data:`MAX_BODY` bytes, an upload over the toolkit's pixel limit
(:mod:`text4seg.data.images`), :data:`MAX_EXPRESSIONS` expressions of :data:`MAX_EXPRESSION_CHARS`
characters, a template of :data:`MAX_TEMPLATE_CHARS`. The model answers one request at a time (a lock);
up to :data:`MAX_WAITING` more wait their turn and the next ones get 503 "busy" at once (never a reset
connection: the listen backlog is :data:`BACKLOG`). An unexpected failure inside one request is a 500 with
one line; it never ends the server. The server binds 127.0.0.1 unless told otherwise. Uploads go to a
temporary folder that is removed when the server stops.
"""

from __future__ import annotations

import base64
import binascii
import json
import shutil
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from text4seg.data.overlay import overlay_image, png_bytes
from text4seg.data.queries import Query
from text4seg.data.results import ResultRecord, answer_to_masks, rles_to_label_map
from text4seg.data.rle import rle_to_mask
from text4seg.descriptors import DEFAULT_GRID, DEFAULT_SCHEME, normalize_label

DEFAULT_TEMPLATE = "Can you segment {target} in this picture?"
PLACEHOLDER = "{target}"
MAX_BODY = 32 * 1024 * 1024
MAX_EXPRESSIONS = 8
MAX_EXPRESSION_CHARS = 300
MAX_TEMPLATE_CHARS = 500
MAX_WAITING = 32  # requests queued behind the one being answered; more get 503 "busy"
BACKLOG = 128  # listen backlog: a burst of connections is queued by the kernel, not reset


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


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:image/...;base64,...`` URL (ValueError naming the problem otherwise)."""
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise ValueError("image must be a data:image/...;base64,... URL")
    try:
        return base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("image data URL is not valid base64") from None


class Segmenter:
    """A :class:`~text4seg.inference.predict.Predictor` behind a lock, answering the page's requests.

    ``predictor``: anything with ``generate(queries, constrained) -> [(text, ntok)]`` and ``refiner``
    (None without SAM); ``grid`` ``(rows, cols)`` and ``scheme`` of the answers.
    """

    def __init__(self, predictor, grid: tuple[int, int] = DEFAULT_GRID, scheme: str = DEFAULT_SCHEME):
        self.predictor, self.grid, self.scheme = predictor, (int(grid[0]), int(grid[1])), scheme
        self.lock = threading.Lock()
        self.workdir = Path(tempfile.mkdtemp(prefix="text4seg_app_"))
        self._n = 0

    @property
    def has_sam(self) -> bool:
        return getattr(self.predictor, "refiner", None) is not None

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _save_upload(self, data: bytes) -> str:
        from text4seg.data.images import load_rgb

        rgb = load_rgb(data, "the upload")  # one line for a non-image, a bomb, a size over the limit
        self._n += 1
        path = self.workdir / f"upload{self._n}.png"
        rgb.save(path, format="PNG")
        return str(path)

    def segment(
        self,
        image: bytes,
        expressions: list[str],
        template: str = DEFAULT_TEMPLATE,
        constrained: bool = False,
        refine: bool = False,
    ) -> list[dict]:
        """One result per expression (keys: module docstring). ``image``: encoded image bytes."""
        from text4seg.inference.predict import query_record

        exprs = [e.strip() for e in expressions if e and e.strip()]
        if not exprs:
            raise ValueError("type at least one expression")
        if len(exprs) > MAX_EXPRESSIONS:
            raise ValueError(f"at most {MAX_EXPRESSIONS} expressions per request, got {len(exprs)}")
        questions = [fill_template(template, e) for e in exprs]  # checked before the model is touched
        if refine and not self.has_sam:
            raise ValueError("SAM refinement needs the app started with --sam-checkpoint")
        with self.lock:
            path = self._save_upload(image)
            queries = [
                Query(
                    id=f"upload{self._n}",
                    turn=i,
                    image=path,
                    question=question,
                    labels=[normalize_label(e)],
                    grid=self.grid,
                    scheme=self.scheme,
                )
                for i, (e, question) in enumerate(zip(exprs, questions))
            ]
            # one query per generate call: the answer does not depend on its batch-mates' padding
            answers = [self.predictor.generate([q], constrained)[0] for q in queries]
            refiner = self.predictor.refiner if refine else None
            recs = [
                query_record(q, text, ntok, None, False, constrained, refiner)
                for q, (text, ntok) in zip(queries, answers)
            ]
        return [self._result(e, q, r) for e, q, r in zip(exprs, queries, recs)]

    def _result(self, expression: str, q: Query, rec: ResultRecord) -> dict:
        h, w = rec.height, rec.width
        am = answer_to_masks(rec.answer, h, w, rec.grid, rec.scheme)
        refined = None
        if rec.refined_labels is not None:
            refined = rles_to_label_map(rec.refined_labels, h, w)[0]
        picture = overlay_image(
            q.image, am.mask, refined, label_map=am.label_map, names=am.names, query=q.question, grid=rec.grid
        )
        coarse = rle_to_mask(rec.coarse)
        return {
            "expression": expression,
            "question": q.question,
            "answer": rec.answer,
            "parse_valid": rec.parse_valid,
            "repairs": [list(r) for r in rec.repairs],
            "pred_labels": rec.pred_labels,
            "num_tokens": rec.num_tokens,
            "width": w,
            "height": h,
            "overlay": _data_url(png_bytes(picture)),
            "mask": _data_url(png_bytes(coarse.astype(np.uint8) * 255)),
            "refined_mask": None
            if rec.refined is None
            else _data_url(png_bytes(rle_to_mask(rec.refined).astype(np.uint8) * 255)),
        }


def make_handler(segmenter: Segmenter):
    """A ``BaseHTTPRequestHandler`` class serving the page and the API of ``segmenter``."""
    from text4seg.serving.page import PAGE

    slots = threading.BoundedSemaphore(MAX_WAITING + 1)  # the request being answered + those waiting

    class Handler(BaseHTTPRequestHandler):
        server_version = "text4seg-app"

        def log_message(self, fmt, *args):  # quiet: one line per request is noise in a terminal
            pass

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: dict) -> None:
            self._send(code, json.dumps(obj).encode("utf-8"), "application/json")

        def do_GET(self):
            if self.path in ("/", "/index.html"):
                return self._send(200, PAGE.encode("utf-8"), "text/html; charset=utf-8")
            if self.path == "/health":
                return self._json(
                    200,
                    {
                        "ok": True,
                        "sam": segmenter.has_sam,
                        "grid": list(segmenter.grid),
                        "scheme": segmenter.scheme,
                    },
                )
            self._json(404, {"error": f"no such page: {self.path}"})

        def do_POST(self):
            if self.path != "/api/segment":
                return self._json(404, {"error": f"no such endpoint: {self.path}"})
            try:
                n = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                n = -1
            if n <= 0 or n > MAX_BODY:
                self.close_connection = True  # the body is not read: the connection cannot be reused
                return self._json(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    {"error": f"a request body of 1..{MAX_BODY} bytes is expected, got {n}"},
                )
            if not slots.acquire(blocking=False):
                self.close_connection = True
                return self._json(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    {"error": f"busy: {MAX_WAITING} requests are waiting; try again in a moment"},
                )
            try:
                code, obj = self._segment(self.rfile.read(n))
            finally:
                slots.release()
            self._json(code, obj)

        def _segment(self, body: bytes) -> tuple[int, dict]:
            try:
                req = json.loads(body)
                if not isinstance(req, dict):
                    raise ValueError("the request body must be a JSON object")
                exprs = req.get("expressions") or []
                if isinstance(exprs, str):
                    exprs = exprs.splitlines()
                if not isinstance(exprs, list):
                    raise ValueError("expressions must be a list of strings or one string")
                template = req.get("template") or DEFAULT_TEMPLATE
                if not isinstance(template, str):
                    raise ValueError("template must be a string")
                results = segmenter.segment(
                    decode_data_url(req.get("image")),
                    [str(e)[: MAX_EXPRESSION_CHARS + 1] for e in exprs[: MAX_EXPRESSIONS + 1]],
                    template,
                    bool(req.get("constrained")),
                    bool(req.get("refine")),
                )
            except (ValueError, KeyError, RecursionError) as e:
                return 400, {"error": str(e)[:300]}
            except Exception as e:  # a bug or a library failure: this request fails, the server lives on
                return 500, {"error": f"internal error: {type(e).__name__}: {str(e)[:200]}"}
            return 200, {"results": results}

    return Handler


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


def serve(segmenter: Segmenter, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """A started-not-yet-serving HTTP server (call ``serve_forever``; ``port=0`` picks a free port)."""
    server = _Server((host, port), make_handler(segmenter))
    server.daemon_threads = True
    return server


class _Server(ThreadingHTTPServer):
    request_queue_size = BACKLOG  # the stdlib's 5 resets the 6th of a burst of connections

    def handle_error(self, request, client_address) -> None:  # a client that hung up: nothing to print
        pass
