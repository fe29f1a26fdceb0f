"""How well predictions and ground truth joined, said loudly: ``text4seg evaluate`` exits non-zero when
no prediction matches a ground-truth query (wrong ids, the wrong --gt file), and warns on stderr when
some ground-truth queries have no prediction (``missing``) or some predictions no ground truth
(``unmatched``), so that a score over a fraction of the set is never mistaken for the whole."""

from __future__ import annotations

import os
import sys


def match_verdict(metrics: dict, pred: str | os.PathLike, gt: str | os.PathLike) -> int:
    """Print the join warnings to stderr; the exit code (1: nothing matched, else 0)."""
    n, missing, unmatched = metrics["n"], metrics["missing"], metrics["unmatched"]
    if n == 0:
        print(
            f"text4seg evaluate: error: no prediction of {pred} matches a ground-truth query of {gt} "
            f"(join key: text4seg.id and turn; {unmatched} unmatched predictions, {missing} missing)",
            file=sys.stderr,
        )
        return 1
    if missing or unmatched:
        print(
            f"text4seg evaluate: WARNING: scored {n} queries only: {missing} ground-truth queries have no "
            f"prediction (missing), {unmatched} predictions match no ground truth (unmatched)",
            file=sys.stderr,
        )
    return 0
