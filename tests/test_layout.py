"""The package's import graph by room: the stages (training, inference, evaluation) stand side by side over
the shared rooms (data, descriptors, decoding, checkpoints); serving and the demo sit on top; the command line
on top of everything. Read from the source with ``ast`` (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "text4seg"

# room -> the rooms it may import (besides itself and private top-level modules such as _lazy)
ALLOWED: dict[str, set[str]] = {
    "descriptors": set(),
    "decoding": {"descriptors"},
    "data": {"descriptors"},
    "checkpoints": {"data", "descriptors"},
    "training": {"data", "descriptors", "decoding", "checkpoints"},
    "inference": {"data", "descriptors", "decoding", "checkpoints"},
    "evaluation": {"data", "descriptors"},
    "serving": {"data", "descriptors", "checkpoints", "inference"},
    "demo": {"data", "descriptors", "decoding", "checkpoints", "training", "inference", "evaluation"},
}


def imported_rooms(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "text4seg" and len(parts) > 1 and not parts[1].startswith("_"):
                rooms.add(parts[1])
    return rooms


def test_every_room_imports_only_the_rooms_beneath_it():
    wrong = []
    for room, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / room).rglob("*.py")):
            for other in imported_rooms(path) - allowed - {room}:
                wrong.append(f"{path.relative_to(PACKAGE.parent)} imports text4seg.{other}")
    assert not wrong, "\n".join(wrong)


def test_every_room_is_in_the_layout():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms - {"commands", "recipes"} == set(ALLOWED)
