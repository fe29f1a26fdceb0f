"""The builder contract: what a builder declares and the helpers its ``make`` builds samples with.

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

The driver that runs a builder and writes its JSONL file is :func:`data_builders.run.run_build`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from text4seg.data.records import Sample
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
