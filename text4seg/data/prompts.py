"""Question and answer templates (data in ``text4seg/data/templates/*.json``) and seeded choice among them.

Families: ``refer`` (RES, GRES, shapes: ``{target}``), ``semantic`` with modes ``open_vocab``, ``partial``
and ``conditioned`` (``{classes}``), and ``reason`` (``{query}``). An answer is a template sentence, then
``"\\n<seg>" + descriptors + "</seg>"`` (the Text4Seg recipe). Choices take a ``random.Random`` so a
builder seeds them per sample (:func:`sample_rng`), independent of order, sharding and workers.
"""

from __future__ import annotations

import json
import random
from functools import cache
from pathlib import Path

from text4seg.descriptors import wrap

TEMPLATE_DIR = Path(__file__).parent / "templates"
FAMILIES = ("refer", "semantic", "reason")
SEMANTIC_MODES = ("open_vocab", "partial", "conditioned")


@cache
def load_templates(family: str) -> dict:
    """The template dict of a family (``refer``, ``semantic`` or ``reason``), read once."""
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
