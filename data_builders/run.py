"""The driver that turns a builder's samples into one JSONL file: :func:`run_build`.

It lists the builder's units (see :mod:`data_builders.base` for the contract), shards them (``i/N`` takes
``units[i::N]``), repeats them, fans them out to workers (fork; order kept), writes the rows through an
atomic temporary file (nothing is written on any failure, Ctrl-C included) and returns a report dict
(:func:`data_builders.build_jsonl` documents it).
"""

from __future__ import annotations

import csv
import gc
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from text4seg.data.jsonl import AtomicWriter, parse_shard
from text4seg.data.records import dumps_row, to_swift_row

from .base import EMPTY_TARGET, LOST_ON_GRID, TARGET_ISSUES, BadInput, BuildConfig, Builder

_WORKER: Builder | None = None


# Exceptions a malformed annotation file raises from the builders' parsing code (a list where an int goes,
# an absent key, infinity, 100000-deep JSON, a CSV field over the csv module's limit): turned into one line.
MALFORMED = (KeyError, TypeError, IndexError, AttributeError, OverflowError, RecursionError, csv.Error)

_Result = tuple[list[str], list[str], "tuple[str, str] | None", dict, list[str]]


def _lines(builder: Builder, unit, rep: int, skip_bad: bool) -> _Result:
    """(JSONL lines, answers, (cause, message) of a skipped bad unit or None, counters, flag examples)."""
    builder.tally, builder.flag_examples = {}, []
    try:
        try:
            samples = builder.make(unit, rep)
        except MALFORMED as exc:  # malformed annotation record: wrong types, absurd values
            raise BadInput(
                f"{builder.name}: malformed annotation in {builder.where(unit)}: "
                f"{type(exc).__name__}: {str(exc)[:200]}",
                cause="malformed_record",
            ) from None
        except MemoryError:
            raise BadInput(
                f"{builder.name}: {builder.where(unit)} needs more memory than there is (sizes or counts in "
                "its annotation are out of proportion)",
                cause="out_of_memory",
            ) from None
    except (BadInput, OSError) as exc:
        if not skip_bad:
            raise
        cause = getattr(exc, "cause", "bad_input") if isinstance(exc, BadInput) else "os_error"
        return [], [], (cause, str(exc)), {}, []
    lines, answers = [], []
    for s in samples:
        lines.append(dumps_row(to_swift_row(s)))
        answers.extend(a for _, a in s.turns)
    return lines, answers, None, builder.tally, builder.flag_examples


def _work(job: tuple) -> _Result:
    unit, rep, skip_bad = job
    return _lines(_WORKER, unit, rep, skip_bad)


def _jobs(units: Sequence, repeat: int, skip_bad: bool):
    for rep in range(repeat):
        for unit in units:
            yield unit, rep, skip_bad


def run_build(
    builder_cls: type[Builder],
    cfg: BuildConfig,
    out: str | os.PathLike,
    *,
    limit: int | None = None,
    repeat: int = 1,
    workers: int = 1,
    shard: str | tuple[int, int] | None = None,
    skip_bad: bool = False,
    progress: bool = False,
    stats: bool = True,
) -> dict:
    """Build ``out`` (JSONL) with one builder; returns the report dict (see :func:`build_jsonl`).

    Steps: check the counts, load the builder and list its units (:func:`_load`), shard them, write the
    rows of every unit (:func:`_write`, in workers or here), then the report (:func:`_report`). On any
    failure, Ctrl-C included, nothing is written and the builder removes its side files.
    """
    _check_counts(repeat, workers, limit)
    si, sn = parse_shard(shard)
    t0 = time.perf_counter()
    cfg = replace(cfg, skip_bad=bool(skip_bad))
    try:
        builder, units = _load(builder_cls, cfg)
        units = units[si::sn] if sn > 1 else units
        run = _Run(t_load=time.perf_counter() - t0, shard=f"{si}/{sn}", repeat=repeat)
        jobs = _jobs(units, repeat, skip_bad)
        try:
            with (
                _progress(progress, len(units) * repeat) as bar,
                _results(builder, jobs, workers, len(units)) as results,
            ):
                _write(builder, out, results, run, limit, bar)
        except BaseException:  # nothing was written (AtomicWriter): remove the side files (Ctrl-C too)
            builder.cleanup()  # after the workers are gone: none of them writes any more
            raise
    finally:
        gc.unfreeze()
    return _report(builder, out, run, time.perf_counter() - t0, stats)


def _check_counts(repeat: int, workers: int, limit: int | None) -> None:
    if repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {repeat}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if limit is not None and limit < 0:
        raise ValueError(f"--limit must be >= 0, got {limit}")


