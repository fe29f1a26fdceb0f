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

import csv
import gc
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from text4seg.data.records import AtomicWriter, Sample, dumps_row, parse_shard, to_swift_row
from text4seg.descriptors import DEFAULT_SCHEME, SCHEMES, grid_shape

TRAIN_SPLITS = ("train", "train2017", "training", "trainaug")


class BadInput(ValueError):
    """A missing or corrupt image or annotation; the message names the file (and the record).

    ``cause`` is a short category (``image_not_found``, ``bad_segmentation``, ...) that ``--skip-bad``
    counts in the build report's ``bad_causes``.
    """

    def __init__(self, message: str, cause: str = "bad_input"):
        super().__init__(message)
        self.cause = cause


# Referring samples that should have a target but would be written without one (see Builder.flag).
EMPTY_TARGET = "empty_target"  # the decoded full-resolution target mask has no pixel
LOST_ON_GRID = "lost_on_grid"  # the mask has pixels, but no grid cell's sample point falls on one
TARGET_ISSUES = (EMPTY_TARGET, LOST_ON_GRID)
EMPTY_POLICIES = ("drop", "keep", "fail")


@dataclass
class BuildConfig:
    """Everything a builder needs. ``options`` holds builder-specific settings (``--set key=value``)."""

    root: Path | None
    split: str
    out: Path | None = None
    grid: tuple[int, int] = (16, 16)
    scheme: str = DEFAULT_SCHEME
    seed: int = 0
    with_gt: bool = True
    options: dict = field(default_factory=dict)
    skip_bad: bool = False

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
        self.tally: dict[str, int] = {}
        self.flag_examples: list[str] = []
        self.empty_policy = self._empty_policy()
        if self.needs_root:
            if cfg.root is None:
                raise ValueError(f"builder {self.name!r} needs --root (expected layout: {self.layout})")
            if not Path(cfg.root).is_dir():
                raise OSError(f"--root {cfg.root} is not a folder (expected layout: {self.layout})")
        if self.splits and cfg.split not in self.splits:
            raise ValueError(
                f"unknown split {cfg.split!r} for {self.name}; choose one of {list(self.splits)}"
            )

    def _empty_policy(self) -> str:
        """What happens to a sample flagged :data:`EMPTY_TARGET` or :data:`LOST_ON_GRID`.

        Option ``empty_targets`` (``drop``, ``keep`` or ``fail``); default: on a training split ``drop``
        with ``--skip-bad``, else ``fail`` (after the whole build, with the counts, nothing written): a
        model must never be trained to answer "nothing" for an object that is there. On other splits
        ``keep``: the benchmark's set stays whole and is scored on the full-resolution mask.
        """
        if self.cfg.split in TRAIN_SPLITS:
            default = "drop" if self.cfg.skip_bad else "fail"
        else:
            default = "keep"
        policy = str(self.cfg.options.get("empty_targets", default)).lower()
        if policy not in EMPTY_POLICIES:
            raise ValueError(f"option empty_targets={policy!r}: choose one of {list(EMPTY_POLICIES)}")
        return policy

    def flag(self, issue: str, n: int, where: str) -> bool:
        """Count ``n`` samples with ``issue`` (``where`` names them); True if they must be dropped."""
        self.count(issue, n)
        if len(self.flag_examples) < 5:
            self.flag_examples.append(f"{issue}: {where}")
        if self.empty_policy == "drop":
            self.count("dropped", n)
            return True
        return False

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to the report counter ``key`` (summed over units and workers by the driver)."""
        self.tally[key] = self.tally.get(key, 0) + n

    def where(self, unit) -> str:
        """Where ``unit`` comes from, for error messages (file and record); the default quotes the unit."""
        return f"item {unit!r}"

    def cleanup(self) -> None:
        """Remove files this build created beside the JSONL (images, label maps) when it did not finish.
        Called by the driver on any failure, Ctrl-C included; the default has nothing to remove."""

    def conventions(self) -> dict:
        """Dataset conventions this builder applies (settings and counter names, for the report)."""
        return {}

    def units(self) -> Sequence:
        raise NotImplementedError

    def make(self, unit, rep: int) -> list[Sample]:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------ workers
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
    cfg = replace(cfg, skip_bad=bool(skip_bad))
    # Annotation indexes are millions of long-lived objects: build them with the cyclic GC off, then
    # freeze them so later collections (triggered by the per-sample allocations) do not rescan them.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        builder = builder_cls(cfg)
        units = builder.units()
    except MALFORMED as exc:  # the annotation files are parsed here: wrong types become one line
        raise ValueError(
            f"{builder_cls.name}: malformed annotation files under {cfg.root}: {type(exc).__name__}: "
            f"{str(exc)[:200]}"
        ) from None
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
    causes: dict[str, int] = {}
    tally: dict[str, int] = {}
    flagged: list[str] = []
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
            for lines, ans, err, counts, examples in results:
                n_units += 1
                bar.update(1)
                if err is not None:
                    causes[err[0]] = causes.get(err[0], 0) + 1
                    bad.append(err[1])
                    continue
                for k, v in counts.items():
                    tally[k] = tally.get(k, 0) + v
                flagged.extend(examples[: 5 - len(flagged)])
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
            targets = _targets_report(builder, tally, flagged)
            if builder.empty_policy == "fail" and targets["empty_target"] + targets["lost_on_grid"]:
                raise ValueError(_fail_message(cfg.split, targets))
    except BaseException:  # no JSONL was written (AtomicWriter): remove the files made for it (Ctrl-C too)
        if pool is not None:
            pool.terminate()
            pool = None
        builder.cleanup()
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
        _WORKER = None
        gc.unfreeze()
    elapsed = time.perf_counter() - t0
    conv_keys = set(builder.conventions())
    report = {
        "builder": builder_cls.name,
        "split": cfg.split,
        "out": str(Path(out).resolve()),
        "samples": w.count,
        "units": n_units,
        "skipped_bad": len(bad),
        "bad_causes": dict(sorted(causes.items())),
        "bad_examples": bad[:5],
        "targets": targets,
        "conventions": {**builder.conventions(), **{k: v for k, v in tally.items() if k in conv_keys}},
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
        "them (or --set empty_targets=keep to keep them, or a finer --grid); nothing was written"
    )


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


_OPTION_READ = re.compile(r"""(?:\.opt|\bo|options\.get)\(\s*["']([a-z_0-9]+)["']""")


@lru_cache(maxsize=1)
def known_options() -> frozenset[str]:
    """Every ``--set`` key a builder reads (``cfg.opt(KEY, default)`` or ``options.get(KEY)`` with a
    literal KEY), found in the builders' own source, so the list cannot drift from the code."""
    keys: set[str] = set()
    for path in Path(__file__).parent.glob("*.py"):
        keys.update(_OPTION_READ.findall(path.read_text(encoding="utf-8")))
    return frozenset(keys)


def make_config(
    root=None,
    split: str = "train",
    out=None,
    grid=16,
    scheme: str = DEFAULT_SCHEME,
    seed: int = 0,
    with_gt: bool | None = None,
    options: dict | None = None,
) -> BuildConfig:
    """Validate and assemble a :class:`BuildConfig`; ``with_gt=None`` means "on unless split is train"."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {sorted(SCHEMES)}")
    unknown = sorted(k for k in (options or {}) if k not in known_options() and not k.endswith("_col"))
    if unknown:  # a typo would otherwise be ignored without a word
        raise ValueError(
            f"unknown builder option(s) {unknown} (--set KEY=VALUE); the builders read: "
            f"{sorted(known_options())} and <column>_col for hf-refer/hf-mask"
        )
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
