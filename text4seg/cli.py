"""The ``text4seg`` command line: ``text4seg <command> [options]``; ``main(argv=None)`` runs in-process.

Commands live in ``text4seg/commands/<name>.py``; each module defines ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int`` and imports its heavy dependencies inside ``run``; it parses arguments and
calls one library function. Shared flags (``--grid``, ``--scheme``, ``--root``, ``--no-progress``,
``--quiet``) come from :mod:`text4seg.commands._args`. A bad flag (unknown choice, malformed value) and
bad input (a ``ValueError`` or ``OSError`` with a message naming the file or value) print one line
``text4seg CMD: error: ...`` and exit 2; set ``TEXT4SEG_DEBUG=1`` for the traceback. Ctrl-C prints one line
and exits 130 (no traceback); SIGTERM (a scheduler's kill, ``timeout``) is raised as :class:`Terminated`, a
``KeyboardInterrupt``, so every ``with``/``finally`` cleans up (temporary files, uploads) the same way, and
exits 143; a closed pipe (``| head``) ends quietly. Quiet by default: every command runs inside
:func:`text4seg._lazy.library_noise_off` (ms-swift/transformers INFO logging, ms-swift's per-load
``trust_remote_code`` warning and libraries' Python warnings off, here and in child processes) unless it
was given ``--verbose``; ``--quiet`` also turns off the command's own progress lines.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence

# name -> module under text4seg.commands (a plain-dict registry: a new command is one entry)
COMMANDS: dict[str, str] = {
    "build": "build",
    "stats": "stats",
    "mix": "mix",
    "train": "train",
    "export": "export",
    "predict": "predict",
    "decode": "decode",
    "merge": "merge",
    "evaluate": "evaluate",
    "app": "app",
    "demo": "demo",
    "convert": "convert",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


class UsageError(Exception):
    """A bad command line (argparse's message, prefixed with the command's name)."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors become one line (no usage block), raised as :class:`UsageError`."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with ``only`` (a command's name) just that command's subparser: a run
    imports only its own command module (``build``'s imports the builders; ``merge``'s does not)."""
    parser = _Parser(
        prog="text4seg",
        description="text4seg: decoder-free, text-as-mask segmentation with multimodal LLMs.",
    )
    from text4seg import __version__

    parser.add_argument("--version", action="version", version=f"text4seg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            continue
        mod = importlib.import_module(f"text4seg.commands.{module}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command an argument list starts with, else None (``--help``, ``--version``, a typo: the whole
    parser answers)."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    try:
        if not getattr(args, "verbose", False):
            from text4seg._lazy import library_noise_off

            with library_noise_off():  # restored afterwards: in-process callers (tests) keep their logging
                return int(args._run(args) or 0)
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        if os.environ.get("TEXT4SEG_DEBUG"):
            raise
        if isinstance(sys.exc_info()[1], Terminated):
            print(f"\ntext4seg {args.command}: terminated", file=sys.stderr)
            return 143
        print(f"\ntext4seg {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `text4seg ... | head`: the reader left; say nothing more
        _silence_stdout()
        return 141
    except (ValueError, OSError, ImportError) as exc:
        if os.environ.get("TEXT4SEG_DEBUG"):
            raise
        print(f"text4seg {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's exit-time flush of a closed pipe prints nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
