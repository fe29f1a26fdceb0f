"""JSONL and JSON files read and written safely: bounded lines, strict JSON, atomic writes.

Every reader of a data file, a results file or a settings file goes through here, so a hostile file is
refused the same way everywhere, in one line naming the file and line (never a traceback):

* :func:`iter_lines` streams ``(line number, raw bytes)`` with a bound on one line (:data:`MAX_LINE_BYTES`,
  environment variable ``TEXT4SEG_MAX_LINE_BYTES``): a 5 GB file with no newline is an error, not 5 GB of
  memory; a FIFO or a folder is refused before it is opened.
* :func:`parse_line` parses one line as strict JSON (one shared decoder): no ``NaN``/``Infinity``, no
  nesting deeper than the parser allows, no BOM, one object per line;
  :func:`iter_jsonl`/:func:`read_jsonl` do both for a whole file; :func:`read_json_object` reads one
  settings file (``args.json``, ``text4seg.json``) of at most :data:`MAX_DOCUMENT_BYTES`.
* :func:`atomic_path` and :class:`AtomicWriter` write a file whole or not at all: into a temporary file
  beside it, renamed over it on success (never written through a link), removed on any exception,
  Ctrl-C or SIGTERM.
* :func:`quote` cuts a quoted value in an error line to :data:`QUOTE_CHARS` characters.

Example: ``for n, row in iter_jsonl("built/val.jsonl"): ...`` yields ``(line number, dict)``; a line
``{"a": NaN}`` raises ``ValueError("built/val.jsonl:3: not valid JSON (NaN is not allowed ...)")``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from text4seg.data.images import check_regular_file


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write (any writer: PIL, bytes, ...); renamed onto ``path`` when the
    block ends, removed on any failure (Ctrl-C included): ``path`` is always absent, old or complete.

    >>> with atomic_path("mask.png") as tmp:      # doctest: +SKIP
    ...     Image.fromarray(a).save(tmp, format="PNG")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class AtomicWriter:
    """Write lines to ``path`` through a temporary file in the same folder, renamed on :meth:`commit`.

    Use as a context manager; leaving the block with an exception removes the temporary file, so the
    target is never half-written.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self.tmp = Path(tmp)
        try:
            self.fh = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise
        self.count = 0

    def write(self, line: str) -> None:
        self.fh.write(line)
        self.fh.write("\n")
        self.count += 1

    def commit(self) -> None:
        """Close and rename onto ``path``; on any failure (a full disk at the last flush, a signal) the
        temporary file is removed and ``path`` keeps its old content."""
        try:
            self.fh.close()
            os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
            os.replace(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        """Close and remove the temporary file (``path`` is left as it was)."""
        try:
            self.fh.close()
        except OSError:
            pass  # a flush that fails (disk full) must not keep the temporary file
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:  # any BaseException: an error, Ctrl-C, SIGTERM turned into KeyboardInterrupt, SystemExit
            self.abort()


MAX_LINE_BYTES = int(os.environ.get("TEXT4SEG_MAX_LINE_BYTES") or 64 << 20)  # bytes per JSONL line
QUOTE_CHARS = 200  # a value quoted in an error message is cut to this many characters


def quote(value, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` marks the cut): error lines stay short whatever
    a hostile file holds. Large containers are cut before ``repr`` builds their whole text."""
    if isinstance(value, (list, tuple)) and len(value) > limit:
        value = type(value)(value[:limit])
    elif isinstance(value, dict) and len(value) > limit:
        value = dict(list(value.items())[:limit])
    elif isinstance(value, (str, bytes)) and len(value) > limit:
        value = value[: limit + 1]
    try:
        text = repr(value)
    except RecursionError:
        text = f"<a {type(value).__name__} nested too deep to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def iter_lines(path: str | os.PathLike, limit: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw_bytes)`` of a file, newline kept, blank lines included, streaming with
    bounded memory: a line longer than ``limit`` bytes (default :data:`MAX_LINE_BYTES`, environment
    variable ``TEXT4SEG_MAX_LINE_BYTES``) raises ``ValueError`` naming the file and line; a missing file or
    a folder raises ``OSError`` naming it."""
    limit = MAX_LINE_BYTES if limit is None else limit
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; expected a JSONL file")
    check_regular_file(path, "file")
    with open(path, "rb") as fh:
        n = 0
        while True:
            raw = fh.readline(limit + 1)  # bounded: never more than limit + 1 bytes in memory
            if not raw:
                return
            n += 1
            if len(raw) > limit and not (len(raw) == limit + 1 and raw.endswith(b"\n")):
                raise ValueError(
                    f"{path}:{n}: line longer than {limit} bytes (not a JSONL row; "
                    "raise TEXT4SEG_MAX_LINE_BYTES if it is one)"
                )
            yield n, raw


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


# One strict decoder for every line (``json.loads`` builds a new one per call when given ``parse_constant``);
# ``json.loads`` itself shares its default decoder across threads the same way: the C scanner keeps no state
# between calls but its key-interning memo.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_decode = _DECODER.decode  # leading/trailing JSON whitespace skipped, "Extra data" after the value


def parse_line(raw: bytes | str, path: str | os.PathLike, n: int) -> dict | None:
    """One JSONL line as a dict (``None`` for a blank line). ``ValueError`` naming ``path:n`` for bytes that
    are not UTF-8, text that is not strict JSON (``NaN``/``Infinity`` included), nesting deeper than the
    parser handles, or a JSON value that is not an object."""
    if isinstance(raw, bytes):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"{path}:{n}: not UTF-8 text (byte {raw[exc.start]:#04x} at {exc.start})"
            ) from None
    else:
        line = raw
    if not line or line.isspace():  # blank (``not line.strip()`` without copying the line)
        return None
    try:
        if line[0] == "\ufeff":  # json.loads refuses a BOM with this message
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", line, 0)
        row = _decode(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError(f"{path}:{n}: JSON nested too deep (not a JSONL row)") from None
    except ValueError as exc:  # parse_constant: NaN, Infinity, -Infinity
        raise ValueError(f"{path}:{n}: not valid JSON ({exc}; write null or a number)") from None
    if not isinstance(row, dict):
        raise ValueError(f"{path}:{n}: a JSON {type(row).__name__}, expected an object {{...}}")
    return row


MAX_DOCUMENT_BYTES = 16 << 20  # a JSON settings file (args.json, a config): larger is not one


def read_json_object(path: str | os.PathLike, max_bytes: int = MAX_DOCUMENT_BYTES) -> dict:
    """A small JSON document (``args.json``, a config) that must be an object, read strictly: a regular
    file of at most ``max_bytes``, UTF-8, no ``NaN``/``Infinity``, bounded nesting; ``ValueError`` or
    ``OSError`` naming the file otherwise."""
    check_regular_file(path, "file")
    with open(path, "rb") as fh:
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ValueError(f"{path}: over {max_bytes} bytes; not a settings file")
    row = parse_line(raw.replace(b"\n", b" ").replace(b"\r", b" "), path, 1)
    if row is None:
        raise ValueError(f"{path}: empty; expected a JSON object")
    return row


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, row)`` of a JSONL file (blank lines skipped), streaming in bounded memory.
    ``ValueError`` names the file and line of a line that is too long (:func:`iter_lines`), not UTF-8, not
    strict JSON, too deeply nested or not a JSON object (:func:`parse_line`); ``OSError`` names a missing
    file or a folder."""
    for n, raw in iter_lines(path):
        row = parse_line(raw, path, n)
        if row is not None:
            yield n, row


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the rows of a JSONL file; a bad line raises ``ValueError`` naming the file and line."""
    for _, row in iter_jsonl(path):
        yield row


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"2/8" -> (2, 8)``; ``None -> (0, 1)``. Raises ``ValueError`` naming the bad value."""
    if shard is None:
        return 0, 1
    if isinstance(shard, str):
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ValueError(f"--shard must look like i/N (e.g. 0/4), got {shard!r}") from None
    else:
        i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard i/N needs 0 <= i < N, got {i}/{n}")
    return i, n
