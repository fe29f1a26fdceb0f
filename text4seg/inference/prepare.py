"""Everything ``text4seg predict`` checks before it loads a model (so a bad input costs seconds, not a
model load, and fails with one line):

1. the flags (``--limit``, ``--batch-size``, ``--image`` with ``--query``, ``--constrained`` labels);
2. the checkpoint carries no code unless ``--trust-remote-code`` (:mod:`text4seg.training.trust`);
3. the queries: rows well-formed and images readable (:mod:`text4seg.inference.checks`; ``--skip-bad``
   drops the queries of unreadable images and counts them);
4. the output folder: no symbolic link or foreign file where we write, and ``OUT/run.json`` records the
   options that change a result; a re-run with other options is refused unless ``--overwrite``
   (:mod:`text4seg.inference.outdir`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from text4seg.inference.checks import check_images, load_checked_queries
from text4seg.inference.outdir import check_out_dir, record_options
from text4seg.inference.queries import Query
from text4seg.inference.results import BAD_LINES_SUFFIX, RESULTS_NAME, finished_keys
from text4seg.training.trust import check_trusted

# the options of a predict run that change its results (recorded in OUT/run.json)
RESULT_OPTIONS = (  # (not the --api URL: the same served model may come back on another port)
    "model",
    "served_model",
    "adapters",
    "model_type",
    "template",
    "jsonl",
    "image",
    "query",
    "label",
    "root",
    "grid",
    "scheme",
    "constrained",
    "max_new_tokens",
    "sam_checkpoint",
    "sam_type",
    "shard",
)


def _path(v):
    return None if v is None else os.path.abspath(v)


def prepare_predict(args: argparse.Namespace) -> tuple[list[Query], list[str]]:
    """Check a ``predict`` command line (module docstring); ``(queries, skipped-query messages)``."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.model is not None:  # (with --api the server loads the model)
        check_trusted([args.model, *(args.adapters or [])], getattr(args, "trust_remote_code", False))
    if args.image is not None:
        if not args.query:
            raise ValueError("--image needs --query")
        if args.constrained and not args.label:
            raise ValueError("constrained decoding on one image needs the target label(s): --label TEXT")
        queries = [
            Query(
                id=Path(args.image).stem,
                image=str(Path(args.image).resolve()),
                question=args.query,
                labels=list(args.label or []),
                grid=(int(args.grid[0]), int(args.grid[1])),
                scheme=args.scheme,
            )
        ]
    else:
        if not Path(args.jsonl).exists():
            raise OSError(f"no such file: {args.jsonl}")
        queries = load_checked_queries(args.jsonl, args.root, args.limit, args.shard)
    queries, skipped = check_images(queries, getattr(args, "skip_bad", False))
    if not queries:
        raise ValueError(f"no query left to predict ({len(skipped)} skipped: {skipped[:1]})")
    out = check_out_dir(args.out, files=[RESULTS_NAME, RESULTS_NAME + BAD_LINES_SUFFIX], folders=["overlays"])
    options = {k: getattr(args, k, None) for k in RESULT_OPTIONS}
    for k in ("model", "jsonl", "image", "root", "sam_checkpoint"):
        options[k] = _path(options[k])
    options["adapters"] = [_path(a) for a in options["adapters"] or []]
    finished_keys(out / RESULTS_NAME)  # refuses a foreign results.jsonl; sets corrupt lines aside
    record_options(
        out,
        "predict",
        options,
        overwrite=getattr(args, "overwrite", False),
        outputs=[RESULTS_NAME, "overlays"],
    )
    return queries, skipped
