"""Benchmark the REFER builder end to end on a generated REFER-layout fixture and print measured numbers.

    .venv/bin/python benchmarks/builders.py               # 16,700 images, 50,100 refs, 150,300 sentences
    .venv/bin/python benchmarks/builders.py --images 2000 # quicker
    .venv/bin/python benchmarks/builders.py --workers 2
    # interleaved rounds against other checkouts (git worktrees), ratio and spread against the target:
    git worktree add /tmp/old 97aa6ba   # the refCOCO builder's first version
    .venv/bin/python benchmarks/builders.py --compare /tmp/old --rounds 5

Prints: the fixture size; samples/s of ``build_jsonl("refcoco", ...)`` on the train split end to end (pickle
and instances.json loading, header checks, masks, templates, JSON writing); the fixture's images are real
PNG files of the sizes ``instances.json`` claims (one file per size, hard-linked under every image's name),
so the header check passes and is timed (``--no-check-images`` times the build without it as well); the
share of grid cells where the fast path (sampling the RLE at the PIL-nearest points) differs from the
full-resolution reference path (``pycocotools.mask.decode`` + ``mask_to_grid``) over ``--check`` refs; and
answer-length statistics (characters, Qwen2 tokens).

``--compare TREE...``: each round builds the same fixture once with every side (this checkout first, then
each TREE, a checkout of another commit imported from that folder), each in its own fresh process, in
rotating order so machine load falls on every side alike; prints per side the samples/s of every round,
whether every side's output is byte-identical to this checkout's (if not: how many rows with a common id
are equal once fields only one side writes are left out), and the samples/s ratio this checkout / TREE
(median of the per-round ratios, with min-max) by wall clock and per CPU-second, against ``--target``.
With ``--no-check-images`` this checkout also runs as a side without header checks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "tests"))  # tests/support

# one build in a fresh interpreter, importing data_builders from argv[1]; prints one JSON line
SIDE = """
import hashlib, json, sys, time
sys.path.insert(0, sys.argv[1])
from data_builders import build_jsonl
opts = {} if sys.argv[4] == "1" else {"check_images": False}
cpu = time.process_time()
r = build_jsonl("refcoco", sys.argv[3], root=sys.argv[2], split="train", grid=16, workers=1, stats=False,
                skip_bad=True, **({"options": opts} if opts else {}))
cpu = time.process_time() - cpu
h = hashlib.sha256(open(sys.argv[3], "rb").read()).hexdigest()
print(json.dumps({"samples": r["samples"], "seconds": r["seconds"], "cpu": cpu, "sha256": h,
                  "file": sys.argv[3]}))
