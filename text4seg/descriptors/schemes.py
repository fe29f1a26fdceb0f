"""The registry of descriptor schemes: name -> :class:`~text4seg.descriptors.core.Scheme`.

Adding a scheme is one module (see :mod:`text4seg.descriptors.rrle` for the shape) and one entry here;
``encode``/``decode``, the constrained-decoding grammars and regexes, the answer budget, the command-line
``--scheme`` choices, the tests and the benchmarks all read this dict.
"""

from __future__ import annotations

from text4seg.descriptors.compact import COMPACT
from text4seg.descriptors.core import Scheme
from text4seg.descriptors.full import FULL
from text4seg.descriptors.irle import IRLE
from text4seg.descriptors.rrle import RRLE

SCHEMES: dict[str, Scheme] = {
    "rrle": RRLE,
    "irle": IRLE,
    "full": FULL,
    "compact": COMPACT,
}


def get_scheme(name: str) -> Scheme:
    """The registered scheme ``name``; ``ValueError`` naming the registered ones otherwise."""
    try:
        return SCHEMES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown scheme {name!r}; choose one of {sorted(SCHEMES)}") from None
