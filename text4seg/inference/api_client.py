"""Predict against an OpenAI-compatible chat server (``swift deploy``, ``vllm serve``): the scale-out path.

:class:`ApiPredictor` has :meth:`text4seg.inference.predict.Predictor.predict`'s signature, so
``predict_to(None, queries, out, client=ApiPredictor(url, ...))`` (:mod:`text4seg.inference.run`; or
``text4seg predict --api``, :func:`text4seg.inference.run.make_predictor`) writes the same resumable,
flushed ``results.jsonl`` (records through :func:`text4seg.inference.answer.query_record`: the same
decoding, SAM refinement and overlays) and ``text4seg evaluate`` scores it the same way.

Request (one per query; ``POST {url}/v1/chat/completions``, greedy)::

    {"model": "NAME", "temperature": 0, "max_tokens": 97,
     "messages": [{"role": "user", "content": [
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR..."}},
         {"type": "text", "text": "Please segment the red circle."}]}]}

A label bias (``label_bias``, the checkpoint's ``text4seg.json``) adds vLLM's
``"logit_bias": {"<token id>": bias}`` for the query's label tokens (:mod:`text4seg.inference.bias`).

The answer is ``choices[0].message.content``; ``usage.completion_tokens`` becomes ``num_tokens``.
``max_tokens`` is the in-process budget (:meth:`Predictor.budget`: the scheme's bound for the query's
grid and labels) unless ``max_new_tokens`` is given.

Constrained decoding (``constrained=True``) adds the structured output that the server understands,
built by :mod:`text4seg.decoding.bodies` (no second builder here):

* ``server="swift"`` (``swift deploy``; ms-swift's ``RequestConfig.structured_outputs_regex``, which its
  vLLM backend passes on; its transformers backend ignores it): :func:`swift_deploy_body`, the regex form.
* ``server="vllm"`` (``vllm serve``): ``structured="grammar"`` (default) is :func:`vllm_chat_body`,
  the exact EBNF grammar (``{"structured_outputs": {"grammar": ...}}``); ``structured="regex"`` sends
  the regex as ``{"structured_outputs": {"regex": ...}}``.

The regex form cannot express the run-length row sums (nor ``compact``'s ordering): :data:`REGEX_CAVEAT`
is printed once; the lenient decoder repairs what it lets through and records the repairs.
``server="auto"`` asks ``GET {url}/v1/models``: a model ``owned_by`` ``"swift"`` means swift deploy.

Pool: at most ``concurrency`` requests in flight (threads; SAM and the results file stay in the calling
thread); records come back in completion order (the results file is keyed by ``(id, turn)``).
Retries: a connection error, a timeout, HTTP 408/429/5xx are retried ``retries`` times with exponential
back-off (``backoff * 2**k`` s, at most 30 s); any other HTTP error stops the run with the server's
message, and so does an answer of another shape (not JSON, no ``choices[0].message.content`` string).

Limits (the server is not trusted): ``timeout`` is a deadline for the whole exchange of one request
(connect, headers and body; a server trickling one byte at a time is cut there), an answer over
:data:`MAX_RESPONSE_BYTES` is refused (read in chunks, never allocated from its ``Content-Length``),
and an answer text longer than its query's :meth:`ApiPredictor.answer_cap` (the scheme's answer bound,
a character bound) is cut there and counted in :attr:`ApiPredictor.cut_answers`.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import math
import mimetypes
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from text4seg.data.queries import Query
from text4seg.descriptors import MAX_FREE, max_answer_tokens
from text4seg.descriptors.multi import max_multi_tokens
from text4seg.inference.answer import query_record
from text4seg.inference.bias import SWIFT_NO_BIAS
from text4seg.inference.options import SERVERS

REGEX_CAVEAT = (
    "constrained via regex: the regex checks the answer's characters, labels and run syntax, but it cannot "
    "express that each row's runs sum to the grid width (run-length schemes) or compact's ordering; the "
    "lenient decoder repairs such rows and records the repairs"
)
TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}
MAX_RESPONSE_BYTES = 16 << 20  # the most of one server answer that is read (a longer one is an error)
_CHUNK = 1 << 16
STRUCTURED = ("grammar", "regex")


class ApiError(OSError):
    """A request that failed for good (after its retries, or a non-transient HTTP error)."""


def image_data_url(path: str | os.PathLike) -> str:
    """``data:<mime>;base64,...`` of an image file (the mime type from its suffix, default image/png)."""
    mime = mimetypes.guess_type(str(path))[0] or "image/png"
    with open(path, "rb") as fh:
        return f"data:{mime};base64," + base64.b64encode(fh.read()).decode("ascii")


def chat_messages(q: Query) -> list[dict]:
    """The OpenAI chat messages of one query: the image (data URL) then the question, one user turn."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image_data_url(q.image)}},
                {"type": "text", "text": q.question},
            ],
        }
    ]