"""


def real_images(root: Path) -> int:
    """Replace the fixture's images with real PNGs of the size ``instances.json`` claims for each (one file
    per distinct size, hard-linked under every name: regular files, header checks pass); returns the count
    of distinct sizes."""
    from PIL import Image

    inst = json.loads((root / "refcoco" / "instances.json").read_text())
    img_dir = root / "images/mscoco/images/train2014"
    by_size: dict[tuple[int, int], Path] = {}
    for im in inst["images"]:
        size = (int(im["width"]), int(im["height"]))
        path = img_dir / im["file_name"]
        path.unlink(missing_ok=True)
        if size not in by_size:
            by_size[size] = root / f"size_{size[0]}x{size[1]}.png"
            Image.new("RGB", size, (90, 120, 150)).save(by_size[size])
        os.link(by_size[size], path)
    return len(by_size)


def grid_difference(root: Path, n_check: int, grid: int, seed: int) -> tuple[int, int]:
    """(differing cells, cells) between the fast and the full-resolution path on ``n_check`` random refs."""
    import numpy as np
    from pycocotools import mask as mu

    from data_builders.coco import rle_of_segmentations, sample_rle
    from text4seg.descriptors import mask_to_grid

    inst = json.loads((root / "refcoco" / "instances.json").read_text())
    images = {im["id"]: im for im in inst["images"]}
    anns = inst["annotations"]
    rng = random.Random(seed)
    diff = cells = 0
    for a in rng.sample(anns, min(n_check, len(anns))):
        im = images[a["image_id"]]
        h, w = im["height"], im["width"]
        rle = rle_of_segmentations([a["segmentation"]], h, w)
        fast = sample_rle(rle, grid, grid)
        full = mask_to_grid(mu.decode(rle).astype(bool), grid) != "others"
        diff += int(np.count_nonzero(fast != full))
        cells += fast.size
    return diff, cells


def load() -> str:
    """``uptime``'s load averages (1, 5, 15 min)."""
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def run_side(tree: Path, root: Path, out: Path, check_images: bool) -> dict:
    """One build of the fixture by the checkout at ``tree`` in a fresh interpreter."""
    cmd = [sys.executable, "-c", SIDE, str(tree), str(root), str(out), "1" if check_images else "0"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    if proc.returncode:
        raise SystemExit(f"build with {tree} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def same_rows(path_a: str, path_b: str) -> str:
    """How many rows with a common id are equal once fields that only one side writes are left out."""

    def rows(path: str) -> dict:
        with open(path, encoding="utf-8") as fh:
            return {r["text4seg"]["id"]: r for r in map(json.loads, fh)}

    a, b = rows(path_a), rows(path_b)
    common = a.keys() & b.keys()
    equal = 0
    for sid in common:
        ra, rb = a[sid], b[sid]
        ta, tb = ra["text4seg"], rb["text4seg"]
        keys = ta.keys() & tb.keys()
        equal += {**ra, "text4seg": {k: ta[k] for k in keys}} == {**rb, "text4seg": {k: tb[k] for k in keys}}
    only = sorted((ta.keys() ^ tb.keys()) if common else ())
    return (f"{equal:,} of {len(common):,} common rows equal leaving out {only or 'nothing'}; "
            f"{len(a) - len(common)} rows only here, {len(b) - len(common)} only there")  # fmt: skip


def compare(root: Path, trees: list[Path], rounds: int, target: float, unchecked: bool) -> int:
    """Interleaved rounds: every side builds the fixture once per round, in rotating order. Sides: this
    checkout (header checks on), this checkout without header checks (``unchecked``), each TREE."""
    sides = [("this checkout", HERE, True)]
    sides += [("this checkout, check_images=false", HERE, False)] if unchecked else []
    sides += [(str(t), t, True) for t in trees]
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in sides}
    with tempfile.TemporaryDirectory(prefix="t4s_cmp_") as d:
        for k in range(rounds):
            order = sides[k % len(sides) :] + sides[: k % len(sides)]
            for name, tree, check in order:
                out = Path(d) / f"side{[s[0] for s in sides].index(name)}.jsonl"
                runs[name].append(run_side(tree, root, out, check))
            last = {name: rs[-1]["samples"] / rs[-1]["seconds"] for name, rs in runs.items()}
            rates = ", ".join(f"{name}: {v:,.0f}/s" for name, v in last.items())
            print(f"round {k + 1}/{rounds}: {rates} ({load()})", flush=True)
        here = runs[sides[0][0]]
        ok = True
        for name, _, _ in sides:
            rs = runs[name]
            rate = [r["samples"] / r["seconds"] for r in rs]
            cpu = [r["samples"] / r["cpu"] for r in rs]
            same = {r["sha256"] for r in rs} == {here[0]["sha256"]}
            verdict = "byte-identical to this checkout" if same else "DIFFERS from this checkout"
            print(
                f"{name}: {rs[0]['samples']:,} samples, samples/s {spread(rate)}, "
                f"per CPU-second {spread(cpu)}, output {verdict} (sha256 {rs[0]['sha256'][:12]})"
            )
            if name == sides[0][0]:
                continue
            if not same:
                print(f"  {same_rows(here[-1]['file'], rs[-1]['file'])}")
            wall = [(a["samples"] / a["seconds"]) / (b["samples"] / b["seconds"]) for a, b in zip(here, rs)]
            cpu_r = [(a["samples"] / a["cpu"]) / (b["samples"] / b["cpu"]) for a, b in zip(here, rs)]
            met = statistics.median(wall) >= target
            ok &= met
            print(f"  samples/s ratio this checkout / {name}: wall {spread(wall)}, per CPU-second "
                  f"{spread(cpu_r)}; target >= {target:.2f}: {'met' if met else 'NOT met'}")  # fmt: skip
    return 0 if ok else 1


def families(images: int, top: int) -> None:
    """The same profile for the other builder families: coco-format (referring), semantic (ADE20K layout)
    and video (MeViS layout, ``--repeat`` passes over one clip): samples/s with and without header checks,
    then the ``top`` functions by own time under cProfile, as shares of the build."""
    import cProfile
    import pstats

    from support import video
    from support.fakes import make_semantic
    from support.owndata import make_coco_format

    from data_builders import build_jsonl

    with tempfile.TemporaryDirectory(prefix="t4s_fam_") as d:
        d = Path(d)
        make_coco_format(d / "cf", n_images=images, size=(240, 320))
        make_semantic(d / "sem", "ade20k", n_images=images, size=(240, 320))
        vroot = video.write_mevis(d / "mevis", "train")
        ann = {"ann": str(d / "cf" / "instances.json")}
        cases = [
            ("coco-format", dict(root=d / "cf" / "images", split="train", options=ann)),
            ("ade20k", dict(root=d / "sem", split="training")),
            ("mevis", dict(root=vroot, split="train", repeat=max(1, images // 2))),
        ]
        for name, kw in cases:
            for check in (True, False):
                opts = {**kw.get("options", {}), "check_images": check}
                if name == "mevis" and not check:
                    continue  # the video builders read frame sizes from the frames themselves
                kw2 = {**kw, "options": opts if name != "mevis" else kw.get("options", {})}
                r = build_jsonl(name, d / f"{name}.jsonl", stats=False, skip_bad=True, **kw2)
                print(f"{name} (check_images={check}): {r['samples']:,} samples, "
                      f"{r['samples_per_s']:,.0f} samples/s ({load()})")  # fmt: skip
            prof = cProfile.Profile()
            prof.enable()
            build_jsonl(name, d / f"{name}.jsonl", stats=False, skip_bad=True, **kw2)
            prof.disable()
            st = pstats.Stats(prof)
            total = sum(v[2] for v in st.stats.values())
            rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]
            for (file, line, fn), v in rows:
                where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
                print(f"    {v[2] / total:6.1%}  {fn} ({where}), {v[1]:,} calls")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16_700)
    ap.add_argument("--refs-per-image", type=int, default=3)
    ap.add_argument("--sents-per-ref", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--grid", type=int, default=16)
    ap.add_argument("--check", type=int, default=2000, help="refs compared with the full-resolution path")
    ap.add_argument("--keep", type=Path, default=None, help="build the fixture here and keep it")
    ap.add_argument(
        "--no-check-images", action="store_true", help="also time this checkout without header checks"
    )
    ap.add_argument("--compare", type=Path, nargs="+", default=None, metavar="TREE",
                    help="interleaved rounds against these checkouts")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--families", action="store_true", help="profile coco-format, semantic and video builds")
    ap.add_argument("--top", type=int, default=8, help="functions listed per family profile")
    ap.add_argument("--target", type=float, default=1.0, help="ratio this checkout / TREE to reach")
    args = ap.parse_args()

    if args.families:
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {load()}")
        families(args.images if args.images != ap.get_default("images") else 300, args.top)
        return 0
    from support.fakes import make_refer

    tmp = tempfile.TemporaryDirectory(prefix="t4s_bench_")
    root = args.keep or Path(tmp.name) / "refer"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {load()}")
    t0 = time.perf_counter()
    size = make_refer(root, "refcoco", "unc", n_images=args.images, refs_per_image=args.refs_per_image,
                      sents_per_ref=args.sents_per_ref, splits=("train",), write_images="touch")  # fmt: skip
    n_sizes = real_images(root)
    gen_s = time.perf_counter() - t0
    mb = sum(f.stat().st_size for f in (root / "refcoco").iterdir()) / 1e6
    print(f"fixture: {size['images']:,} images ({n_sizes} sizes, real PNG headers), {size['refs']:,} refs, "
          f"{size['sentences']:,} sentences (refs pickle + instances.json: {mb:.1f} MB, COCO-like sizes, "
          f"polygons + crowd RLE), generated in {gen_s:.1f} s")  # fmt: skip
    if args.compare:
        code = compare(root, args.compare, args.rounds, args.target, args.no_check_images)
        tmp.cleanup()
        return code

    out = Path(tmp.name) / "train.jsonl"
    for check_images in (True, False) if args.no_check_images else (True,):
        build(root, out, args, check_images)

    diff, cells = grid_difference(root, args.check, args.grid, seed=0)
    print(f"fast path vs full-resolution reference on {args.check} refs: {diff} of {cells:,} cells differ "
          f"({diff / max(cells, 1):.4%})")  # fmt: skip

    from text4seg.data.stats import file_stats, format_stats

    t0 = time.perf_counter()
    stats = file_stats(str(out))
    print(f"answer lengths ({time.perf_counter() - t0:.1f} s):\n{format_stats(stats)}")
    tmp.cleanup()
    return 0


def build(root: Path, out: Path, args: argparse.Namespace, check_images: bool) -> None:
    """One in-process build of the fixture, its figures printed."""
    from data_builders import build_jsonl

    cpu0 = time.process_time()
    # skip_bad: samples whose target would be lost on the grid are dropped and counted (the safe default
    # without it fails the build after counting them)
    report = build_jsonl("refcoco", out, root=root, split="train", grid=args.grid, workers=args.workers,
                         stats=False, skip_bad=True, options={"check_images": check_images})  # fmt: skip
    print(f"build (check_images={check_images}): {report['samples']:,} samples in {report['seconds']:.2f} s "
          f"end to end (loading {report['load_s']:.2f} s), workers={args.workers}: "
          f"{report['samples_per_s']:,.0f} samples/s; output {out.stat().st_size / 1e6:.0f} MB; "
          f"{load()}")  # fmt: skip
    t = report["targets"]
    print(f"targets: {t['empty_target']} empty_target, {t['lost_on_grid']} lost_on_grid, "
          f"{t['dropped']} dropped; skipped bad: {report['skipped_bad']}")  # fmt: skip
    if args.workers == 1:  # the machine may be shared: CPU time of this process says what one idle core does
        cpu = time.process_time() - cpu0
        print(f"build CPU time: {cpu:.2f} s = {report['samples'] / cpu:,.0f} samples per CPU-second")


if __name__ == "__main__":
    sys.exit(main())
