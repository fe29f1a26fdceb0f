"""A restricted unpickler for REFER ``refs(...).p`` files (pickles downloaded from the internet).

It rebuilds only what the pickle opcodes build without calling anything: dicts, lists, tuples, sets,
strings, bytes, numbers, booleans and None. Any reference to a global (class or function), and any
persistent id, is refused before it can run, with a one-line :class:`UnsafePickleError` naming the file.
Python 2 pickles (the original REFER files) are read with UTF-8 strings, falling back to Latin-1.
"""

from __future__ import annotations

import io
import os
import pickle


class UnsafePickleError(ValueError):
    """The pickle tried to reference a global or a persistent object; nothing was executed."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh, name: str, **kw):
        super().__init__(fh, **kw)
        self._name = name

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle hook
        raise UnsafePickleError(
            f"refusing to load {self._name}: it references {module}.{name}; "
            "only plain containers, strings and numbers are allowed"
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(f"refusing to load {self._name}: it uses persistent ids")


def safe_loads(data: bytes, name: str = "<bytes>"):
    """Unpickle ``data`` allowing plain data only; raises :class:`UnsafePickleError` or ``ValueError``."""
    last: Exception | None = None
    for encoding in ("utf-8", "latin-1"):
        try:
            return _RestrictedUnpickler(io.BytesIO(data), name, encoding=encoding).load()
        except UnsafePickleError:
            raise
        except UnicodeDecodeError as exc:
            last = exc
        except Exception as exc:  # truncated or corrupt pickles raise many types
            raise ValueError(f"corrupt pickle {name}: {type(exc).__name__}: {exc}") from None
    raise ValueError(f"cannot decode strings in pickle {name}: {last}")


def safe_load(path: str | os.PathLike):
    """Unpickle the file at ``path`` with :func:`safe_loads`; a missing file raises ``OSError``."""
    try:
        data = open(path, "rb").read()  # noqa: SIM115
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {path}") from None
    return safe_loads(data, str(path))
