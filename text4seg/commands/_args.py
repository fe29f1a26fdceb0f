"""Argument helpers shared by every command, so a flag means the same thing everywhere.

``--grid`` (N or RxC), ``--scheme`` (choices from the scheme registry), ``--root`` (the folder relative
image or dataset paths are resolved against), ``--set KEY=VALUE`` (repeatable), ``--no-progress``,
``--quiet`` and ``--verbose``.
"""

from __future__ import annotations

import argparse

from text4seg.data.images import check_image_size
from text4seg.descriptors import DEFAULT_SCHEME, GEOMETRIES, SCHEMES, grid_shape


def _pair(text: str, example: str) -> tuple[int, int]:
    parts = str(text).lower().split("x")
    try:
        vals = [int(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or {example}, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected N or {example} with positive sides, got {text!r}")
    return vals[0], vals[1]


def parse_grid(text: str) -> tuple[int, int]:
    """``"16"`` -> ``(16, 16)``; ``"24x32"`` -> ``(24, 32)`` (rows x cols); the ``--grid`` type
    (at most :data:`~text4seg.descriptors.MAX_GRID_SIDE` per side)."""
    pair = _pair(text, "RxC (e.g. 16 or 24x32)")
    try:
        return grid_shape(pair)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_size(text: str) -> tuple[int, int]:
    """``"480x640"`` -> ``(480, 640)`` (height x width); ``"64"`` -> ``(64, 64)``; the ``--size`` type
    (limits: :func:`text4seg.data.images.check_image_size`)."""
    pair = _pair(text, "HxW (e.g. 480x640)")
    try:
        return check_image_size(*pair)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def add_geometry(p: argparse.ArgumentParser) -> None:
    """``--geometry pil|official``: how a grid is painted onto pixels (text4seg.descriptors.GEOMETRIES)."""
    p.add_argument(
        "--geometry",
        choices=GEOMETRIES,
        default="pil",
        help="grid -> pixels: pil (centre sampling, the inverse of how the data were made; default) or "
        "official (the official evaluation's F.interpolate nearest: reproduces published raw numbers)",
    )


def add_set(p: argparse.ArgumentParser, dest: str, help: str) -> None:
    """``--set KEY=VALUE``, repeatable, collected as a list of strings in ``args.<dest>`` (``[]`` if absent);
    the command parses them."""
    p.add_argument("--set", dest=dest, action="append", default=[], metavar="KEY=VALUE", help=help)


def add_root(p: argparse.ArgumentParser, help: str) -> None:
    """``--root DIR``: the folder relative paths are resolved against."""
    p.add_argument("--root", default=None, metavar="DIR", help=help)


def add_progress(p: argparse.ArgumentParser, child: bool = False, verbose: bool = False) -> None:
    """``--no-progress`` (no progress bars) and ``--quiet`` (results and errors only: the command's own
    progress lines off too). Library noise (ms-swift/transformers INFO logging, ms-swift's per-load
    ``trust_remote_code`` warning, libraries' Python warnings) is off by default
    (:func:`text4seg._lazy.library_noise_off`); ``verbose`` adds ``--verbose``, which shows it. ``child``:
    the command runs ms-swift in a subprocess, which gets ``TQDM_DISABLE=1`` / ``LOG_LEVEL=WARNING``."""
    where = " in the swift child process" if child else ""
    p.add_argument("--no-progress", action="store_true", help=f"no progress bars{where}")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print results and errors only (no progress lines)",
    )
    if verbose:
        p.add_argument(
            "--verbose",
            action="store_true",
            help=f"also show the libraries' logs and warnings{where} (ms-swift INFO lines, "
            "its trust_remote_code notes, torch/transformers warnings); off by default",
        )


def add_trust(p: argparse.ArgumentParser, what: str = "load a model folder") -> None:
    """``--trust-remote-code``: without it a model folder that ships code is refused (checkpoints.trust)."""
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help=f"{what} that ships Python code (auto_map, *.py); refused otherwise",
    )
