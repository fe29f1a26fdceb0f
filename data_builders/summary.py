"""``python -m data_builders.summary FILE.jsonl ...``: samples, targets per sample, empty targets, tasks."""

from __future__ import annotations

import json
import sys

from data_builders.owndata import target_summary

if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(json.dumps({"file": path, **target_summary(path)}))
