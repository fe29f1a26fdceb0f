"""Video samples: frame listing, extraction and sampling, and the frame tags of the multi-image question.

A video sample shows ``T`` frames as ms-swift multi-image input: the question starts with one line per
frame, ``"Frame k: <image>"`` (``k`` 1-based), then the instruction (the builders' templates); the
answer is a sentence then the ``Frame k:`` lines of :mod:`text4seg.descriptors.video`. Its JSONL row
is the usual one (:mod:`text4seg.data.records`) with ``images`` = the T frame paths, task ``vres`` or
``vreason``, ``source.image_id`` = the video id, ``source.ref_id`` = the expression id, and ``gt.masks`` =
one COCO RLE per shown frame. Example (T = 2)::

    user:       "Frame 1: <image>\\nFrame 2: <image>\\nTrack the dog through the frames above ..."
    assistant:  "Here is the dog, frame by frame.\\nFrame 1: <seg>...</seg>\\nFrame 2: absent\\n"

Sampling (:func:`sample_frames`): ``uniform`` takes T frames evenly spread over the clip (first and
last included); ``keyframe`` spreads them evenly over the clip's accumulated change instead of its time
(the builders' change is ``1 - IoU`` of consecutive target masks when they are known; else the mean
absolute difference of consecutive 32 x 32 grey thumbnails, :func:`image_change`), so quiet stretches get
few frames and busy ones many.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SAMPLINGS = ("uniform", "keyframe")
FRAME_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def frame_tags(n_frames: int) -> str:
    """``"Frame 1: <image>\\n...Frame T: <image>\\n"``: the start of a video question."""
    return "".join(f"Frame {k}: <image>\n" for k in range(1, n_frames + 1))


def sample_frames(
    n_total: int, t: int, mode: str = "uniform", change: Sequence[float] | None = None
) -> list[int]:
    """Indices (ascending, distinct) of ``min(t, n_total)`` frames of an ``n_total``-frame clip.

    ``change[i]`` (length ``n_total - 1``) is how much frame ``i + 1`` differs from frame ``i``; used by
    ``keyframe`` mode (uniform when it is None or all zero).
    """
    if mode not in SAMPLINGS:
        raise ValueError(f"unknown frame sampling {mode!r}; choose one of {list(SAMPLINGS)}")
    if t < 1:
        raise ValueError(f"number of frames must be >= 1, got {t}")
    if n_total <= t:
        return list(range(n_total))
    if mode == "keyframe" and change is not None and float(np.sum(change)) > 0:
        pos = np.concatenate([[0.0], np.cumsum(np.asarray(change, dtype=float))])
    else:
        pos = np.arange(n_total, dtype=float)
    targets = np.linspace(pos[0], pos[-1], t)
    picked: list[int] = []
    for x in targets:  # the nearest unused frame to each target position, kept ascending and distinct
        i = int(np.argmin(np.abs(pos - x)))
        lo = picked[-1] + 1 if picked else 0
        hi = n_total - (t - len(picked))
        picked.append(min(max(i, lo), hi))
    return picked


def image_change(paths: Sequence[str | os.PathLike]) -> list[float]:
    """Mean absolute difference (0-1) of consecutive frames' 32 x 32 grey thumbnails."""
    from text4seg.data.images import open_image

    thumbs = []
    for p in paths:
        with open_image(p) as im:
            thumbs.append(np.asarray(im.convert("L").resize((32, 32)), dtype=np.float32) / 255)
    return [float(np.abs(a - b).mean()) for a, b in zip(thumbs, thumbs[1:])]


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """The image files of a frame folder, sorted by name (``00005.jpg`` ...); ``ValueError`` if none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OSError(f"frame folder not found: {folder}")
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTS and p.is_file())
    if not frames:
        raise ValueError(f"no frames ({', '.join(FRAME_EXTS)}) in {folder}")
    return frames


def extract_frames(video: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Decode a video file (PyAV, when installed) into ``out_dir/00000.jpg ...``; returns the paths."""
    from text4seg._lazy import require

    av = require("av")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        with av.open(str(video)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                p = out / f"{i:05d}.jpg"
                frame.to_image().convert("RGB").save(p, quality=95)
                paths.append(p)
    except av.error.FFmpegError as exc:
        raise ValueError(f"cannot decode video {video}: {exc}") from None
    if not paths:
        raise ValueError(f"no frames decoded from {video}")
    return paths