def _load(builder_cls: type[Builder], cfg: BuildConfig) -> tuple[Builder, Sequence]:
    """The builder and its units. Annotation indexes are millions of long-lived objects: they are built with
    the cyclic GC off, then frozen so later collections (per-sample allocations) do not rescan them (the
    caller unfreezes)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        builder = builder_cls(cfg)
        return builder, builder.units()
    except MALFORMED as exc:  # the annotation files are parsed here: wrong types become one line
        raise ValueError(
            f"{builder_cls.name}: malformed annotation files under {cfg.root}: {type(exc).__name__}: "
            f"{str(exc)[:200]}"
        ) from None
    finally:
        gc.freeze()
        if gc_was_enabled:
            gc.enable()


@dataclass
class _Run:
    """What a build has written and counted so far (summed over units and workers)."""

    t_load: float
    shard: str
    repeat: int
    samples: int = 0
    units: int = 0
    bad: list[str] = field(default_factory=list)
    causes: dict[str, int] = field(default_factory=dict)
    tally: dict[str, int] = field(default_factory=dict)
    flagged: list[str] = field(default_factory=list)
    answers: object = None
    targets: dict = field(default_factory=dict)

    def add(self, err, counts: dict, examples: list[str]) -> bool:
        """Count one unit's outcome; False when it was a skipped bad unit."""
        self.units += 1
        if err is not None:
            self.causes[err[0]] = self.causes.get(err[0], 0) + 1
            self.bad.append(err[1])
            return False
        for k, v in counts.items():
            self.tally[k] = self.tally.get(k, 0) + v
        self.flagged.extend(examples[: 5 - len(self.flagged)])
        return True


@contextmanager
def _results(builder: Builder, jobs, workers: int, n_units: int) -> Iterator:
    """The ``_Result`` of every job, in order: from a fork pool of ``workers`` or computed here."""
    global _WORKER
    if workers <= 1 or n_units <= 1:
        yield (_lines(builder, u, r, s) for u, r, s in jobs)
        return
    import multiprocessing as mp

    _WORKER = builder
    pool = mp.get_context("fork").Pool(workers)
    try:
        yield pool.imap(_work, jobs, chunksize=64)
    finally:
        pool.terminate()
        _WORKER = None


def _write(builder: Builder, out, results, run: _Run, limit: int | None, bar) -> None:
    """Write the rows of ``results`` to ``out`` (atomically) up to ``limit``; fail, with nothing written, on
    an error or when flagged targets must fail the build."""
    from text4seg.data.stats import AnswerCollector

    run.answers = answers = AnswerCollector()
    t0 = time.perf_counter()
    with AtomicWriter(out) as w:
        for lines, ans, err, counts, examples in results:
            bar.update(1)
            if not run.add(err, counts, examples):
                continue
            if limit is not None and w.count + len(lines) > limit:
                lines, ans = lines[: limit - w.count], ans[: limit - w.count]
            for line in lines:
                w.write(line)
            for a in ans:
                answers.add(a)
            run.samples = w.count
            if limit is not None and w.count >= limit:
                break
            if run.units % 256 == 0:
                bar.set_postfix(samples_s=f"{w.count / max(time.perf_counter() - t0, 1e-9):.0f}")
        run.targets = _targets_report(builder, run.tally, run.flagged)
        if builder.empty_policy == "fail" and run.targets[EMPTY_TARGET] + run.targets[LOST_ON_GRID]:
            raise ValueError(_fail_message(builder.cfg.split, run.targets))


def _report(builder: Builder, out, run: _Run, elapsed: float, stats: bool) -> dict:
    """The build report (see :func:`data_builders.build_jsonl`)."""
    cfg = builder.cfg
    conv_keys = set(builder.conventions())
    report = {
        "builder": builder.name,
        "split": cfg.split,
        "out": str(Path(out).resolve()),
        "samples": run.samples,
        "units": run.units,
        "skipped_bad": len(run.bad),
        "bad_causes": dict(sorted(run.causes.items())),
        "bad_examples": run.bad[:5],
        "targets": run.targets,
        "conventions": {**builder.conventions(), **{k: v for k, v in run.tally.items() if k in conv_keys}},
        "shard": run.shard,
        "repeat": run.repeat,
        "grid": list(cfg.grid),
        "scheme": cfg.scheme,
        "seed": cfg.seed,
        "load_s": round(run.t_load, 3),
        "seconds": round(elapsed, 3),
        "samples_per_s": round(run.samples / elapsed, 1) if elapsed > 0 else 0.0,
    }
    if stats:
        report["answers"] = run.answers.stats()
    return report


def _targets_report(builder: Builder, tally: dict, examples: list[str]) -> dict:
    """The build report's ``targets`` entry: flagged samples by issue and what happened to them."""
    return {
        "policy": builder.empty_policy,
        **{k: tally.get(k, 0) for k in TARGET_ISSUES},
        "dropped": tally.get("dropped", 0),
        "examples": examples[:5],
    }


def _fail_message(split: str, targets: dict) -> str:
    n = targets["empty_target"] + targets["lost_on_grid"]
    ex = f"; e.g. {targets['examples'][0]}" if targets["examples"] else ""
    return (
        f"{n} samples of training split {split!r} have a target that would be written as no target "
        f"(empty_target: {targets['empty_target']}, lost_on_grid: {targets['lost_on_grid']}{ex}): a model "
        "would learn to answer 'nothing' for an object that is there; pass --skip-bad to drop and count "
        "them (or --empty-targets keep to keep them, or a finer --grid); nothing was written"
    )


@contextmanager
def _progress(shown: bool, total: int) -> Iterator:
    """A tqdm bar on stderr when ``shown`` (and tqdm is installed), else one that does nothing."""
    bar = _NoBar()
    if shown:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="unit", file=sys.stderr, smoothing=0.1)
        except ImportError:
            pass
    try:
        yield bar
    finally:
        bar.close()


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, **k):
        pass

    def close(self):
        pass
