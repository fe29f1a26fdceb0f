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
checking that each is an ms-swift row (errors name the file, the line and the field). The output is
written atomically; an interrupted mix (Ctrl-C, SIGTERM) leaves no temporary file.

Refused, each with one line naming the culprit: a source with no rows (an empty file is usually a build
that failed; mixing it would silently drop its share, or empty the whole mix), the same file named twice
(also through a symbolic or hard link), ``--out`` equal to a source, ``--total`` below 1, and a ``--total``
that would cycle any source more than :data:`MAX_PASSES` times (``--total 10**12`` is a typo, not a
mixture).

Presets: ``gsva`` = 9:6:3:1 (semantic : referring : VQA : reasoning; four files, in that order), GSVA's
mixture; ``psalm`` = equal weights over any number of files (PSALM trains on an equal task mixture).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from text4seg.data.jsonl import AtomicWriter, iter_lines, parse_line, quote

PRESETS: dict[str, tuple[float, ...] | None] = {"gsva": (9.0, 6.0, 3.0, 1.0), "psalm": None}
MAX_PASSES = 1000  # a source is cycled at most this many times (a bigger --total is refused)


def parse_source(spec: str) -> tuple[str, float]:
    """``"a.jsonl:3" -> ("a.jsonl", 3.0)``; ``"a.jsonl" -> ("a.jsonl", 1.0)``."""
    path, sep, w = spec.rpartition(":")
    try:
        weight = float(w) if sep and path else None
    except ValueError:
        weight = None
    if weight is None:
        return spec, 1.0
    if not (weight > 0 and math.isfinite(weight)):
        raise ValueError(f"weight of {quote(path)} must be > 0 (a finite number), got {quote(w)}")
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
    """Number of rows (non-blank lines), streaming in bounded memory; every row is checked
    (:func:`check_row`): ``ValueError`` names the file, the line and the field of the first bad one."""
    n = 0
    for lineno, raw in iter_lines(path):
        if raw.strip():
            _checked(raw, str(path), lineno)
            n += 1
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
        for lineno, raw in iter_lines(path):
            if not raw.strip():
                continue
            if need and rng.random() * left < need:
                need -= 1
                yield _checked(raw, path, lineno)
            left -= 1
            if not need:
                break


def check_row(row: dict) -> str | None:
    """What makes a parsed row unusable as an ms-swift row, or None: ``messages`` must be a non-empty list of
    objects with a string ``role`` and a string (or list of parts) ``content``; ``images``, when present,
    a path or a list of paths (strings or objects); ``text4seg``, when present, an object."""
    msgs = row.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return f"not an ms-swift row: 'messages' must be a non-empty list, got {quote(msgs)}"
    for k, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return f"messages[{k}] must be an object with a string 'role', got {quote(m)}"
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            return f"messages[{k}].content must be a string or a list of parts, got {quote(content)}"
    images = row.get("images")
    if images is not None and not (
        isinstance(images, str)
        or (isinstance(images, list) and all(isinstance(x, (str, dict)) for x in images))
    ):
        return f"'images' must be a path or a list of paths, got {quote(images)}"
    meta = row.get("text4seg")
    if meta is not None and not isinstance(meta, dict):
        return f"'text4seg' must be an object, got {quote(meta)}"
    return None


def _checked(raw: bytes, path: str, lineno: int) -> str:
    row = parse_line(raw, path, lineno)
    problem = check_row(row) if row is not None else "blank line"
    if problem:
        raise ValueError(f"{path}:{lineno}: {problem}")
    return raw.decode("utf-8").rstrip("\r\n")


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _check_files(paths: Sequence[str], out: str | os.PathLike) -> None:
    """Each source is a regular file named once (links followed: same device and inode), not ``out``."""
    seen: dict[tuple[int, int], str] = {}
    for p in paths:
        if os.path.isdir(p):
            raise IsADirectoryError(f"source {p} is a folder; expected a JSONL file")
        if not os.path.exists(p):
            raise FileNotFoundError(f"source not found: {p}")
        fid = _file_id(p)
        if fid in seen:
            raise ValueError(f"a source is named twice: {seen[fid]} and {p} are the same file")
        seen[fid] = p
    out_id = _file_id(str(out))
    if out_id in seen or Path(out).resolve() in {Path(p).resolve() for p in paths}:
        raise ValueError(f"--out {out} is also a source ({seen.get(out_id, out)})")


def _check_counts(paths: Sequence[str], lines: Sequence[int], weights: Sequence[float], total: int) -> None:
    """``ValueError`` when ``total`` would cycle a source more than :data:`MAX_PASSES` times."""
    counts = apportion(total, weights)
    for p, n, c in zip(paths, lines, counts):
        if c > MAX_PASSES * n:
            s = sum(weights)
            most = int(min(MAX_PASSES * k * s / w for k, w in zip(lines, weights)) + 1e-9)
            raise ValueError(
                f"--total {total} would repeat source {p} ({n} rows) {c / n:.1f} times; "
                f"at most {MAX_PASSES} passes (--total {most} at most with these sources)"
            )


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
    if any(not (w > 0 and math.isfinite(w)) for w in weights) or not math.isfinite(sum(weights)):
        raise ValueError(f"weights must be > 0 (finite numbers), got {quote(weights)}")
    if total is not None and total < 1:
        raise ValueError(
            f"--total must be >= 1, got {total} (leave it out for the largest mix without repeats)"
        )
    _check_files(paths, out)
    lines = [count_lines(p) for p in paths]
    for p, n in zip(paths, lines):
        if not n:
            raise ValueError(f"source {p} has no rows (a failed build?); leave it out or rebuild it")
    if total is None:
        s = sum(weights)
        total = int(min(n * s / w for n, w in zip(lines, weights)) + 1e-9)
        if total < 1:
            raise ValueError(
                f"the weights {quote(weights)} leave no line for a source; give --total or other weights"
            )
    _check_counts(paths, lines, weights, total)
    counts = apportion(total, weights)
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
            line = next(streams[i], None)
            if line is None:
                raise ValueError(f"source {paths[i]} changed while it was mixed (fewer rows than counted)")
            w.write(line)
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
