"""Shared helpers of the hostile-input tests: run a command in a subprocess under a memory limit and check
that it failed with one line naming the culprit, no traceback, nothing written where it should not be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MEM_LIGHT = 4 << 30  # address space of a command that never imports torch
MEM_TORCH = 16 << 30  # torch + ms-swift reserve address space far beyond what they touch
RUNNER = (
    "import resource, sys; lim = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_AS, (lim, lim)); "
    "from text4seg.cli import main; sys.exit(main(sys.argv[2:]))"
)
# the same, with Ctrl-C as in a terminal, printing every thread's stack on SIGUSR1 (diagnosis of a hang).
# SIGINT is set explicitly: a suite started in the background by a shell without job control (`make test &`)
# passes SIGINT ignored to its children, and Python then installs no KeyboardInterrupt handler at all.
RUNNER_DUMPS = (
    "import faulthandler, signal; faulthandler.register(signal.SIGUSR1, all_threads=True); "
    "signal.signal(signal.SIGINT, signal.default_int_handler); " + RUNNER
)


def cli(
    args, cwd: Path, mem: int = MEM_LIGHT, timeout: float = 120, env: dict | None = None, **kw
) -> subprocess.CompletedProcess:
    """Run ``text4seg ARGS`` in a subprocess under an address-space limit ``mem``; ``env`` adds variables."""
    extra = env or {}
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}
    env.pop("TEXT4SEG_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(mem), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def one_line_error(proc: subprocess.CompletedProcess, rc: int, *names: str) -> str:
    """The stderr of a failed command: exit code ``rc``, no traceback, one error line naming ``names``."""
    err = proc.stderr
    assert proc.returncode == rc, (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    lines = [x for x in err.splitlines() if "error:" in x]
    assert len(lines) == 1, err[-2000:]
    for n in names:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def row(rid: str, image: str, h: int = 32, w: int = 48, grid=(4, 4), answer: str | None = None) -> dict:
    """A built (ms-swift) row with a stored ground truth: the whole image is the target."""
    from text4seg.data.rle import mask_to_rle

    msgs = [{"role": "user", "content": "<image>Segment the box."}]
    msgs.append({"role": "assistant", "content": answer or "Sure.\n<seg>" + "box *4\n" * 3 + "box *4</seg>"})
    return {
        "messages": msgs,
        "images": [image],
        "text4seg": {
            "id": rid,
            "task": "res",
            "labels": ["box"],
            "asked": ["box"],
            "grid": list(grid),
            "scheme": "rrle",
            "width": w,
            "height": h,
            "gt": {"masks": [mask_to_rle(np.ones((h, w), bool))], "label_map": "", "classes": []},
        },
    }


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A valid PNG of ``side`` x ``side`` black 1-bit pixels (a decompression bomb): ~50 KB on disk."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    z = zlib.compressobj(9)
    line = b"\0" * (1 + (side + 7) // 8)
    idat = b"".join(z.compress(line) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``, hidden ones included, without following links: relative path ->
    ``("dir",)``, ``("link", target)``, ``("fifo",)``, ``("file", bytes, inode)`` or ``("other",)``."""
    import stat

    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(folder))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            elif stat.S_ISFIFO(st.st_mode):
                out[rel] = ("fifo",)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", p.read_bytes(), st.st_ino)
            else:
                out[rel] = ("other",)
    return out


def evil_model(folder: Path, marker: Path) -> Path:
    """A model folder that ships code (``auto_map`` + a ``.py`` writing ``marker`` when imported)."""
    folder.mkdir(parents=True)
    config = {"model_type": "x", "auto_map": {"AutoConfig": "configuration_x.XConfig"}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_x.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (folder / "adapter_config.json").write_text("{}")
    return folder


class ChatServer:
    """An OpenAI-style chat server on 127.0.0.1 (a daemon thread) answering every POST with
    ``reply(handler)``; ``handler.send(data, ctype, length)`` writes a 200 answer; ``owner``: the
    ``owned_by`` of its one model (``vllm`` or ``swift``); :attr:`bodies`: the request bodies it got. Use
    as a context."""

    def __init__(self, reply, owner: str = "vllm"):
        import contextlib
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, data: bytes, ctype: str = "application/json", length: int | None = None):
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data) if length is None else length))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client may hang up first
                    self.wfile.write(data)

            def do_GET(self):
                self.send(json.dumps({"data": [{"id": "m", "owned_by": owner}]}).encode())

            def do_POST(self):
                outer.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                reply(self)

        outer = self
        self.bodies: list[bytes] = []

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
