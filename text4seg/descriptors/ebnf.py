"""What every exact answer grammar shares: literals, the free prefix, the label alternatives, the root.

Each scheme module emits the exact grammar of its answers (``Scheme.ebnf(rows, cols, labels, max_free)``;
:func:`text4seg.descriptors.codec.answer_ebnf` reaches it through the registry) in xgrammar's EBNF dialect
(GBNF-like: ``rule ::= ...``, string literals, ``[^<]{0,N}`` character classes with bounded repetition),
for xgrammar, vLLM and SGLang. Its language is a whole answer for one query on a ``rows x cols`` grid with
the allowed labels (normalised; ``others`` is always allowed)::

    root ::= free "<seg>" body "</seg>"
    free ::= [^<\\u0080-\\U0010FFFF]{0,max_free}   at most N ASCII characters, none "<"

and ``body`` is exact: every accepted answer decodes with ``decode(text, (rows, cols), scheme,
strict=True)``, and (up to the free text, see below) the language equals that of the scheme's
character grammar (``make_grammar(scheme, size, labels).accepts``; ``tests/test_xgr_grammar.py``).
``max_free=None`` gives the block alone (``root ::= body "</seg>"``, what follows ``<seg>``), for decoders
that compile the label-independent :func:`free_ebnf` once (:mod:`text4seg.decoding.xgr`).

Worked example (rrle, 2 x 3, labels ``["cat"]``; the count rules enforce the row sum 3)::

    root ::= free "<seg>" body "</seg>"
    free ::= [^<\\u0080-\\U0010FFFF]{0,256}
    lab ::= "cat" | "others"
    r1 ::= lab " *" ("1")
    r2 ::= lab " *" ("2" | "1| " r1)
    r3 ::= lab " *" ("3" | "1| " r2 | "2| " r1)
    body ::= r3 "\\n " r3 "\\n"

accepts ``"Sure.<seg>cat *1| others *2\\n others *3\\n</seg>"`` and rejects a row of ``"others *2\\n"``.

Free text differs from the character grammar on purpose: the character grammar allows any text without
``<seg>`` (``<`` included) for ``max_free`` tokens; here it is at most ``max_free`` ASCII characters
without ``<``, so that a bound on the whole answer exists in bytes. A byte-level token holds at least one
byte (it may hold part of a character), so :func:`text4seg.descriptors.codec.max_answer_tokens` (free
text, ``<seg>``, the scheme's longest block in UTF-8 bytes, ``</seg>``, EOS) always suffices to finish;
free text of any script would need up to 4 tokens per character.
"""

from __future__ import annotations

from collections.abc import Iterable

from text4seg.descriptors.core import SEG_CLOSE, SEG_OPEN, allowed_labels


def ebnf_literal(text: str) -> str:
    """``text`` as an EBNF string literal: ``\\``, ``"`` and control characters escaped."""
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _free(max_free: int) -> str:
    if max_free < 0:
        raise ValueError(f"max_free must be >= 0, got {max_free!r}")
    return f"[^<\\u0080-\\U0010FFFF]{{0,{max_free}}}" if max_free else '""'


def answer_rules(block_rules: list[str], max_free: int | None) -> str:
    """The grammar of a whole answer whose block is rule ``body`` of ``block_rules``; ``max_free=None``:
    the block alone (``body "</seg>"``)."""
    close = ebnf_literal(SEG_CLOSE)
    if max_free is None:
        return "\n".join([f"root ::= body {close}", *block_rules]) + "\n"
    head = [f"root ::= free {ebnf_literal(SEG_OPEN)} body {close}", f"free ::= {_free(max_free)}"]
    return "\n".join(head + block_rules) + "\n"


def free_ebnf(max_free: int) -> str:
    """The free text and the opening tag alone: ``root ::= [^<...]{0,N} "<seg>"`` (label-independent, so
    it is compiled once per vocabulary; :mod:`.xgr` then continues with the block grammar)."""
    return f"root ::= {_free(max_free)} {ebnf_literal(SEG_OPEN)}\n"


def label_rule(labels: Iterable[str]) -> str:
    """``lab``: one allowed label (the normalised ``labels`` and ``others``)."""
    return "lab ::= " + " | ".join(ebnf_literal(x) for x in allowed_labels(labels))


def rows_rule(row: str, rows: int) -> str:
    """``body``: ``rows`` copies of rule ``row`` joined by ``"\\n "``, then ``"\\n"``."""
    return "body ::= " + " ".join([row] + [f'"\\n " {row}'] * (rows - 1)) + ' "\\n"'
