"""Question and answer templates (data in ``data_builders/templates/<family>.json``) and seeded choice.

One loader, :func:`load_templates`, reads every family (:data:`FAMILIES`, one JSON file each): ``refer``
(RES, GRES, shapes: ``{target}``), ``semantic`` with modes ``open_vocab``, ``partial`` and ``conditioned``
(``{classes}``), ``reason`` (``{query}``), ``multi`` (``{targets}``), ``interactive`` (``{prompt}``),
``panoptic``, ``video`` (one group per kind of :data:`VIDEO_KINDS`) and ``instance`` (``{classes}``).
An answer is a template sentence, then ``"\\n<seg>" + descriptors + "</seg>"`` (the Text4Seg recipe).
Choices take a ``random.Random`` so a builder seeds them per sample (:func:`sample_rng`), independent of
order, sharding and workers.

``templates official`` (:data:`TEMPLATE_STYLES`): :func:`official_refer_turn` writes the released Text4Seg
models' referring questions and answers verbatim (``text4seg/checkpoints/official_data/questions.json``,
through :mod:`text4seg.checkpoints.official`), drawn by the same seeded ``rng``.
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path

from text4seg.data.video import frame_tags
from text4seg.descriptors import wrap

TEMPLATE_DIR = Path(__file__).parent / "templates"
FAMILIES = ("refer", "semantic", "reason", "multi", "interactive", "panoptic", "video", "instance")
TEMPLATE_STYLES = ("ours", "official")  # builder option ``templates``
SEMANTIC_MODES = ("open_vocab", "partial", "conditioned")
VIDEO_KINDS = ("referring_video", "reasoning_video", "semi_video", "referring_image", "reasoning_image")


@cache
def load_templates(family: str) -> dict:
    """The template dict of a family (one of :data:`FAMILIES`), read once."""
    if family not in FAMILIES:
        raise ValueError(f"unknown template family {family!r}; choose one of {FAMILIES}")
    path = TEMPLATE_DIR / f"{family}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read templates {path}: {exc}") from None


def sample_rng(seed: int, key: str) -> random.Random:
    """A ``random.Random`` determined by ``(seed, key)`` only (string seeding is stable across runs)."""
    return random.Random(f"{seed}\x1f{key}")


def answer(sentence: str, descriptors: str) -> str:
    """``sentence + "\\n<seg>" + descriptors + "</seg>"``."""
    return sentence + "\n" + wrap(descriptors)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def join_classes(classes: list[str]) -> str:
    """``["cat", "dog", "sky"] -> "cat, dog, sky"``."""
    return ", ".join(classes)


def refer_turn(rng: random.Random, target: str, descriptors: str, empty: bool = False) -> tuple[str, str]:
    """(question, answer) for a referring expression; ``empty`` picks a "not found" sentence."""
    t = load_templates("refer")
    q = rng.choice(t["question"]).format(target=target)
    a = rng.choice(t["answer_empty" if empty else "answer"]).format(target=target)
    return q, answer(_cap(a), descriptors)


def official_refer_turn(
    rng: random.Random, expression: str, descriptors: str, strip_commas: bool = False
) -> tuple[str, str]:
    """(question, answer) as the released Text4Seg models were trained: one of the six official referring
    questions, then one of the official answers, drawn by ``rng`` in that order, ``[class_name]`` the
    expression lower-cased and stripped (:func:`text4seg.checkpoints.official.clean_expression`; commas
    removed with ``strip_commas``, as the LLaVA-codebase evaluation does). No-target samples take the same
    answers (the official set has no "not found" sentence; the descriptors say it)."""
    from text4seg.checkpoints import official

    target = official.clean_expression(expression, strip_commas)
    q = official.referring_question(expression, rng, strip_commas)
    a = rng.choice(official.load("questions")["referring"]["answers"]).replace("[class_name]", target)
    return q, answer(a, descriptors)


def semantic_turn(rng: random.Random, mode: str, classes: list[str], descriptors: str) -> tuple[str, str]:
    """(question, answer) for semantic segmentation in ``mode`` (one of :data:`SEMANTIC_MODES`)."""
    if mode not in SEMANTIC_MODES:
        raise ValueError(f"unknown semantic mode {mode!r}; choose one of {SEMANTIC_MODES}")
    t = load_templates("semantic")[mode]
    names = join_classes(classes)
    q = rng.choice(t["question"]).format(classes=names)
    a = rng.choice(t["answer"]).format(classes=names)
    return q, answer(_cap(a), descriptors)


def reason_turn(rng: random.Random, query: str, descriptors: str, empty: bool = False) -> tuple[str, str]:
    """(question, answer) for a reasoning query."""
    t = load_templates("reason")
    q = rng.choice(t["question"]).format(query=query.strip())
    a = rng.choice(t["answer_empty" if empty else "answer"])
    return q, answer(a, descriptors)


def multi_turn(rng: random.Random, expressions: list[str], lines: str) -> tuple[str, str]:
    """(question, answer) for several expressions; ``lines`` are the numbered descriptor lines."""
    t = load_templates("multi")
    targets = "; ".join(f"[{k}] {e}" for k, e in enumerate(expressions, 1))
    return rng.choice(t["question"]).format(targets=targets), rng.choice(t["answer"]) + "\n" + lines


def video_turn(
    rng: random.Random,
    kind: str,
    n_frames: int,
    frame_lines: str,
    *,
    target: str = "",
    query: str = "",
    grid: str = "",
) -> tuple[str, str]:
    """(question with ``n_frames`` frame tags, answer) of a video sample of template ``kind``."""
    if kind not in VIDEO_KINDS:
        raise ValueError(f"unknown video template kind {kind!r}; choose one of {list(VIDEO_KINDS)}")
    t = load_templates("video")[kind]
    fill = dict(target=target, query=query.strip(), grid=grid)
    q = rng.choice(t["question"]).format(**fill)
    a = rng.choice(t["answer"]).format(**fill)
    return frame_tags(n_frames) + q, _cap(a) + "\n" + frame_lines
