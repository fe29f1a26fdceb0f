"""The environment of tests that load, train or serve tiny models: no hub access, caches in a temporary
folder, few threads.

- :func:`offline_env`: ``os.environ`` for a ``swift`` / ``text4seg`` subprocess (single process, CPU).
- :func:`offline`: the same hub and cache variables in this process (a user's own setting of each is
  kept), restored on exit.
- :func:`one_torch_thread`: one torch thread (several times faster than two on a shared 2-core CPU),
  restored on exit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# launcher variables that would make ms-swift start several processes or pick a device
LAUNCH_VARS = ("NPROC_PER_NODE", "NNODES", "CUDA_VISIBLE_DEVICES")


def offline_env(tmp: Path, unset: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The demo's environment for ms-swift (:func:`text4seg.demo.train.offline_env`: a copy of
    ``os.environ`` offline, with the caches under ``tmp``) with 2 OpenMP threads, without
    :data:`LAUNCH_VARS` and ``unset``; ``extra`` variables are set last."""
    from text4seg.demo.train import offline_env as swift_offline_env

    env = swift_offline_env(tmp)
    env.update(OMP_NUM_THREADS="2", **extra)
    for var in (*LAUNCH_VARS, *unset):
        env.pop(var, None)
    return env


@contextmanager
def offline(root: Path) -> Iterator[pytest.MonkeyPatch]:
    """Hub and datasets offline and the ModelScope / Hugging Face caches under ``root`` (each unless the
    environment already sets it), for the code that runs in this process; restored on exit."""
    with pytest.MonkeyPatch.context() as mp:
        for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
            mp.setenv(k, os.environ.get(k, "1"))
        mp.setenv("MODELSCOPE_CACHE", os.environ.get("MODELSCOPE_CACHE", str(root / "ms")))
        mp.setenv("HF_HOME", os.environ.get("HF_HOME", str(root / "hf")))
        yield mp


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread inside the block (the former count restored on exit)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
