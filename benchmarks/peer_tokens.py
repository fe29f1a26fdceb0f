"""Token cost (real Qwen2 tokenizer) of the peers' task answers and prompts, on generated fixtures.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/peer_tokens.py

Prints, per task, the mean Qwen2 token count of the answers (and of the prompts for interactive), next
to the one-expression answers of the same sentences for the multi-expression task. The fixtures are the
tests' synthetic datasets (random polygons in small images), so the figures show the format's overhead,
not a COCO average.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.fakes import make_grefcoco  # noqa: E402
from support.peers import make_coco_instances, make_coco_panoptic  # noqa: E402

from data_builders import build_jsonl  # noqa: E402
from text4seg.data.jsonl import read_jsonl  # noqa: E402
from text4seg.data.tokens import count_many  # noqa: E402


def _answers(path):
    rows = list(read_jsonl(path))
    return rows, [r["messages"][1]["content"] for r in rows], [r["messages"][0]["content"] for r in rows]


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        make_grefcoco(d, n_images=12)
        build_jsonl("grefcoco", d / "single.jsonl", root=d, split="val", stats=False)
        build_jsonl("grefcoco-multi", d / "multi.jsonl", root=d, split="val", options={"k": 5}, stats=False)
        srows, sans, _ = _answers(d / "single.jsonl")
        mrows, mans, _ = _answers(d / "multi.jsonl")
        stok = dict(zip((r["text4seg"]["source"]["sent_ids"][0] for r in srows), count_many(sans)))
        mtok = count_many(mans)
        n_expr = [len(r["text4seg"]["labels"]) for r in mrows]
        same = [sum(stok[s] for s in r["text4seg"]["source"]["sent_ids"]) for r in mrows]
        print(f"multi (grefcoco-multi, k=5): {len(mrows)} answers, {sum(n_expr)} expressions")
        print(f"  tokens/answer {statistics.mean(mtok):.1f}; tokens/expression {sum(mtok) / sum(n_expr):.1f}")
        print(f"  same sentences as one-expression answers: {sum(same) / sum(n_expr):.1f} tokens/expression")
        rej = count_many([f"[{k}] expression {k}: none" for k in range(1, 6)])
        print(f"  a rejection line: {statistics.mean(rej):.1f} tokens")

        make_coco_instances(d / "inter", n_images=6)
        for coords in ("norm1000", "qwen2.5-vl"):
            build_jsonl(
                "coco-interactive",
                d / "i.jsonl",
                root=d / "inter",
                split="val2017",
                options={"coords": coords},
                stats=False,
            )
            rows, ans, qs = _answers(d / "i.jsonl")
            kinds = [r["text4seg"]["source"]["ref_id"].split(":")[1] for r in rows]
            qt, at = count_many(qs), count_many(ans)
            print(
                f"interactive ({coords}): answer {statistics.mean(at):.1f} tokens; question by kind:", end=""
            )
            for k in ("point", "scribble", "box", "mask"):
                print(f" {k} {statistics.mean(t for t, kk in zip(qt, kinds) if kk == k):.1f}", end="")
            print()

        make_coco_panoptic(d / "pan", n_images=3)
        build_jsonl("coco-panoptic", d / "p.jsonl", root=d / "pan", split="val2017", stats=False)
        _, ans, _ = _answers(d / "p.jsonl")
        print(f"panoptic (coco-panoptic, 16x16): {statistics.mean(count_many(ans)):.1f} tokens/answer")


if __name__ == "__main__":
    main()
