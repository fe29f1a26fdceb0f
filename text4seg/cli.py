"""The ``text4seg`` command line: ``text4seg <command> [options]``; ``main(argv=None)`` runs in-process.

Commands live in ``text4seg/commands/<name>.py``; each module defines ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int`` and imports its heavy dependencies inside ``run``. Bad input (a ``ValueError``
or ``OSError`` with a message naming the file or value) prints one line and exits 2; set
``TEXT4SEG_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# name -> module under text4seg.commands (a plain-dict registry: a new command is one entry)
COMMANDS: dict[str, str] = {
    "build": "build",
    "stats": "stats",
    "train": "train",
    "export": "export",
    "predict": "predict",
    "decode": "decode",
    "evaluate": "evaluate",
    "demo": "demo",
    "mix": "mix",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="text4seg",
        description="text4seg: decoder-free, text-as-mask segmentation with multimodal LLMs.",
    )
    from text4seg import __version__

    parser.add_argument("--version", action="version", version=f"text4seg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"text4seg.commands.{module}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, OSError, ImportError) as exc:
        if os.environ.get("TEXT4SEG_DEBUG"):
            raise
        print(f"text4seg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
