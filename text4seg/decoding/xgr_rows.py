"""Per-sequence xgrammar matchers used by :mod:`.xgr`: ``fill(bitmask, i)`` writes the allowed tokens
into row ``i`` of an xgrammar bitmask; ``accept(token)`` feeds a token and returns False once the
sequence is finished (EOS) or the grammar rejected the token.

:class:`SplitRow` decodes an answer in two phases: the free text and ``<seg>``
(:func:`~text4seg.descriptors.ebnf.free_ebnf`, one compiled grammar per vocabulary), then the block
(:func:`~text4seg.descriptors.codec.block_ebnf`). A token that finishes ``<seg>`` and runs on into the block
(Qwen writes ``"<seg>a dog"`` as ``"<", "seg", ">a", " dog"``) is rejected by the first grammar, so the
tokens that do so (found once per vocabulary, :meth:`.xgr.XgrBackend.straddlers`) are added to the mask
exactly when the block grammar accepts their tail: the masks equal those of the whole-answer grammar
(``tests/test_xgr_processor.py`` checks it step by step).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from text4seg import _lazy


class Block:
    """A compiled block grammar and which token tails (bytes) it accepts as a start (cached;
    :meth:`prime` fills the cache for a vocabulary's tails when the grammar is compiled)."""

    def __init__(self, compiled):
        self.compiled = compiled
        self._start = _lazy.require("xgrammar").GrammarMatcher(compiled)  # never fed: forked per probe
        self._starts: dict[bytes, bool] = {}

    def matcher(self):
        """A fresh matcher of the block (a fork: about 100x cheaper than building one)."""
        return self._start.fork()

    def accepts_start(self, tail: bytes) -> bool:
        hit = self._starts.get(tail)
        if hit is None:
            hit = self._starts[tail] = bool(self._start.fork().accept_string(tail))
        return hit

    def prime(self, tails: Iterable[bytes]) -> None:
        """Decide :meth:`accepts_start` for every tail now. A tail whose first byte is ASCII (a whole
        character) and rejected alone is rejected without its own probe (most tails share a few)."""
        first: dict[int, bool] = {}
        for tail in tails:
            if tail in self._starts:
                continue
            b = tail[0]
            if b < 0x80:
                if b not in first:
                    first[b] = self.accepts_start(tail[:1])
                if not first[b]:
                    self._starts[tail] = False
                    continue
            self.accepts_start(tail)


class WholeRow:
    """One sequence on the whole-answer grammar."""

    def __init__(self, matcher):
        self.m = matcher

    def fill(self, bitmask, i: int) -> None:
        self.m.fill_next_token_bitmask(bitmask, i)

    def accept(self, token: int) -> bool:
        """Feed a token; False once the row is finished (EOS) or the grammar rejected it."""
        return self.m.accept_token(token) and not self.m.is_terminated()


class SplitRow:
    """One sequence in two phases: free text + ``<seg>`` (``a``), then the block (``b``)."""

    def __init__(self, backend, block: Block, max_free_chars: int):
        self.backend, self.block = backend, block
        self.straddlers = backend.straddlers()
        self.vocab = backend.vocab
        self.a = backend.free_matcher(max_free_chars)
        self.b = None
        self.k = 0  # bytes of "<seg>" written so far (phase a)

    def _straddles(self, token: int) -> bytes | None:
        """The block part of a token that finishes ``<seg>`` from here, if the block accepts it."""
        hit = self.straddlers[self.k].get(token)
        if hit is None:
            return None
        head, tail = hit
        if self.k == 0:
            probe = self.a.fork()
            if not (probe.accept_string(head) and probe.is_completed()):
                return None
        return tail if self.block.accepts_start(tail) else None

    def fill(self, bitmask, i: int) -> None:
        if self.b is not None:
            self.b.fill_next_token_bitmask(bitmask, i)
            return
        self.a.fill_next_token_bitmask(bitmask, i)
        cands = self.straddlers[self.k]
        if cands:
            words = bitmask[i].numpy().view(np.uint32)
            for tok in cands:
                if self._straddles(tok) is not None:
                    words[tok >> 5] |= np.uint32(1 << (tok & 31))

    def accept(self, token: int) -> bool:
        if self.b is not None:
            return self.b.accept_token(token) and not self.b.is_terminated()
        if self.a.accept_token(token):
            if self.a.is_completed():
                self.b = self.block.matcher()
            else:
                t = self.vocab[token]
                self.k = len(t) - t.rindex(b"<") if b"<" in t else self.k + len(t) if self.k else 0
            return True
        tail = self._straddles(token)
        if tail is None:
            return False
        self.b = self.block.matcher()
        return bool(self.b.accept_string(tail))
