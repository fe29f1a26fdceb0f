"""Inference speed on the tiny random LLaVA + tiny SAM (CPU is fine). Prints, in one run:

1. samples/s batched (``--batch-size``) against one at a time (target >= 3x);
2. constrained against unconstrained tokens/s (the grammar's overhead per generated token);
3. SAM encoder passes against the number of distinct images (target: equal).

    .venv/bin/python benchmarks/inference.py [--n 16] [--images 4] [--grid 8] [--max-new-tokens N]

The budget defaults to the scheme's answer bound (:func:`text4seg.descriptors.max_answer_tokens`), so
every constrained answer is complete (parses strictly). The constrained/unconstrained ratio is printed
only when every constrained answer of every round completed; with a smaller ``--max-new-tokens`` the
answers may be cut and the script refuses the ratio (exit status 1). Random weights never emit EOS
unconstrained, so both unconstrained runs generate exactly the budget per sample; the constrained run
stops at ``</seg>`` + EOS. The default grid is 8 (bound 1,227 tokens; 16 is 4,107, minutes per round).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/support


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="queries")
    ap.add_argument("--images", type=int, default=4, help="distinct images (queries cycle over them)")
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument(
        "--max-new-tokens", type=int, default=None, help="budget (default: the scheme's answer bound)"
    )
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

    from text4seg.data.images import image_size
    from text4seg.data.queries import Query
    from text4seg.data.results import answer_to_masks
    from text4seg.demo.model import make_tiny_llava
    from text4seg.descriptors import MAX_FREE, max_answer_tokens
    from text4seg.inference.predict import Predictor
    from text4seg.inference.refine import Refiner

    bound = max_answer_tokens("rrle", (args.grid, args.grid), ["red circle"], MAX_FREE)
    budget = args.max_new_tokens or bound
    # the tiny model's context holds the prompt (< 1,000 tokens) and the whole budget
    model = args.model or make_tiny_llava(tmp / "llava", max_position_embeddings=max(4096, budget + 2048))
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
            scheme="rrle",
        )
        for i in range(args.n)
    ]
    pred = Predictor(model, batch_size=args.batch_size, max_new_tokens=budget, model_type=args.model_type)
    pred.generate(qs[:2])  # warm-up (first call registers datasets, builds caches)

    def timed(batch: int, constrained: bool, budgets: list[int] | None = None):
        """Answers, seconds, generated tokens, grammar seconds and decoding steps per batch; ``budgets``:
        max_new_tokens per batch (default the budget)."""
        t0 = time.perf_counter()
        outs, grammar_s, steps = [], 0.0, []
        for k, s in enumerate(range(0, len(qs), batch)):
            pred.max_new_tokens = budgets[k] if budgets else budget
            outs += pred.generate(qs[s : s + batch], constrained=constrained)
            if constrained:
                grammar_s += pred.last_processor.seconds
                steps.append(pred.last_processor.calls)  # one call per decoding step of the batch
        pred.max_new_tokens = budget
        return outs, time.perf_counter() - t0, sum(n for _, n in outs), grammar_s, steps

    pred.generate(qs[: args.batch_size], constrained=True)  # warm the grammar's per-state caches once
    # The CPU is shared: interleave the configurations and keep each one's best round. "matched" is
    # unconstrained over the same batches for exactly the constrained run's decoding steps (random
    # weights never stop early), so the two differ only by the grammar.
    best: dict = {}
    cut = 0  # constrained answers (all rounds) that do not parse strictly: cut by the budget
    con_steps: list[int] = []
    for _ in range(args.rounds):
        for name, batch, constrained in (
            ("one", 1, False),
            ("batch", args.batch_size, False),
            ("constrained", args.batch_size, True),
            ("matched", args.batch_size, False),
        ):
            res = timed(batch, constrained, con_steps if name == "matched" else None)
            if constrained:
                cut += sum(not answer_to_masks(t, 32, 32, args.grid).parse_valid for t, _ in res[0])
                con_steps = res[4]
            if name not in best or res[1] < best[name][1]:
                best[name] = res
    _, dt1, tok1, _, _ = best["one"]
    _, dtb, tokb, _, _ = best["batch"]
    con, dtc, tokc, gsec, steps = best["constrained"]
    dtm = best["matched"][1]
    valid = sum(answer_to_masks(t, 32, 32, args.grid).parse_valid for t, _ in con)

    refiner = Refiner(make_tiny_sam())
    t0 = time.perf_counter()
    for q, (text, _) in zip(qs, con):
        w, h = image_size(q.image)
        am = answer_to_masks(text, h, w, q.grid)
        refiner.refine_label_map(q.image, am.label_map, key=q.image)
    dts = time.perf_counter() - t0

    print(
        f"tiny model {model}, {args.n} queries, {args.images} images, grid {args.grid}, "
        f"max_new_tokens {budget} (the rrle answer bound: {bound}), torch threads "
        f"{torch.get_num_threads()}, best of {args.rounds}; load average {os.getloadavg()[0]:.2f} on "
        f"{os.cpu_count()} CPUs"
    )
    print(f"one at a time : {args.n / dt1:7.2f} samples/s  ({tok1 / dt1:8.1f} tokens/s)")
    print(f"batch {args.batch_size:<7d} : {args.n / dtb:7.2f} samples/s  ({tokb / dtb:8.1f} tokens/s)")
    print(f"batched / one-at-a-time samples/s ratio: {dt1 / dtb:.2f}x (target >= 3x)")
    head = (
        f"constrained   : {tokc / dtc:8.1f} tokens/s ({tokc / args.n:.0f} tokens/answer, strict parse "
        f"{valid}/{args.n}) over {sum(steps)} decoding steps of batch {args.batch_size} in {dtc:.2f} s;\n"
        f"unconstrained : the same batches and steps in {dtm:.2f} s"
    )
    if cut:
        print(
            f"{head}\nconstrained / unconstrained speed: refused: {cut} of {args.rounds * args.n} "
            f"constrained answers were cut (no strict parse) by the budget of {budget} tokens, below the "
            f"bound of {bound}"
        )
    else:
        print(
            f"{head}\nconstrained / unconstrained speed (same steps, every constrained answer complete): "
            f"{dtm / dtc:.2f}"
        )
    print(
        f"  grammar time {1e3 * gsec / sum(steps):.3f} ms per decoding step of batch {args.batch_size} = "
        f"{100 * gsec / dtc:.1f}% of the constrained run"
    )
    print(
        f"SAM refinement: {refiner.encoder_passes} encoder passes for {len({q.image for q in qs})} distinct"
        f" images ({refiner.predict_calls} predict calls, {dts:.2f} s)"
    )
    return 1 if cut else 0


if __name__ == "__main__":
    raise SystemExit(main())
