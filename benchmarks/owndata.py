"""Benchmark the own-data builders on generated fixtures in their native layouts and print measured numbers.

    .venv/bin/python benchmarks/owndata.py                 # 300 images per builder, 48 x 64
    .venv/bin/python benchmarks/owndata.py --images 100 --size 120x160

Prints, per builder and task: samples, samples/s of ``build_jsonl`` end to end (parsing, rasterising,
RLE, templates, JSON writing; ``--no-gt`` train split, so no label-map PNGs are written), targets per
sample, empty targets, and mean/p95 Qwen2 tokens per answer for the ``rrle`` and ``compact`` schemes
(the real tokenizer, ``text4seg.data.tokens``). Also the time of ``text4seg mix`` over the built files.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/support


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument(
        "--size", default="48x64", help="image height x width (48x64: the fixtures' native geometry)"
    )
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))

    from support.owndata import make_coco_format, make_labelme, make_mask_folder

    from data_builders import build_jsonl
    from text4seg.data.mix import mix_jsonl
    from text4seg.data.stats import target_summary

    print(f"python {platform.python_version()}, {platform.machine()}, workers {args.workers}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        make_coco_format(tmp / "coco", n_images=args.images, size=(h, w))
        make_labelme(tmp / "labelme", n_images=args.images, size=(h, w))
        make_mask_folder(tmp / "mf", size=(h, w), copies=max(1, args.images // 3))
        print(f"fixtures: {args.images} images each, {h}x{w}, written in {time.perf_counter() - t0:.1f} s")
        cases = [
            (
                "coco-format",
                "referring",
                tmp / "coco" / "images",
                {"ann": str(tmp / "coco" / "instances.json")},
            ),
            (
                "coco-format",
                "semantic",
                tmp / "coco" / "images",
                {"ann": str(tmp / "coco" / "instances.json")},
            ),
            (
                "coco-format",
                "instance",
                tmp / "coco" / "images",
                {"ann": str(tmp / "coco" / "instances.json")},
            ),
            ("labelme", "referring", tmp / "labelme", {}),
            ("mask-folder", "referring", tmp / "mf", {}),
        ]
        head = f"{'builder':<12} {'task':<10} {'samples':>7} {'samples/s':>9} {'tgt/smp':>7} {'empty':>5}"
        print(head + f" {'rrle tok mean/p95':>18} {'compact tok mean/p95':>21}")
        built = []
        for name, task, root, opts in cases:
            opts = {**opts, "task": task} if name == "coco-format" else opts
            row = {}
            for scheme in ("rrle", "compact"):
                out = tmp / f"{name}_{task}_{scheme}.jsonl"
                rep = build_jsonl(
                    name, out, root=root, scheme=scheme, with_gt=False, workers=args.workers, options=opts
                )
                row[scheme] = rep
                if scheme == "rrle":
                    built.append(out)
            s = target_summary(tmp / f"{name}_{task}_rrle.jsonl")
            r, c = row["rrle"], row["compact"]
            tok = lambda rep: f"{rep['answers']['tokens']['mean']:.1f}/{rep['answers']['tokens']['p95']:.0f}"  # noqa: E731
            print(
                f"{name:<12} {task:<10} {r['samples']:>7} {r['samples_per_s']:>9.1f} "
                f"{s['targets_per_sample']['mean']:>7.2f} {s['empty_targets']:>5} {tok(r):>18} {tok(c):>21}"
            )
        t0 = time.perf_counter()
        rep = mix_jsonl([(p, 1.0) for p in built], tmp / "mixed.jsonl", seed=0)
        dt = time.perf_counter() - t0
        print(
            f"mix: {rep['total']} lines from {len(built)} files in {dt:.2f} s "
            f"({rep['total'] / dt:.0f} lines/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
