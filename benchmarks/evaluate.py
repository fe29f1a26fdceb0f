"""``text4seg evaluate`` in bounded memory: peak RSS and ms per record at 10k, 100k and 1M records.

Generates N synthetic built rows (referring, one COCO RLE mask each, ``--height x --width`` images) and N
result records (a 16x16 R-RLE answer, the coarse mask, and a SAM-refined mask on every other record),
runs ``text4seg evaluate`` on them in a subprocess and reads the child's peak RSS
(``resource``/``os.wait4``) and wall time. The same files are scored by the version before the
streaming change (a ``git worktree`` of ``--base`` under /tmp, run with the same interpreter), so the
ratios are measured in one run on one machine; its ``metrics.json`` must equal the new one.

Targets (issue 31 item 2): peak RSS flat within +100 MB from the smallest to the largest size, and >= 2x
fewer ms per record than the version before. ms per record = wall time of the whole command / N (the
~0.5 s start-up included, so the smallest size reads a little high); CPU ms per record = the child's
user + system time / N, the figure a machine loaded by other work does not inflate (wall time does).
``--rounds k`` runs each side k times, interleaved, and keeps the best of each.

Run: ``.venv/bin/python benchmarks/evaluate.py`` (sizes 10k,100k,1M; the version before runs up to
``--base-max``, 100k by default: it needs ~8 GB and ~20 min at 1M). ``--sizes 10000,100000,300000`` on a
loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASE = "2099e61"  # the commit before the streaming evaluate (issue 31 item 2)
RUNNER = "import sys; from text4seg.cli import main; sys.exit(main(sys.argv[1:]))"
VARIANTS = 64


def _variants(h: int, w: int, seed: int = 0) -> list[tuple[str, str]]:
    """``VARIANTS`` (GT row, result record) JSON templates, ``@ID@`` where the id goes."""
    from text4seg import encode, mask_to_grid, wrap
    from text4seg.data.results import answer_to_masks, make_record
    from text4seg.data.rle import mask_to_rle

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = []
    for k in range(VARIANTS):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(h / 10, h / 2), rng.uniform(w / 10, w / 2)
        gt = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        if k % 16 == 15:
            gt[:] = False  # a no-target sample
        shifted = np.roll(gt, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
        answer = "Sure.\n" + wrap(encode(mask_to_grid(shifted, 16, labels="thing")))
        masks = answer_to_masks(answer, h, w, 16, "rrle")
        refined = shifted.astype(np.int32) if k % 2 else None
        rec = make_record(
            id="@ID@", turn=0, image="images/x.png", query="Segment the thing.", labels=["thing"],
            answer=answer, scheme="rrle", grid=(16, 16), masks=masks, refined_map=refined,
            num_tokens=int(rng.integers(20, 200)),
        )  # fmt: skip
        row = {
            "messages": [
                {"role": "user", "content": "<image>Segment the thing."},
                {"role": "assistant", "content": answer},
            ],
            "images": ["images/x.png"],
            "text4seg": {
                "id": "@ID@", "task": "res", "labels": ["thing"], "grid": [16, 16], "scheme": "rrle",
                "width": w, "height": h, "source": {"dataset": "synthetic"},
                "gt": {"masks": [mask_to_rle(gt)], "label_map": "", "classes": [], "ignore": [], "boxes": []},
            },
        }  # fmt: skip
        out.append((json.dumps(row), json.dumps(rec.to_json())))
    return out


def generate(folder: Path, n: int, h: int, w: int) -> tuple[Path, Path]:
    """``gt.jsonl`` and ``results.jsonl`` of ``n`` records under ``folder`` (records in a shuffled order)."""
    folder.mkdir(parents=True, exist_ok=True)
    gt, res = folder / "gt.jsonl", folder / "results.jsonl"
    variants = _variants(h, w)
    order = np.random.default_rng(1).permutation(n)
    with open(gt, "w") as fg:
        for i in range(n):
            fg.write(variants[i % VARIANTS][0].replace("@ID@", f"s{i:07d}") + "\n")
    with open(res, "w") as fr:
        for i in order:
            fr.write(variants[i % VARIANTS][1].replace("@ID@", f"s{i:07d}") + "\n")
    return gt, res


def run_evaluate(src: Path, gt: Path, res: Path, out: Path) -> tuple[float, float, float]:
    """``(wall seconds, peak RSS MB, CPU seconds)`` of ``text4seg evaluate`` run from the source tree
    ``src`` (CPU: the child's user + system time, what a loaded machine does not inflate)."""
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    args = ["--pred", str(res), "--gt", str(gt), "--out", str(out), "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, "evaluate", *args], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, cwd=src,
    )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):  # 1: the match verdict (not a failure of evaluate)
        raise SystemExit(f"evaluate failed ({src}): rc {proc.returncode}\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def base_tree(commit: str) -> Path:
    """A git worktree of ``commit`` under /tmp (made once, reused); a folder holding a source tree
    (``text4seg/``) is used as it is."""
    if (Path(commit) / "text4seg").is_dir():
        return Path(commit)
    path = Path(tempfile.gettempdir()) / f"text4seg-evaluate-base-{commit}"
    if not (path / "text4seg").is_dir():
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit],
            check=True, capture_output=True,
        )  # fmt: skip
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="record counts, comma separated")
    ap.add_argument("--base", default=BASE, help="the commit compared against, or a source tree of it")
    ap.add_argument("--base-max", type=int, default=100_000, help="largest size the version before runs")
    ap.add_argument("--height", type=int, default=32)
    ap.add_argument("--width", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=1, help="interleaved runs of each side (best kept)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the generated files in this folder")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    base = base_tree(a.base) if a.base_max > 0 else None
    work = a.keep or Path(tempfile.mkdtemp(prefix="text4seg-evaluate-bench-"))
    print(f"evaluate benchmark: referring records of {a.height}x{a.width}, 16x16 R-RLE, refined on half")
    head = ("records", 9), ("new MB", 7), ("new ms/rec", 11), ("cpu", 6), ("base MB", 8), ("base ms/rec", 12)
    head += (("cpu", 6), ("wall x", 7), ("cpu x", 7))
    print(" ".join(f"{name:>{width}}" for name, width in head))
    rows = []
    try:
        for n in sizes:
            folder = work / str(n)
            gt, res = generate(folder, n, a.height, a.width)
            compare = base is not None and n <= a.base_max
            new, old = [], []
            for _ in range(a.rounds):  # interleaved: new, base, new, base, ...; the best of each kept
                new.append(run_evaluate(REPO, gt, res, folder / "new"))
                if compare:
                    old.append(run_evaluate(base, gt, res, folder / "base"))
            wall, rss, cpu = min(r[0] for r in new), max(r[1] for r in new), min(r[2] for r in new)
            line = f"{n:>9} {rss:>7.0f} {1000 * wall / n:>11.3f} {1000 * cpu / n:>6.3f}"
            if compare:
                bwall, brss, bcpu = min(r[0] for r in old), max(r[1] for r in old), min(r[2] for r in old)
                same = json.loads((folder / "new/metrics.json").read_text()) == json.loads(
                    (folder / "base/metrics.json").read_text()
                )
                line += f" {brss:>8.0f} {1000 * bwall / n:>12.3f} {1000 * bcpu / n:>6.3f}"
                line += f" {bwall / wall:>6.2f}x {bcpu / cpu:>6.2f}x"
                line += "" if same else "  METRICS DIFFER"
                rows.append((n, rss, wall, brss, bwall, same, cpu, bcpu))
            else:
                rows.append((n, rss, wall, None, None, True, cpu, None))
            print(line, flush=True)
            if a.keep is None:
                shutil.rmtree(folder)
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    growth = rows[-1][1] - rows[0][1]
    print(
        f"peak RSS {rows[0][0]} -> {rows[-1][0]} records: +{growth:.0f} MB "
        f"(target <= +100 MB): {'met' if growth <= 100 else 'NOT met'}"
    )
    compared = [r for r in rows if r[3] is not None]
    if compared:
        speed, cpu_speed = compared[-1][4] / compared[-1][2], compared[-1][7] / compared[-1][6]
        print(
            f"ms per record at {compared[-1][0]}: {speed:.2f}x fewer wall, {cpu_speed:.2f}x fewer CPU than "
            f"{a.base} (target >= 2x): {'met' if min(speed, cpu_speed) >= 2 else 'NOT met'}; "
            f"metrics.json identical: {all(r[5] for r in compared)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
