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


def module_graph() -> dict[str, set[str]]:
    """``{module: the text4seg/data_builders modules it imports}`` over both packages (lazy imports too;
    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module)."""
    files = {}
    for pkg in ("text4seg", "data_builders"):
        for path in (PACKAGE.parent / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
            files[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_module_imports_itself_back_through_others():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check sees one
    found = cycles(module_graph())
    assert not found, "import cycles (lazy imports count):\n" + "\n".join(" <-> ".join(c) for c in found)
