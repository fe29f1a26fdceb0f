"""Inference speed on the tiny random LLaVA + tiny SAM (CPU is fine). Prints, in one run:

1. samples/s batched (``--batch-size``) against one at a time (target >= 3x);
2. constrained against unconstrained tokens/s (the grammar's overhead per generated token);
3. SAM encoder passes against the number of distinct images (target: equal).

    .venv/bin/python benchmarks/inference.py [--n 16] [--images 4] [--grid 16] [--max-new-tokens 256]

Random weights never emit EOS unconstrained, so both unconstrained runs generate exactly
``--max-new-tokens`` tokens per sample; the constrained run stops at ``</seg>`` + EOS.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/support


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="queries")
    ap.add_argument("--images", type=int, default=4, help="distinct images (queries cycle over them)")
    ap.add_argument("--grid", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", default=None, help="model folder (default: a fresh tiny LLaVA)")
    ap.add_argument("--model-type", default="llava1_5_hf")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best round counts")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on a shared CPU)"
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="t4s-bench-"))
    for k, v in {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "MODELSCOPE_CACHE": str(tmp / "ms"),
        "HF_HOME": str(tmp / "hf"),
    }.items():
        os.environ.setdefault(k, v)
    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)

    from support.sam import make_tiny_sam

    from text4seg.data.results import answer_to_masks
    from text4seg.demo.model import make_tiny_llava
    from text4seg.inference.predict import Predictor, Query
    from text4seg.inference.refine import Refiner

    model = args.model or make_tiny_llava(tmp / "llava")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(args.images):
        h, w = (240, 320) if i % 2 else (320, 240)
        p = tmp / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    qs = [
        Query(
            id=f"q{i}",
            image=paths[i % len(paths)],
            question="Please segment the red circle.",
            labels=["red circle"],
            grid=(args.grid, args.grid),
        )
        for i in range(args.n)
    ]
    pred = Predictor(
        model, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, model_type=args.model_type
    )
    pred.generate(qs[:2])  # warm-up (first call registers datasets, builds caches)

    def timed(batch: int, constrained: bool):
        t0 = time.perf_counter()
        outs, grammar_s = [], 0.0
        for s in range(0, len(qs), batch):
            outs += pred.generate(qs[s : s + batch], constrained=constrained)
            if constrained:
                grammar_s += pred.last_processor.seconds
        return outs, time.perf_counter() - t0, sum(n for _, n in outs), grammar_s

    pred.generate(qs[: args.batch_size], constrained=True)  # warm the grammar's per-state caches once
    # The CPU is shared: interleave the three configurations and keep each one's best round.
    best: dict = {}
    for _ in range(args.rounds):
        for name, batch, constrained in (
            ("one", 1, False),
            ("batch", args.batch_size, False),
            ("constrained", args.batch_size, True),
        ):
            res = timed(batch, constrained)
            if name not in best or res[1] < best[name][1]:
                best[name] = res
    _, dt1, tok1, _ = best["one"]
    _, dtb, tokb, _ = best["batch"]
    con, dtc, tokc, gsec = best["constrained"]
    valid = sum(answer_to_masks(t, 32, 32, args.grid).parse_valid for t, _ in con)

    refiner = Refiner(make_tiny_sam())
    t0 = time.perf_counter()
    for q, (text, _) in zip(qs, con):
        with Image.open(q.image) as im:
            w, h = im.size
        am = answer_to_masks(text, h, w, q.grid)
        refiner.refine_label_map(q.image, am.label_map, key=q.image)
    dts = time.perf_counter() - t0

    print(
        f"tiny model {model}, {args.n} queries, {args.images} images, grid {args.grid}, "
        f"max_new_tokens {args.max_new_tokens}, torch threads {torch.get_num_threads()}, "
        f"best of {args.rounds}"
    )
    print(f"one at a time : {args.n / dt1:7.2f} samples/s  ({tok1 / dt1:8.1f} tokens/s)")
    print(f"batch {args.batch_size:<7d} : {args.n / dtb:7.2f} samples/s  ({tokb / dtb:8.1f} tokens/s)")
    print(f"batched / one-at-a-time samples/s ratio: {dt1 / dtb:.2f}x (target >= 3x)")
    print(
        f"constrained   : {tokc / dtc:8.1f} tokens/s vs unconstrained {tokb / dtb:8.1f} tokens/s at batch "
        f"{args.batch_size} (ratio {(tokc / dtc) / (tokb / dtb):.2f})\n"
        f"  grammar time {1e3 * gsec / tokc:.3f} ms per generated token = {100 * gsec / dtc:.1f}% of the "
        f"constrained run; {tokc / args.n:.0f} tokens/answer; "
        f"strict parse {valid}/{args.n}"
    )
    print(
        f"SAM refinement: {refiner.encoder_passes} encoder passes for {len({q.image for q in qs})} distinct"
        f" images ({refiner.predict_calls} predict calls, {dts:.2f} s)"
    )


if __name__ == "__main__":
    main()
