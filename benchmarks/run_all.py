"""Run every benchmark once and write ``benchmarks/RESULTS.md``.

Each benchmark script prints its own figures beside their targets; this runner records the machine, the
date, the package versions, the exact command, its wall time and its full output.
Run: ``benchmarks/run_all`` (or ``.venv/bin/python benchmarks/run_all.py [--only codec tokens]``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# name -> arguments (each script prints its figures and the ratio it is judged by)
BENCHMARKS: dict[str, list[str]] = {
    "codec": [],
    "tokens": [],
    "builders": [],
    "inference": [],
    "constrain": [],
    "refer_fixture": [],
    "owndata": [],
    "peer_tokens": [],
    "video_tokens": [],
    "api": [],
}
PACKAGES = (
    "text4seg",
    "numpy",
    "pillow",
    "torch",
    "transformers",
    "ms-swift",
    "segment-anything",
    "pycocotools",
)


def versions() -> str:
    out = []
    for name in PACKAGES:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def machine() -> str:
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            kb = int(next(ln for ln in fh if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average at start {os.getloadavg()[0]:.2f}"
    cpu = platform.processor() or platform.machine()
    return f"{platform.platform()}, {cpu}, {os.cpu_count()} CPUs{mem}{load}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = ap.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT))
    parts = [
        "# text4seg benchmark results",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- python {platform.python_version()}; {versions()}",
        "- written by `benchmarks/run_all`; every figure below is printed by the named command, beside "
        "its target.",
        "",
    ]
    failed = []
    for name in names:
        script = HERE / f"{name}.py"
        cmd = [sys.executable, str(script.relative_to(ROOT)), *BENCHMARKS[name]]
        shown = " ".join([".venv/bin/python", *cmd[1:]])
        print(f"== {shown}", flush=True)
        if not script.exists():
            parts += [f"## {name}", "", f"`{shown}`: script missing", ""]
            failed.append(name)
            continue
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        secs = time.perf_counter() - t0
        output = proc.stdout.strip() or "(no output)"
        print(output, flush=True)
        if proc.returncode:
            failed.append(name)
            output += f"\n\n(exit code {proc.returncode})\n{proc.stderr.strip()[-3000:]}"
        parts += [f"## {name}", "", f"`{shown}` ({secs:.0f} s)", "", "```", output, "```", ""]
    args.out.write_text("\n".join(parts))
    print(f"wrote {args.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
