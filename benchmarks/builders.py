"""Benchmark the REFER builder end to end on a generated REFER-layout fixture and print measured numbers.

    .venv/bin/python benchmarks/builders.py               # 16,700 images, 50,100 refs, 150,300 sentences
    .venv/bin/python benchmarks/builders.py --images 2000 # quicker
    .venv/bin/python benchmarks/builders.py --workers 2

Prints: the fixture size; samples/s of ``build_jsonl("refcoco", ...)`` on the train split end to end (pickle
and instances.json loading, masks, templates, JSON writing; images are touched empty files so the
existence check runs); the share of grid cells where the fast path (sampling the RLE at the PIL-nearest
points) differs from the full-resolution reference path (``pycocotools.mask.decode`` + ``mask_to_grid``)
over ``--check`` refs; and answer-length statistics (characters, Qwen2 tokens).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/support


def grid_difference(root: Path, n_check: int, grid: int, seed: int) -> tuple[int, int]:
    """(differing cells, cells) between the fast and the full-resolution path on ``n_check`` random refs."""
    import json

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=16_700)
    ap.add_argument("--refs-per-image", type=int, default=3)
    ap.add_argument("--sents-per-ref", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--grid", type=int, default=16)
    ap.add_argument("--check", type=int, default=2000, help="refs compared with the full-resolution path")
    ap.add_argument("--keep", type=Path, default=None, help="build the fixture here and keep it")
    args = ap.parse_args()

    from support.fakes import make_refer

    from data_builders import build_jsonl
    from text4seg.data.stats import file_stats, format_stats

    tmp = tempfile.TemporaryDirectory(prefix="t4s_bench_")
    root = args.keep or Path(tmp.name) / "refer"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    t0 = time.perf_counter()
    size = make_refer(root, "refcoco", "unc", n_images=args.images, refs_per_image=args.refs_per_image,
                      sents_per_ref=args.sents_per_ref, splits=("train",), write_images="touch")  # fmt: skip
    gen_s = time.perf_counter() - t0
    mb = sum(f.stat().st_size for f in (root / "refcoco").iterdir()) / 1e6
    print(f"fixture: {size['images']:,} images, {size['refs']:,} refs, {size['sentences']:,} sentences "
          f"(refs pickle + instances.json: {mb:.1f} MB, COCO-like sizes, polygons + crowd RLE), "
          f"generated in {gen_s:.1f} s")  # fmt: skip

    out = Path(tmp.name) / "train.jsonl"
    cpu0 = time.process_time()
    # skip_bad: samples whose target would be lost on the grid are dropped and counted (the safe default
    # without it fails the build after counting them)
    report = build_jsonl("refcoco", out, root=root, split="train", grid=args.grid, workers=args.workers,
                         stats=False, skip_bad=True)  # fmt: skip
    print(f"build: {report['samples']:,} samples in {report['seconds']:.2f} s end to end "
          f"(loading {report['load_s']:.2f} s), workers={args.workers}: "
          f"{report['samples_per_s']:,.0f} samples/s; output {out.stat().st_size / 1e6:.0f} MB")  # fmt: skip
    t = report["targets"]
    print(f"targets: {t['empty_target']} empty_target, {t['lost_on_grid']} lost_on_grid, "
          f"{t['dropped']} dropped; "
          f"skipped bad: {report['skipped_bad']}")  # fmt: skip
    if args.workers == 1:  # the machine may be shared: CPU time of this process says what one idle core does
        cpu = time.process_time() - cpu0
        print(f"build CPU time: {cpu:.2f} s = {report['samples'] / cpu:,.0f} samples per CPU-second")

    diff, cells = grid_difference(root, args.check, args.grid, seed=0)
    print(f"fast path vs full-resolution reference on {args.check} refs: {diff} of {cells:,} cells differ "
          f"({diff / max(cells, 1):.4%})")  # fmt: skip

    t0 = time.perf_counter()
    stats = file_stats(str(out))
    print(f"answer lengths ({time.perf_counter() - t0:.1f} s):\n{format_stats(stats)}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
