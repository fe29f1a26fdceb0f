"""The data of a predict run, checked before a model loads (so a bad input costs seconds, not a model
load, and fails with one line); the options themselves are checked by
:meth:`text4seg.inference.options.PredictOptions.validate`:

1. the queries: rows well-formed and images readable (:mod:`text4seg.inference.checks`; ``skip_bad``
   drops the queries of unreadable images and counts them);
2. the output folder: no symbolic link or foreign file where we write, a ``results.jsonl`` of ours,
   and ``OUT/run.json`` recording the options that change a result
   (:meth:`~text4seg.inference.options.PredictOptions.result_options`); a re-run with other options is
   refused unless ``overwrite`` (:mod:`text4seg.inference.outdir`).
"""

from __future__ import annotations

from pathlib import Path

from text4seg.data.queries import Query
from text4seg.data.results import BAD_LINES_SUFFIX, RESULTS_NAME, finished_keys
from text4seg.inference.checks import check_images, load_checked_queries
from text4seg.inference.options import PredictOptions
from text4seg.inference.outdir import check_out_dir, record_options


def option_queries(options: PredictOptions) -> list[Query]:
    """The queries of an ``image`` (one, id = the file's stem) or a ``jsonl`` run (rows checked)."""
    if options.image is not None:
        return [
            Query(
                id=Path(options.image).stem,
                image=str(Path(options.image).resolve()),
                question=options.query,
                labels=list(options.labels),
                grid=(int(options.grid[0]), int(options.grid[1])),
                scheme=options.scheme,
            )
        ]
    if options.jsonl is None:
        raise ValueError("give one of --jsonl and --image")
    if not Path(options.jsonl).exists():
        raise OSError(f"no such file: {options.jsonl}")
    # --with-gt rows: their ground truth outlined on the overlays
    return load_checked_queries(options.jsonl, options.root, options.limit, options.shard, options.overlays)


def prepare_queries(options: PredictOptions) -> tuple[list[Query], list[str]]:
    """``(queries, skipped-query messages)`` of a validated ``image``/``jsonl`` run, with its output
    folder checked and ``OUT/run.json`` written (module docstring)."""
    queries, skipped = check_images(option_queries(options), options.skip_bad)
    if not queries:
        raise ValueError(f"no query left to predict ({len(skipped)} skipped: {skipped[:1]})")
    out = check_out_dir(
        options.out, files=[RESULTS_NAME, RESULTS_NAME + BAD_LINES_SUFFIX], folders=["overlays"]
    )
    finished_keys(out / RESULTS_NAME)  # refuses a foreign results.jsonl; sets corrupt lines aside
    record_options(
        out,
        "predict",
        options.result_options(),
        overwrite=options.overwrite,
        outputs=[RESULTS_NAME, "overlays"],
    )
    return queries, skipped
