"""What each REFER-family builder reads and reports on a fixture in its release's native layout.

For refcoco, refcoco+, refcocog, refclef (both split_bys), grefcoco and ref-zom: the segmentation forms in
the fixture's ``instances.json`` (counted by form), and what a build of every split with ``--skip-bad``
reports: samples, ``empty_target``, ``lost_on_grid``, dropped, gRefCOCO's crowd-changed refs. The
fixtures (``tests/support/fakes.py``, ``tests/support/refzom.py``) carry one empty target and one 3x3 px
object per split on purpose (``degenerate=True``); also the mean answer length in real Qwen2
tokens. Run: ``.venv/bin/python benchmarks/refer_fixture.py``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/support

SPLITS = ("train", "val", "testA", "testB")


def forms(inst: dict) -> dict:
    out: dict[str, int] = {}
    for a in inst["annotations"]:
        seg = a["segmentation"]
        if isinstance(seg, dict):
            f = "bare RLE dict (" + ("list" if isinstance(seg["counts"], list) else "string") + " counts)"
        elif seg and isinstance(seg[0], dict):
            f = (
                "list of RLE dicts ("
                + ("list" if isinstance(seg[0]["counts"], list) else "string")
                + " counts)"
            )
        else:
            f = "polygons"
        out[f] = out.get(f, 0) + 1
    return out


def main() -> None:
    from support.fakes import make_grefcoco, make_refer
    from support.refzom import make_refzom

    from data_builders import build_jsonl

    cases = [("refcoco", "unc"), ("refcoco+", "unc"), ("refcocog", "umd"), ("refclef", "unc")]
    cases += [("refclef", "berkeley"), ("grefcoco", "unc"), ("ref-zom", "final")]
    for name, split_by in cases:
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            splits = SPLITS
            if name == "grefcoco":
                make_grefcoco(d, n_images=8, splits=SPLITS)
            elif name == "ref-zom":
                make_refzom(d, n_images=8)
                splits = ("train", "test")
            else:
                make_refer(d, name, split_by, n_images=8, refs_per_image=3, splits=SPLITS, degenerate=True)
            inst = json.loads((d / name / "instances.json").read_text())
            tot = {"samples": 0, "empty_target": 0, "lost_on_grid": 0, "dropped": 0, "crowd_removed_refs": 0}
            tokens: list[float] = []
            for split in splits:
                opts = {"split_by": split_by}
                out = d / f"{split}.jsonl"
                r = build_jsonl(name, out, root=d, split=split, skip_bad=True, options=opts)
                tokens.extend([r["answers"]["tokens"]["mean"]] * r["samples"] if r["samples"] else [])
                tot["samples"] += r["samples"]
                for k in ("empty_target", "lost_on_grid", "dropped"):
                    tot[k] += r["targets"][k]
                tot["crowd_removed_refs"] += r["conventions"].get("crowd_removed_refs", 0)
            mean = round(sum(tokens) / len(tokens), 1) if tokens else None
            head = f"{name} ({split_by}): forms {forms(inst)}"
            print(f"{head}; every split with --skip-bad: {tot}; R-RLE answer {mean} Qwen2 tokens (mean)")


if __name__ == "__main__":
    main()
