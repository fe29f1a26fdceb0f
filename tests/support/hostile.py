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


def cli(args, cwd: Path, mem: int = MEM_LIGHT, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
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