def _base(url: str) -> str:
    url = url.rstrip("/")
    for tail in ("/chat/completions", "/v1"):
        if url.endswith(tail):
            url = url[: -len(tail)]
    return url.rstrip("/")


class HttpStatus(OSError):
    """An HTTP error status (``code``) with the start of the server's answer (``detail``)."""

    def __init__(self, code: int, detail: str):
        super().__init__(f"HTTP {code}: {detail}")
        self.code, self.detail = code, detail


def _cut(conn: http.client.HTTPConnection) -> None:
    """The deadline's watchdog: shut the socket down, so that a blocked read returns at once."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(f"{url}: not an http:// or https:// URL")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return kind(parts.hostname, parts.port, timeout=timeout), path


def _read_body(resp: http.client.HTTPResponse, sock, deadline: float, limit: int, url: str) -> bytes:
    """The response body, read in chunks: at most ``limit`` bytes, ``TimeoutError`` past ``deadline``."""
    declared = resp.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise ApiError(f"{url}: the server announces {int(declared)} bytes, over the limit of {limit}")
    chunks, total = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete answer within the deadline ({total} bytes so far)")
        if sock is not None:
            sock.settimeout(left)
        chunk = resp.read1(_CHUNK)
        if not chunk:  # the end, or the watchdog's shutdown at the deadline
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no complete answer within the deadline ({total} bytes so far)")
            if declared is not None and declared.strip().isdigit() and total < int(declared):
                raise http.client.IncompleteRead(b"", int(declared) - total)
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise ApiError(f"{url}: the answer is over the limit of {limit} bytes")
        chunks.append(chunk)


def _http_bytes(url: str, body: dict | None, timeout: float, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """The body of one ``GET`` (``body`` None) or JSON ``POST``, the whole exchange within ``timeout``
    seconds (a deadline, not a per-read timeout) and at most ``limit`` bytes; ``HttpStatus`` for an HTTP
    error status, ``TimeoutError`` past the deadline."""
    deadline = time.monotonic() + timeout
    conn, path = _connection(url, timeout)
    watchdog = threading.Timer(timeout, _cut, (conn,))
    watchdog.daemon = True
    try:
        watchdog.start()
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request("GET" if data is None else "POST", path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = _read_body(resp, conn.sock, deadline, limit, url)
    except (OSError, http.client.HTTPException) as e:
        if isinstance(e, ApiError):
            raise
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no complete answer within {timeout:g} s") from None
        raise
    finally:
        watchdog.cancel()
        conn.close()
    if resp.status >= 400:
        raise HttpStatus(resp.status, raw[:300].decode("utf-8", "replace"))
    return raw


def _http_json(url: str, body: dict | None, timeout: float, limit: int = MAX_RESPONSE_BYTES):
    """:func:`_http_bytes` parsed as JSON (``ApiError`` naming ``url`` and quoting the start if not)."""
    raw = _http_bytes(url, body, timeout, limit)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested past any reply
        raise ApiError(f"{url}: the answer is not JSON: {_quote(raw)}") from None


def _quote(raw, n: int = 120) -> str:
    """The start of a server's answer (bytes or a parsed value), for an error message."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else json.dumps(raw)[: n + 1]
    return repr(text[:n]) + (" ..." if len(text) > n else "")


def server_models(url: str, timeout: float = 10.0) -> list[dict]:
    """``GET {url}/v1/models``'s ``data`` list (``[{"id": ..., "owned_by": ...}, ...]``)."""
    try:
        answer = _http_json(_base(url) + "/v1/models", None, timeout)
    except (OSError, http.client.HTTPException) as e:
        raise ApiError(f"cannot list the models of {url}: {e}") from None
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise ApiError(f"{url}/v1/models: no list of models under 'data': {_quote(answer)}")
    return data


