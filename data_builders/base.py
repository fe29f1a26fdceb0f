"""The builder contract and the driver that turns a builder's samples into one JSONL file.

A builder is a class with ``name``, ``help``, ``splits`` (valid split names; ``()`` = any), ``layout``
(the on-disk layout it expects, for ``--list`` and the docs), ``options`` (its settings, declared as
:class:`~data_builders.options.Option` s: ``text4seg build <name> --help`` lists them as flags) and two
methods:

* ``units() -> Sequence``: the work units in a deterministic order (refs, images...), cheap to list;
* ``make(unit, rep) -> list[Sample]``: the samples of one unit (``rep`` is the ``--repeat`` pass, which
  re-seeds the template choice). Bad input raises :class:`BadInput` naming the file.

``make`` builds its samples with :meth:`Builder.sample_id` (the id, the evaluation join key),
:meth:`Builder.rng` (the seeded template choice of that id) and :meth:`Builder.sample` (a
:class:`~text4seg.data.records.Sample` with the build's grid and scheme); it reads its settings with
:meth:`Builder.opt`.

The driver shards the units (``i/N`` takes ``units[i::N]``), repeats them, fans them out to workers
(fork; order kept), writes the rows through an atomic temporary file and returns a report dict.
"""

from __future__ import annotations

import csv
import gc
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from text4seg.data.records import AtomicWriter, Sample, dumps_row, parse_shard, to_swift_row
from text4seg.descriptors import DEFAULT_SCHEME, SCHEMES, grid_shape

from .options import Option, resolve
from .prompts import TEMPLATE_STYLES, sample_rng

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


def target_issue(area: int, on_grid: bool) -> str | None:
    """The issue of a sample meant to have a target: :data:`EMPTY_TARGET` when its full-resolution mask has
    no pixel (``area == 0``), :data:`LOST_ON_GRID` when it has pixels but no grid cell samples one
    (``on_grid`` false), None when the target is fine. The one rule every builder applies, through
    :meth:`Builder.screen_target`."""
    if area <= 0:
        return EMPTY_TARGET
    return None if on_grid else LOST_ON_GRID


@dataclass
class BuildConfig:
    """Everything a builder needs. ``options`` holds builder-specific settings (declared by the builder:
    :attr:`Builder.options`; a builder converts and completes them, see :meth:`Builder.opt`)."""

    root: Path | None
    split: str
    out: Path | None = None
    grid: tuple[int, int] = (16, 16)
    scheme: str = DEFAULT_SCHEME
    seed: int = 0
    with_gt: bool = True
    options: dict = field(default_factory=dict)
    skip_bad: bool = False


EMPTY_TARGETS = Option(
    "empty_targets",
    str,
    None,
    "what happens to a sample whose target would be written as no target: drop, keep or fail "
    "(unset: on a training split drop with --skip-bad, else fail; keep on other splits)",
    choices=EMPTY_POLICIES,
)
CHECK_IMAGES = Option(
    "check_images", bool, True, "read each image's header to check the annotation's size against it"
)
TEMPLATES = Option(
    "templates",
    str,
    "ours",
    "question and answer templates: ours, or official (the released Text4Seg models' questions and "
    "answers verbatim, text4seg/checkpoints/official_data/questions.json)",
    choices=TEMPLATE_STYLES,
)
COMMON_OPTIONS: tuple[Option, ...] = (EMPTY_TARGETS,)


class Builder:
    """Base class; subclasses set the class attributes and implement ``units`` and ``make``."""

    name = ""
    help = ""
    splits: tuple[str, ...] = ()
    layout = ""
    needs_root = True
    options: tuple[Option, ...] = ()

    def __init__(self, cfg: BuildConfig):
        self.cfg = cfg = replace(cfg, options=resolve_options(type(self), cfg.options))
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
        return self.opt("empty_targets", default)

    @classmethod
    def declared(cls) -> tuple[Option, ...]:
        """Every option of this builder: the common ones (``empty_targets``), then its own."""
        return COMMON_OPTIONS + tuple(cls.options)

    def opt(self, name: str, unset=None):
        """The value of declared option ``name`` (converted); ``unset`` when it is not set and has no
        default (a default that depends on the split or the data)."""
        try:
            value = self.cfg.options[name]
        except KeyError:
            raise KeyError(f"builder {self.name!r} reads option {name!r} but does not declare it") from None
        return unset if value is None else value

    def sample_id(self, *parts, rep: int = 0, split: str | None = None) -> str:
        """The id of a sample, the evaluation join key: ``<name>/<split>/<part>/...``, then ``/r<rep>`` on
        a ``--repeat`` pass after the first. ``split`` defaults to the build's (REFER records carry their
        own)."""
        head = [self.name, self.cfg.split if split is None else split]
        return "/".join([*head, *map(str, parts)]) + (f"/r{rep}" if rep else "")

    def rng(self, key: str) -> random.Random:
        """The seeded ``random.Random`` of ``key`` (usually the sample id): templates, crops, prompts."""
        return sample_rng(self.cfg.seed, key)

    def sample(self, sid: str, **fields) -> Sample:
        """A :class:`Sample` with id ``sid`` and the build's grid and scheme; ``fields`` are the rest."""
        return Sample(id=sid, grid=self.cfg.grid, scheme=self.cfg.scheme, **fields)

    def flag(self, issue: str, n: int, where: str) -> bool:
        """Count ``n`` samples with ``issue`` (``where`` names them); True if they must be dropped."""
        self.count(issue, n)
        if len(self.flag_examples) < 5:
            self.flag_examples.append(f"{issue}: {where}")
        if self.empty_policy == "drop":
            self.count("dropped", n)
            return True
        return False

    def screen_target(self, area: int | Callable[[], int], on_grid: bool, n: int, where: str) -> bool:
        """Screen ``n`` samples meant to have a present target (the one shared rule; every builder calls it).

        ``area``: the target's full-resolution pixel count, or a function computing it (called only when
        no grid cell samples the target: a cell on the target implies a pixel, so the area is not needed
        then); ``on_grid``: whether any grid cell samples it.
        An empty or lost target is counted (:meth:`flag`, report ``targets``) and, per ``empty_targets``,
        dropped (True: leave the samples out), failed on after the build, or kept. A kept sample is never
        written as absent: it keeps the positive sentence and its label (its block is all ``others``) and
        is scored on its full-resolution mask. A target absent by design (a category not in the image, an
        id not in the mask, a no-target ref) is not screened."""
        if on_grid:  # a sampled foreground cell is a foreground pixel: area > 0, nothing to flag
            return False
        issue = target_issue(area() if callable(area) else area, on_grid)
        return issue is not None and self.flag(issue, n, where)

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


def resolve_options(builder_cls: type[Builder], given: dict | None) -> dict:
    """``given`` checked against ``builder_cls``'s declared options, converted, defaults filled in;
    ``ValueError`` naming the builder, the unknown key and the allowed names."""
    return resolve(builder_cls.declared(), given, builder_cls.name)


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
    """Validate and assemble a :class:`BuildConfig`; ``with_gt=None`` means "on unless split is train".
    ``options`` are checked by the builder (:func:`resolve_options`)."""
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
