"""Builder options: each builder declares its settings as :class:`Option` s (name, type, default, help).

The declarations are the one source of truth: ``text4seg build <builder> --help`` lists them as flags
(``absent_rate`` -> ``--absent-rate``), and :func:`resolve` checks a library caller's ``options={...}``
against them (unknown key -> ``ValueError`` naming the builder, the key and the allowed set; values are
converted to the declared type, strings such as ``"0.2"`` or ``"true"`` included).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    """One builder setting.

    ``type`` is ``str``, ``int``, ``float``, ``bool`` or ``list`` (a comma-separated list on the command
    line, of ``item`` values); ``default=None`` means "unset: the builder decides" (its ``help`` says how);
    ``choices`` (when not empty) are the only values allowed (each item's, for a list).
    """

    name: str
    type: type = str
    default: object = None
    help: str = ""
    choices: tuple = ()
    item: type = str

    @property
    def flag(self) -> str:
        """The command-line flag: ``--`` + the name with ``-`` for ``_``."""
        return "--" + self.name.replace("_", "-")

    def convert(self, value, owner: str):
        """``value`` (a native value or a command-line string) as the declared type; ``None`` -> default."""
        if value is None:
            return self.default
        try:
            out = self._convert(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{owner}: option {self.name}={value!r}: expected {self._expected()}") from None
        self._check_choices(out, owner)
        return out

    def _convert(self, value):
        if self.type is list:
            items = value.split(",") if isinstance(value, str) else list(value)
            return [_scalar(self.item, v.strip() if isinstance(v, str) else v) for v in items if v != ""]
        return _scalar(self.type, value)

    def _check_choices(self, value, owner: str) -> None:
        if not self.choices:
            return
        for v in value if isinstance(value, list) else [value]:
            if v not in self.choices:
                raise ValueError(f"{owner}: option {self.name}={v!r}: choose one of {list(self.choices)}")

    def _expected(self) -> str:
        if self.type is list:
            return f"a comma-separated list of {self.item.__name__}"
        return {bool: "true or false", int: "an integer", float: "a number"}.get(self.type, "a string")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add this option to ``parser`` as a flag whose ``dest`` is the option's name."""
        shown = self.default not in (None, "")  # unset: the help says what the builder does then
        text = f"{self.help} (default: {_shown(self.default)})" if shown else self.help
        if self.type is bool:
            parser.add_argument(
                self.flag, dest=self.name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
            return
        metavar = "{" + ",".join(map(str, self.choices)) + "}" if self.choices else self.name.upper()
        if self.type is list:
            metavar = f"{metavar}[,...]"
        parser.add_argument(self.flag, dest=self.name, default=None, metavar=metavar, help=text)


def _scalar(kind: type, value):
    """``value`` as ``kind``: an int refuses ``2.5`` and ``True``; a bool takes ``true/false/1/0/yes/no``."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in _TRUE or s in _FALSE:
            return s in _TRUE
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value.strip()) if isinstance(value, str) else int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        out = float(value)
        if out != out or out in (float("inf"), float("-inf")):
            raise ValueError(value)
        return out
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise TypeError(value)
    return str(value)


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def resolve(declared: Iterable[Option], given: Mapping | None, owner: str) -> dict:
    """Every declared option's value: ``given``'s, converted, else the default. ``ValueError`` for a key
    that is not declared (naming ``owner``, the key and the allowed names)."""
    table = {o.name: o for o in declared}
    given = dict(given or {})
    unknown = sorted(k for k in given if k not in table)
    if unknown:
        flags = ", ".join(sorted(table))
        raise ValueError(f"unknown option(s) {unknown} for builder {owner!r}; it has: {flags}")
    return {name: o.convert(given.get(name), owner) for name, o in table.items()}
