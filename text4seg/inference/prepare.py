"""Everything ``text4seg predict`` checks before it loads a model (so a bad input costs seconds, not a
model load, and fails with one line):

1. the flags (``--limit``, ``--batch-size``, ``--image`` with ``--query``, ``--constrained`` labels,
   ``--template`` and ``--model-type`` among ms-swift's names, the ``--api`` client's numbers) and the
   files they name (``--sam-checkpoint`` a file, each of ``--adapters`` a LoRA folder);
2. the checkpoint carries no code unless ``--trust-remote-code`` (:mod:`text4seg.checkpoints.trust`);
3. the queries: rows well-formed and images readable (:mod:`text4seg.inference.checks`; ``--skip-bad``
   drops the queries of unreadable images and counts them);
4. the output folder: no symbolic link or foreign file where we write, and ``OUT/run.json`` records the
   options that change a result; a re-run with other options is refused unless ``--overwrite``
   (:mod:`text4seg.inference.outdir`).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import math
import os
from pathlib import Path

from text4seg.checkpoints.trust import check_trusted
from text4seg.data.queries import Query
from text4seg.data.results import BAD_LINES_SUFFIX, RESULTS_NAME, finished_keys
from text4seg.inference.checks import check_images, load_checked_queries
from text4seg.inference.outdir import check_out_dir, record_options

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


def swift_names(kind: str) -> set[str] | None:
    """The names ms-swift knows for ``kind`` ``"template"`` or ``"model"`` (the string constants of its
    ``swift/<kind>/constant.py``, read as text: ms-swift is not imported), None if they cannot be read."""
    spec = importlib.util.find_spec("swift")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, kind, "constant.py")
        try:
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
        except (OSError, SyntaxError, ValueError):
            continue
        names = {
            node.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        }
        return names or None
    return None


def check_engine_names(template: str | None, model_type: str | None) -> None:
    """``ValueError`` for a ``--template`` or ``--model-type`` that ms-swift does not know (checked only
    where ms-swift's names can be read; text4seg's own templates count as known)."""
    from text4seg.checkpoints.align import LLAVA_WHOLE_IMAGE_TEMPLATE

    for flag, value, kind, extra in (
        ("--template", template, "template", {LLAVA_WHOLE_IMAGE_TEMPLATE}),
        ("--model-type", model_type, "model", set()),
    ):
        known = swift_names(kind) if value else None
        if known is not None and value not in known | extra:
            near = sorted(n for n in known | extra if n.split("_")[0] == value.split("_")[0])[:8]
            hint = f" (similar: {', '.join(near)})" if near else ""
            raise ValueError(f"{flag} {value!r} is not an ms-swift {kind} type{hint}")


def check_files(args: argparse.Namespace) -> None:
    """The files a ``predict`` command line names: ``--sam-checkpoint`` a regular file, each of
    ``--adapters`` a LoRA folder (``adapter_config.json``) unless it reads as a hub id (``org/name``)."""
    sam = getattr(args, "sam_checkpoint", None)
    if sam is not None and not os.path.isfile(sam):
        why = "a folder" if os.path.isdir(sam) else "not found"
        raise OSError(f"--sam-checkpoint {sam}: {why} (expected a SAM .pth file)")
    if sam is not None:  # weights_only, tensors mapped: no code runs and nothing big is read yet
        from text4seg.inference.refine import load_sam_state

        load_sam_state(sam, mmap=True)
    for a in args.adapters or []:
        a = str(a)
        if os.path.isdir(a):
            if not os.path.isfile(os.path.join(a, "adapter_config.json")):
                raise OSError(f"--adapters {a}: no adapter_config.json (not a LoRA adapter folder)")
        elif os.path.exists(a) or os.path.isabs(a) or a.startswith(".") or a.count("/") != 1:
            raise OSError(f"--adapters {a}: not a folder (expected a LoRA adapter folder)")


def check_api_numbers(args: argparse.Namespace) -> None:
    """``--concurrency``, ``--timeout`` and ``--retries`` of ``--api``: positive, finite."""
    if getattr(args, "api", None) is None:
        return
    if args.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {args.concurrency}")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ValueError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.retries < 0:
        raise ValueError(f"--retries must be >= 0, got {args.retries}")


def check_flags(args: argparse.Namespace) -> None:
    """Every flag of a ``predict`` command line that can be checked without a model (module docstring)."""
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    check_api_numbers(args)
    check_engine_names(getattr(args, "template", None), getattr(args, "model_type", None))
    check_files(args)
    if args.model is not None:  # (with --api the server loads the model)
        check_trusted([args.model, *(args.adapters or [])], getattr(args, "trust_remote_code", False))


def prepare_predict(args: argparse.Namespace) -> tuple[list[Query], list[str]]:
    """Check a ``predict`` command line (module docstring); ``(queries, skipped-query messages)``."""
    check_flags(args)
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
