"""The output folder of ``predict`` and ``decode``: write only inside it, never through a link, and
never mix the results of different options.

:func:`check_out_dir` refuses (``ValueError`` naming the paths) an output folder whose entries that we
would write (``results.jsonl``, ``overlays/``, ``masks/``, ...) are symbolic links (writing through one
lands outside ``--out``), files with more than one hard link (appending to one changes every other name
of it, wherever it is), FIFOs or devices, or are of the wrong kind (a folder where a file goes, or the
reverse). Files inside the folders are written through a temporary file and a rename, which replaces a
link instead of writing through it.
:func:`record_options` keeps the options of a run in ``OUT/run.json``::

    {"command": "predict", "options": {"model": "/abs/ckpt", "constrained": false, "grid": [16, 16], ...}}

A later run into the same folder with other options is an error naming every differing option (its
old and new value), unless ``overwrite=True`` (``--overwrite``): then the earlier results of the
command are removed and the new options recorded. Options that do not change a result (batch size,
progress bars, ``--limit``) are not recorded, so a resumed run may change them.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from text4seg.data.jsonl import atomic_path

RUN_NAME = "run.json"


def check_out_dir(out: str | os.PathLike, files: Iterable[str] = (), folders: Iterable[str] = ()) -> Path:
    """Create ``out`` (a folder) and check that the ``files`` and ``folders`` we will write inside it are
    not symbolic links and are of the right kind; ``ValueError`` names every offending path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    bad = []
    for name, want_dir in [*((f, False) for f in files), *((d, True) for d in folders)]:
        p = out / name
        if p.is_symlink():
            bad.append(f"{p} is a symbolic link (to {os.readlink(p)})")
        elif p.exists() and p.is_dir() != want_dir:
            kind, want = ("folder", "file") if p.is_dir() else ("file", "folder")
            bad.append(f"{p} is a {kind}, expected a {want}")
        elif p.exists() and not want_dir:
            st = p.stat()
            if not stat.S_ISREG(st.st_mode):
                bad.append(f"{p} is not a regular file (a FIFO or device)")
            elif st.st_nlink > 1:  # appending would change the other names of the same file too
                bad.append(f"{p} is a hard link ({st.st_nlink} names share its content)")
    if bad:
        raise ValueError(f"refusing to write into --out {out}: {'; '.join(bad)}; move them away")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _jsonable(v):
    if isinstance(v, os.PathLike):
        return os.path.abspath(v)
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def record_options(
    out: str | os.PathLike,
    command: str,
    options: dict,
    *,
    overwrite: bool = False,
    outputs: Iterable[str] = (),
) -> Path:
    """Write ``OUT/run.json`` (see the module docstring), or check it against an earlier run's.

    ``outputs``: the files and folders of ``command`` in ``out``, removed when ``overwrite`` and the
    options differ (or when ``overwrite`` alone: a fresh run). Returns the ``run.json`` path.
    """
    out = check_out_dir(out, files=[RUN_NAME])
    path = out / RUN_NAME
    new = {"command": command, "options": {k: _jsonable(v) for k, v in sorted(options.items())}}
    new = json.loads(json.dumps(new))  # normalised as it will be read back
    if path.exists() and not overwrite:
        try:
            from text4seg.data.jsonl import read_json_object

            old = read_json_object(path)  # a FIFO, a huge or deeply nested run.json: one line, never a hang
            old_opts = old["options"]
            if not isinstance(old_opts, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise ValueError(
                f"{path} is not a text4seg run record; move it away or pass --overwrite"
            ) from None
        if old.get("command") != command:
            raise ValueError(
                f"--out {out} holds the output of `text4seg {old.get('command')}`, not {command}; "
                "choose another --out or pass --overwrite"
            )
        keys = sorted(set(old_opts) | set(new["options"]))
        diff = [
            f"{k}: {old_opts.get(k)!r} before, {new['options'].get(k)!r} now"
            for k in keys
            if old_opts.get(k) != new["options"].get(k)
        ]
        if diff:
            raise ValueError(
                f"--out {out} holds results of other options ({'; '.join(diff)}); "
                "choose another --out, or pass --overwrite to start over"
            )
        return path
    if overwrite:
        for name in outputs:
            p = out / name
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.is_dir():
                shutil.rmtree(p)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(new, indent=2) + "\n", encoding="utf-8")
    return path