class ApiPredictor:
    """Answers from an OpenAI-compatible server, records as :class:`~text4seg.inference.predict.Predictor`.

    Args:
        url: server root (``http://127.0.0.1:8000``; a trailing ``/v1`` is accepted).
        served_model: the server's model name (None: the server's only model).
        concurrency: requests in flight (>= 1); timeout: seconds per request; retries: extra tries of a
            transient failure; backoff: first back-off in seconds.
        max_new_tokens / max_free_tokens / constrained: as :class:`Predictor`.
        sam: None, a SAM checkpoint path (``sam_type``), a ``Refiner`` or a ``Sam`` model.
        server: ``auto`` | ``swift`` | ``vllm``; structured: ``grammar`` | ``regex`` (vLLM; swift: regex).
        extra: fields copied into every request body (e.g. ``{"seed": 0}``).
        label_bias: a logit bias on each query's label tokens (:mod:`text4seg.inference.bias`), sent as
            vLLM's ``logit_bias`` field (a ``swift deploy`` server has none: an error); ``tokenizer``
            (a ``transformers`` tokenizer, or its folder) names the token ids.
    """

    def __init__(
        self,
        url: str,
        served_model: str | None = None,
        *,
        concurrency: int = 4,
        timeout: float = 300.0,
        retries: int = 3,
        backoff: float = 1.0,
        max_new_tokens: int | None = None,
        max_free_tokens: int | None = 64,
        constrained: bool = False,
        sam=None,
        sam_type: str = "vit_h",
        server: str = "auto",
        structured: str = "grammar",
        extra: dict | None = None,
        log=print,
        label_bias: float | None = None,
        tokenizer=None,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if retries < 0 or not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"need retries >= 0 and timeout > 0, got retries={retries}, timeout={timeout}")
        if server not in SERVERS:
            raise ValueError(f"server must be one of {SERVERS}, got {server!r}")
        if structured not in STRUCTURED:
            raise ValueError(f"structured must be one of {STRUCTURED}, got {structured!r}")
        self.url = _base(url)
        self.concurrency, self.timeout, self.retries, self.backoff = (
            int(concurrency),
            timeout,
            retries,
            backoff,
        )
        self.max_new_tokens, self.max_free_tokens = max_new_tokens, max_free_tokens
        self.constrained = constrained
        self.structured = structured
        self.extra = dict(extra or {})
        self.log = log
        self._served, self._server = served_model, server
        self.refiner = None
        if sam is not None:
            from text4seg.inference.refine import load_refiner

            self.refiner = load_refiner(sam, sam_type)
        self._caveat_said = False
        self.label_bias, self._label_tokens = label_bias, None
        if label_bias:
            if server == "swift":
                raise ValueError(SWIFT_NO_BIAS.format(bias=label_bias, url=self.url))
            if tokenizer is None:
                raise ValueError(f"label bias {label_bias:g}: give the tokenizer that names the label tokens")
            from text4seg.inference.bias import LabelTokens, load_tokenizer  # (transformers: lazily)

            if isinstance(tokenizer, (str, os.PathLike)):
                tokenizer = load_tokenizer(tokenizer)
            self._label_tokens = LabelTokens(tokenizer)
        self.cut_answers = 0  # answers longer than their query's answer_cap, cut there

    # ------------------------------------------------------------------------------------ server
    def _resolve(self) -> None:
        if self._served is not None and self._server != "auto":
            return
        models = server_models(self.url, min(self.timeout, 30.0))
        if self._served is None:
            if len(models) != 1:
                names = [m.get("id") for m in models]
                raise ValueError(f"{self.url} serves {names}: name one with --served-model")
            if not isinstance(models[0].get("id"), (str, int)):
                raise ApiError(f"{self.url}/v1/models: the model has no 'id': {_quote(models[0])}")
            self._served = str(models[0]["id"])
        if self._server == "auto":
            owner = next((m.get("owned_by") for m in models if m.get("id") == self._served), None)
            self._server = "swift" if owner == "swift" else "vllm"

    @property
    def served_model(self) -> str:
        self._resolve()
        return str(self._served)

    @property
    def server(self) -> str:
        self._resolve()
        return self._server

    def budget(self, q: Query) -> int:
        """max_tokens of a query: as :meth:`text4seg.inference.predict.Predictor.budget`."""
        if self.max_new_tokens:
            return int(self.max_new_tokens)
        free = 64 if self.max_free_tokens is None else self.max_free_tokens
        if q.task == "multi":  # one block per label (text4seg.descriptors.multi)
            return max_multi_tokens(q.scheme, q.grid, q.labels, free)
        return max_answer_tokens(q.scheme, q.grid, q.labels, free)

    def body(self, q: Query, constrained: bool | None = None) -> dict:
        """The ``/v1/chat/completions`` request body of one query (format: module docstring)."""
        from text4seg.decoding.bodies import swift_deploy_body, vllm_chat_body

        constrained = self.constrained if constrained is None else constrained
        common = dict(max_tokens=self.budget(q), temperature=0, **self.extra)
        if self.label_bias:
            if self.server != "vllm":
                raise ValueError(SWIFT_NO_BIAS.format(bias=self.label_bias, url=self.url))
            ids = self._label_tokens(q.labels)
            if ids:
                common["logit_bias"] = {str(i): float(self.label_bias) for i in ids}
        msgs = chat_messages(q)
        if not constrained:
            return {"model": self.served_model, "messages": msgs, **common}
        if self.server == "vllm" and self.structured == "grammar":
            # the exact grammar (row sums included); an xgrammar-specific form would plug in here
            return vllm_chat_body(self.served_model, msgs, q.scheme, q.grid, q.labels, **common)
        body = swift_deploy_body(self.served_model, msgs, q.scheme, q.grid, q.labels, **common)
        if self.server == "vllm":  # vLLM's own field for the same regex
            body["structured_outputs"] = {"regex": body.pop("structured_outputs_regex")}
        if not self._caveat_said and self.log is not None:
            self.log(f"api: {REGEX_CAVEAT}")
            self._caveat_said = True
        return body

    # ------------------------------------------------------------------------------------ requests
    def ask(self, q: Query, constrained: bool | None = None) -> tuple[str, int | None]:
        """``(answer text, completion tokens or None)`` of one query, retrying transient failures
        (connection errors, the deadline, HTTP 408/429/5xx); an answer of the wrong shape is an
        ``ApiError`` naming the query."""
        body = self.body(q, constrained)
        url = self.url + "/v1/chat/completions"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(30.0, self.backoff * 2 ** (attempt - 1)))
            try:
                resp = _http_json(url, body, self.timeout)
            except ApiError as e:
                raise ApiError(f"{e} (query {q.key})") from None
            except HttpStatus as e:
                if e.code not in TRANSIENT_HTTP:
                    raise ApiError(f"{url}: HTTP {e.code} for query {q.key}: {e.detail}") from None
                last = str(e)
                continue
            except (OSError, http.client.HTTPException) as e:  # refused, reset, the deadline
                last = f"{type(e).__name__}: {e}"
                continue
            return answer_of(resp, f"{url}: query {q.key}")
        raise ApiError(f"{url}: query {q.key} failed after {self.retries + 1} tries: {last}")

    def answer_cap(self, q: Query) -> int:
        """The longest answer kept, in characters: the query's answer bound (a character bound, see
        :func:`~text4seg.descriptors.max_answer_tokens`) with :data:`~text4seg.descriptors.MAX_FREE`
        characters of free text, or :meth:`budget` if larger (an explicit ``max_new_tokens``)."""
        if q.task == "multi":
            bound = max_multi_tokens(q.scheme, q.grid, q.labels, MAX_FREE)
        else:
            bound = max_answer_tokens(q.scheme, q.grid, q.labels, MAX_FREE)
        return max(bound, self.budget(q))

    def cap(self, q: Query, text: str) -> str:
        """``text`` cut at :meth:`answer_cap` (counted in :attr:`cut_answers`)."""
        cap = self.answer_cap(q)
        if len(text) <= cap:
            return text
        self.cut_answers += 1
        return text[:cap]

    def predict(
        self,
        queries: Iterable[Query],
        out_dir: str | os.PathLike | None = None,
        overlays: bool = True,
        constrained: bool | None = None,
    ) -> Iterator[dict]:
        """Yield one result record per query in completion order (at most ``concurrency`` in flight)."""
        constrained = bool(self.constrained if constrained is None else constrained)
        self._resolve()
        pending = iter(list(queries))
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="text4seg-api")
        flying: dict[Future, Query] = {}
        try:
            for q in _take(pending, self.concurrency):
                flying[pool.submit(self.ask, q, constrained)] = q
            while flying:
                done, _ = wait(list(flying), return_when=FIRST_COMPLETED)
                for fut in done:
                    q = flying.pop(fut)
                    text, ntok = fut.result()
                    text = self.cap(q, text)
                    for nxt in _take(pending, 1):
                        flying[pool.submit(self.ask, nxt, constrained)] = nxt
                    yield query_record(q, text, ntok, out_dir, overlays, constrained, self.refiner)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def answer_of(resp, where: str) -> tuple[str, int | None]:
    """``(choices[0].message.content, usage.completion_tokens or None)`` of a chat completion;
    ``ApiError`` naming ``where`` and quoting the answer when it has another shape."""
    try:
        text = resp["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ApiError(f"{where}: no choices[0].message.content in the answer {_quote(resp)}") from None
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ApiError(f"{where}: choices[0].message.content is not a string: {_quote(text)}")
    usage = resp.get("usage")
    ntok = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if ntok is not None and (not isinstance(ntok, int) or isinstance(ntok, bool) or ntok < 0):
        raise ApiError(f"{where}: usage.completion_tokens is not a count: {_quote(ntok)}")
    return text, ntok


def _take(it: Iterator[Query], n: int) -> Sequence[Query]:
    out = []
    for q in it:
        out.append(q)
        if len(out) >= n:
            break
    return out
