"""Hostile answers for the lenient decoder: eight kinds of about 1.2 MB of garbage (after ``<seg>``).

The tests assert that decoding each never raises (tests/test_codec.py); benchmarks/codec.py prints the
worst decode time over them (a quadratic parser would take minutes).
"""

from __future__ import annotations

GARBAGE: tuple[str, ...] = (
    "x" * 1_200_000,
    "| *" * 400_000,
    "*" * 1_200_000,
    "\n" * 1_200_000,
    "dog *1\n " * 150_000,
    "<seg>" * 240_000,
    "9" * 1_200_000,
    " *9" * 400_000,
)
