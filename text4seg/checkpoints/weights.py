"""Weight folders: safetensors/bin shards in, sharded safetensors out, folders written whole or not at all.

Shared by the converters of released checkpoints (:mod:`text4seg.checkpoints.convert`,
:mod:`text4seg.checkpoints.swift2_lora`). An output folder is written to a temporary sibling and renamed at
the end (:func:`atomic_folder`): the target is absent or complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from text4seg._lazy import require

SHARD_BYTES = 4 * 2**30


# ----------------------------------------------------------------------------------------------- files
def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model/adapter folder: ``*.safetensors`` if any, else ``*.bin``; ``ValueError``
    when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    files = [f for f in files if f.name not in ("training_args.bin", "optimizer.bin", "scheduler.bin")]
    if not files:
        raise ValueError(f"{folder}: no *.safetensors or *.bin weight file")
    return files


def load_tensors(folder: Path) -> dict[str, Any]:
    """Every tensor of ``folder``'s weight files (safetensors memory-mapped; ``.bin`` read with
    ``weights_only=True``); a key found twice or an unreadable file is a ``ValueError`` naming the file."""
    torch = require("torch")
    st = require("safetensors.torch")
    out: dict[str, Any] = {}
    for f in weight_files(folder):
        try:
            part = (
                st.load_file(str(f))
                if f.suffix == ".safetensors"
                else torch.load(f, map_location="cpu", weights_only=True, mmap=True)
            )
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
            raise ValueError(f"{f}: cannot read the weights ({type(exc).__name__}: {exc})") from None
        if not isinstance(part, dict):
            raise ValueError(f"{f}: not a state dict (a {type(part).__name__})")
        for k, v in part.items():
            if not isinstance(v, torch.Tensor):
                raise ValueError(f"{f}: entry {k!r} is not a tensor")
            if k in out:
                raise ValueError(f"{f}: tensor {k!r} appears in two weight files")
            out[k] = v
    return out


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` (``ValueError`` naming the file when it is not one)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


@contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """A temporary sibling folder of ``out``, renamed onto ``out`` when the block ends without error and
    removed otherwise. ``out`` must not exist (a conversion never overwrites a model)."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise ValueError(f"{out}: already exists (choose a new --out folder)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_tensors(tensors: dict[str, Any], folder: Path, shard_bytes: int = SHARD_BYTES) -> list[str]:
    """Write ``tensors`` as ``model.safetensors`` or shards plus ``model.safetensors.index.json``."""
    st = require("safetensors.torch")
    shards: list[dict[str, Any]] = [{}]
    size = 0
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = t
        size += n
    if len(shards) == 1:
        st.save_file(shards[0], str(folder / "model.safetensors"), metadata={"format": "pt"})
        return ["model.safetensors"]
    names, weight_map, total = [], {}, 0
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        st.save_file(shard, str(folder / name), metadata={"format": "pt"})
        names.append(name)
        for k, t in shard.items():
            weight_map[k] = name
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return names


def few(names: Sequence[str], n: int = 6) -> str:
    """Up to ``n`` sorted names quoted, then how many more (for one-line errors)."""
    names = sorted(names)
    more = f" ... (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(repr(x) for x in names[:n]) + more
