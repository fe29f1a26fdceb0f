"""Mix JSONL files (built by ``text4seg build``, or any ms-swift JSONL) by ratios, seeded and streaming.

Counts. With weights ``w_i`` (normalised to shares ``p_i``) and ``n_i`` lines per source:

* without ``total``: the largest mixture in which no source repeats: ``N = floor(min_i n_i / p_i)``
  (the scarcest source, relative to its share, is used once in full);
* with ``total = N``: exactly ``N`` lines.

Source ``i`` gives ``c_i`` lines, the largest-remainder apportionment of ``N`` by the shares (ties to the
earlier source), so ``sum c_i == N`` and every ``c_i`` is within 1 of ``N * p_i``.

Lines per source. A source with ``c_i <= n_i`` gives a seeded uniform subset of its lines, in file order
(selection sampling). A source that runs out (``c_i > n_i``, only with ``total``) is **cycled**: as many
whole passes as fit, then a seeded subset of one more pass. Lines are never reordered within a source:
ms-swift shuffles at training time.

Interleaving. The output is a seeded uniformly random interleaving of the sources: each next line comes
from source ``i`` with probability ``remaining_i / remaining``. Memory is constant (one open file per
source, one line at a time); every file is read twice (count, then copy). Lines are copied verbatim after
checking that each is a JSON object with a ``messages`` list (errors name the file and line). The output
is written atomically.

Presets: ``gsva`` = 9:6:3:1 (semantic : referring : VQA : reasoning; four files, in that order), GSVA's
mixture; ``psalm`` = equal weights over any number of files (PSALM trains on an equal task mixture).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from text4seg.data.records import AtomicWriter

PRESETS: dict[str, tuple[float, ...] | None] = {"gsva": (9.0, 6.0, 3.0, 1.0), "psalm": None}


def parse_source(spec: str) -> tuple[str, float]:
    """``"a.jsonl:3" -> ("a.jsonl", 3.0)``; ``"a.jsonl" -> ("a.jsonl", 1.0)``."""
    path, sep, w = spec.rpartition(":")
    try:
        weight = float(w) if sep and path else None
    except ValueError:
        weight = None
    if weight is None:
        return spec, 1.0
    if not weight > 0:
        raise ValueError(f"weight of {path!r} must be > 0, got {w!r}")
    return path, weight


def preset_weights(preset: str, n: int) -> list[float]:
    """The weights of a preset for ``n`` files (``ValueError`` names the presets and what they take)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    w = PRESETS[preset]
    if w is None:
        return [1.0] * n
    if n != len(w):
        raise ValueError(
            f"preset {preset} takes {len(w)} files (semantic, referring, VQA, reasoning), got {n}"
        )
    return list(w)


def count_lines(path: str | os.PathLike) -> int:
    """Number of non-blank lines (streaming); ``ValueError`` names the file and line of non-UTF-8 bytes."""
    n = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{path}:{lineno}: not UTF-8 text") from None
            n += bool(line.strip())
    return n


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Largest-remainder split of ``total`` by ``weights`` (ties to the earlier index)."""
    s = float(sum(weights))
    exact = [total * w / s for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _selected(path: str, n: int, take: int, rng: random.Random) -> Iterator[str]:
    """``take`` lines of the ``n`` non-blank lines of ``path``: whole passes, then selection sampling."""
    passes, rest = divmod(take, n) if n else (0, 0)
    for p in range(passes + (rest > 0)):
        need, left = (n, n) if p < passes else (rest, n)
        with open(path, encoding="utf-8") as fh:
            lineno = 0
            for raw in fh:
                lineno += 1
                if not raw.strip():
                    continue
                if need and rng.random() * left < need:
                    need -= 1
                    yield _checked(raw, path, lineno)
                left -= 1
                if not need:
                    break


def _checked(raw: str, path: str, lineno: int) -> str:
    line = raw.rstrip("\r\n")
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list):
        raise ValueError(f"{path}:{lineno}: not an ms-swift row (no 'messages' list)")
    return line


def mix_jsonl(
    sources: Sequence[tuple[str | os.PathLike, float]],
    out: str | os.PathLike,
    *,
    total: int | None = None,
    seed: int = 0,
) -> dict:
    """Write the mixture of ``sources`` (``[(path, weight), ...]``) to ``out``; return the report
    ``{"out", "total", "seed", "sources": [{"path", "weight", "lines", "taken", "passes"}, ...]}``."""
    if not sources:
        raise ValueError("give at least one source FILE[:WEIGHT]")
    paths = [str(p) for p, _ in sources]
    weights = [float(w) for _, w in sources]
    if any(not w > 0 for w in weights):
        raise ValueError(f"weights must be > 0, got {weights}")
    if len(set(map(os.path.abspath, paths))) != len(paths):
        raise ValueError(f"a source is named twice: {paths}")
    if Path(out).resolve() in {Path(p).resolve() for p in paths}:
        raise ValueError(f"--out {out} is also a source")
    lines = []
    for p in paths:
        try:
            lines.append(count_lines(p))
        except FileNotFoundError:
            raise FileNotFoundError(f"source not found: {p}") from None
    if total is None:
        s = sum(weights)
        total = int(min(n * s / w for n, w in zip(lines, weights)) + 1e-9)
    if total < 0:
        raise ValueError(f"--total must be >= 0, got {total}")
    counts = apportion(total, weights)
    for p, n, c in zip(paths, lines, counts):
        if c and not n:
            raise ValueError(f"source {p} has no lines but its share of --total {total} is {c}")
    rng = random.Random(f"mix\x1f{seed}")
    streams = [
        _selected(p, n, c, random.Random(f"{seed}\x1f{i}"))
        for i, (p, n, c) in enumerate(zip(paths, lines, counts))
    ]
    left = list(counts)
    remaining = total
    with AtomicWriter(out) as w:
        while remaining:
            r = rng.randrange(remaining)
            i = 0
            while r >= left[i]:
                r -= left[i]
                i += 1
            w.write(next(streams[i]))
            left[i] -= 1
            remaining -= 1
    return {
        "out": str(Path(out).resolve()),
        "total": w.count,
        "seed": seed,
        "sources": [
            {"path": p, "weight": wt, "lines": n, "taken": c, "passes": round(c / n, 3) if n else 0.0}
            for p, wt, n, c in zip(paths, weights, lines, counts)
        ],
    }
