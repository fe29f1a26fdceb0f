"""The builder contract and the driver that turns a builder's samples into one JSONL file.

A builder is a class with ``name``, ``help``, ``splits`` (valid split names; ``()`` = any), ``layout``
(the on-disk layout it expects, for ``--list`` and the docs), and two methods:

* ``units() -> Sequence``: the work units in a deterministic order (refs, images...), cheap to list;
* ``make(unit, rep) -> list[Sample]``: the samples of one unit (``rep`` is the ``--repeat`` pass, which
  re-seeds the template choice). Bad input raises :class:`BadInput` naming the file.

The driver shards the units (``i/N`` takes ``units[i::N]``), repeats them, fans them out to workers
(fork; order kept), writes the rows through an atomic temporary file and returns a report dict.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from text4seg.data.records import AtomicWriter, Sample, dumps_row, parse_shard, to_swift_row
from text4seg.descriptors import SCHEMES, grid_shape

TRAIN_SPLITS = ("train", "train2017", "training", "trainaug")


class BadInput(ValueError):
    """A missing or corrupt image or annotation; the message names the file."""


@dataclass
class BuildConfig:
    """Everything a builder needs. ``options`` holds builder-specific settings (``--set key=value``)."""

    root: Path | None
    split: str
    out: Path | None = None
    grid: tuple[int, int] = (16, 16)
    scheme: str = "rrle"
    seed: int = 0
    with_gt: bool = True
    options: dict = field(default_factory=dict)

    def opt(self, key: str, default):
        """A builder option, converted to the type of ``default`` (options may arrive as CLI strings)."""
        v = self.options.get(key, default)
        if v is default or default is None or isinstance(v, type(default)):
            return v
        try:
            if isinstance(default, bool):
                return str(v).lower() in ("1", "true", "yes", "on")
            if isinstance(default, (list, tuple)):
                return [s.strip() for s in str(v).split(",") if s.strip()]
            return type(default)(v)
        except (TypeError, ValueError):
            raise ValueError(f"option {key}={v!r}: expected a {type(default).__name__}") from None


class Builder:
    """Base class; subclasses set the class attributes and implement ``units`` and ``make``."""

    name = ""
    help = ""
    splits: tuple[str, ...] = ()
    layout = ""
    needs_root = True

    def __init__(self, cfg: BuildConfig):
        self.cfg = cfg
        if self.needs_root:
            if cfg.root is None:
                raise ValueError(f"builder {self.name!r} needs --root (expected layout: {self.layout})")
            if not Path(cfg.root).is_dir():
                raise OSError(f"--root {cfg.root} is not a folder (expected layout: {self.layout})")
        if self.splits and cfg.split not in self.splits:
            raise ValueError(
                f"unknown split {cfg.split!r} for {self.name}; choose one of {list(self.splits)}"
            )

    def units(self) -> Sequence:
        raise NotImplementedError

    def make(self, unit, rep: int) -> list[Sample]:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------ workers
_WORKER: Builder | None = None


def _lines(builder: Builder, unit, rep: int, skip_bad: bool) -> tuple[list[str], list[str], str | None]:
    try:
        try:
            samples = builder.make(unit, rep)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:  # malformed annotation record
            raise BadInput(
                f"{builder.name}: malformed annotation for item {unit!r}: {type(exc).__name__}: {exc}"
            ) from exc
    except (BadInput, OSError) as exc:
        if not skip_bad:
            raise
        return [], [], str(exc)
    lines, answers = [], []
    for s in samples:
        lines.append(dumps_row(to_swift_row(s)))
        answers.extend(a for _, a in s.turns)
    return lines, answers, None


def _work(job: tuple) -> tuple[list[str], list[str], str | None]:
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
    """Build ``out`` (JSONL) with one builder; returns the report dict (see :func:`build_jsonl`)."""
    global _WORKER
    if repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {repeat}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if limit is not None and limit < 0:
        raise ValueError(f"--limit must be >= 0, got {limit}")
    si, sn = parse_shard(shard)
    t0 = time.perf_counter()
    # Annotation indexes are millions of long-lived objects: build them with the cyclic GC off, then
    # freeze them so later collections (triggered by the per-sample allocations) do not rescan them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        builder = builder_cls(cfg)
        units = builder.units()
    finally:
        gc.freeze()
        if gc_was_enabled:
            gc.enable()
    if sn > 1:
        units = units[si::sn]
    t_load = time.perf_counter() - t0
    from text4seg.data.stats import AnswerCollector

    answers = AnswerCollector()
    bad: list[str] = []
    n_units = 0
    tqdm = _tqdm(progress)
    bar = tqdm(total=len(units) * repeat, unit="unit", disable=not progress, file=sys.stderr, smoothing=0.1)
    pool = None
    try:
        with AtomicWriter(out) as w:
            jobs = _jobs(units, repeat, skip_bad)
            if workers > 1 and len(units) > 1:
                import multiprocessing as mp

                _WORKER = builder
                pool = mp.get_context("fork").Pool(workers)
                results = pool.imap(_work, jobs, chunksize=64)
            else:
                results = (_lines(builder, u, r, s) for u, r, s in jobs)
            for lines, ans, err in results:
                n_units += 1
                bar.update(1)
                if err is not None:
                    bad.append(err)
                    continue
                if limit is not None and w.count + len(lines) > limit:
                    lines, ans = lines[: limit - w.count], ans[: limit - w.count]
                for line in lines:
                    w.write(line)
                for a in ans:
                    answers.add(a)
                if limit is not None and w.count >= limit:
                    break
                if progress and n_units % 256 == 0:
                    bar.set_postfix(samples_s=f"{w.count / max(time.perf_counter() - t0, 1e-9):.0f}")
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
        _WORKER = None
        gc.unfreeze()
    elapsed = time.perf_counter() - t0
    report = {
        "builder": builder_cls.name,
        "split": cfg.split,
        "out": str(Path(out).resolve()),
        "samples": w.count,
        "units": n_units,
        "skipped_bad": len(bad),
        "bad_examples": bad[:5],
        "shard": f"{si}/{sn}",
        "repeat": repeat,
        "grid": list(cfg.grid),
        "scheme": cfg.scheme,
        "seed": cfg.seed,
        "load_s": round(t_load, 3),
        "seconds": round(elapsed, 3),
        "samples_per_s": round(w.count / elapsed, 1) if elapsed > 0 else 0.0,
    }
    if stats:
        report["answers"] = answers.stats()
    return report


def _tqdm(progress: bool):
    if progress:
        try:
            from tqdm import tqdm

            return tqdm
        except ImportError:
            pass
    return _NoBar


class _NoBar:
    def __init__(self, *a, **k):
        pass

    def update(self, n=1):
        pass

    def set_postfix(self, **k):
        pass

    def close(self):
        pass


def make_config(
    root=None,
    split: str = "train",
    out=None,
    grid=16,
    scheme: str = "rrle",
    seed: int = 0,
    with_gt: bool | None = None,
    options: dict | None = None,
) -> BuildConfig:
    """Validate and assemble a :class:`BuildConfig`; ``with_gt=None`` means "on unless split is train"."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {sorted(SCHEMES)}")
    if with_gt is None:
        with_gt = split not in TRAIN_SPLITS
    return BuildConfig(
        root=None if root is None else Path(root).expanduser().resolve(),
        split=split,
        out=None if out is None else Path(out).expanduser().resolve(),
        grid=grid_shape(grid),
        scheme=scheme,
        seed=int(seed),
        with_gt=bool(with_gt),
        options=dict(options or {}),
    )
