"""Suite-wide rules. Under `make test` (``TEXT4SEG_REQUIRE_EXTRAS=1``, what CI runs) a required extra that
fails to import is a failure, not a skip: CI must not go green with the end-to-end tests skipped. Locally, a
module whose extra is missing skips as before (``pytest.importorskip``)."""

from __future__ import annotations

import os

import pytest

REQUIRE_EXTRAS = os.environ.get("TEXT4SEG_REQUIRE_EXTRAS", "") not in ("", "0")

if REQUIRE_EXTRAS:
    _importorskip = pytest.importorskip

    def _required(modname: str, *args, **kwargs):
        try:
            return _importorskip(modname, *args, **kwargs)
        except pytest.skip.Exception as exc:
            pytest.fail(f"TEXT4SEG_REQUIRE_EXTRAS: {modname} does not import ({exc})", pytrace=False)

    pytest.importorskip = _required
