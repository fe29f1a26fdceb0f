"""Argument helpers shared by every command, so a flag means the same thing everywhere.

``--grid`` (N or RxC), ``--scheme`` (choices from the scheme registry), ``--root`` (the folder relative
image or dataset paths are resolved against), ``--no-progress`` and ``--quiet``.
"""

from __future__ import annotations

import argparse

from text4seg.descriptors import DEFAULT_SCHEME, SCHEMES


def parse_grid(text: str) -> tuple[int, int]:
    """``"16"`` -> ``(16, 16)``; ``"24x32"`` -> ``(24, 32)`` (rows x cols); the ``--grid`` type."""
    parts = str(text).lower().split("x")
    try:
        vals = [int(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or RxC (e.g. 16 or 24x32), got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected N or RxC with positive sides, got {text!r}")
    return vals[0], vals[1]


def add_grid(p: argparse.ArgumentParser, default: str | None = "16", extra: str = "") -> None:
    """``--grid N|RxC``: the descriptor grid, rows x cols (parsed to a ``(rows, cols)`` tuple)."""
    shown = "none" if default is None else default
    p.add_argument(
        "--grid",
        type=parse_grid,
        default=None if default is None else parse_grid(default),
        metavar="N|RxC",
        help=f"descriptor grid, N or ROWSxCOLS (default {shown}){extra}",
    )


def add_scheme(p: argparse.ArgumentParser, default: str | None = DEFAULT_SCHEME, extra: str = "") -> None:
    """``--scheme NAME``: a descriptor scheme of the registry (``text4seg.SCHEMES``)."""
    p.add_argument(
        "--scheme",
        choices=sorted(SCHEMES),
        default=default,
        help=f"descriptor scheme (default {default or 'none'}){extra}",
    )


def add_root(p: argparse.ArgumentParser, help: str) -> None:
    """``--root DIR``: the folder relative paths are resolved against."""
    p.add_argument("--root", default=None, metavar="DIR", help=help)


def add_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress`` (no progress bars) and ``--quiet`` (also silences ms-swift's INFO logging)."""
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--quiet", action="store_true", help="print results and errors only (silences ms-swift INFO logs)"
    )
