"""The ``--video`` flags of ``text4seg predict`` (kept out of predict.py; the run: text4seg.inference.run)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    """The video group: ``--frames``, ``--sampling``, ``--form``, ``--expression-id``, ``--sam2-*``."""
    g = p.add_argument_group("video (--video)")
    g.add_argument("--frames", type=int, default=8, help="frames shown to the model (T)")
    g.add_argument("--sampling", default="uniform", choices=["uniform", "keyframe"], help="frame sampling")
    g.add_argument("--form", default="frames", choices=["frames", "delta"], help="multi-frame answer form")
    g.add_argument("--expression-id", default="0", help="the expression's id in Annotations/<video>/<id>/")
    g.add_argument("--sam2-checkpoint", type=Path, default=None, help="SAM 2 weights: propagate with SAM 2")
    g.add_argument("--sam2-config", default=None, help="SAM 2 model config name (with --sam2-checkpoint)")
