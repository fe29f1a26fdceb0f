"""Exact EBNF grammars of whole answers, one emitter per scheme (for xgrammar, vLLM, SGLang).

Each emitter returns a grammar in xgrammar's EBNF dialect (GBNF-like: ``rule ::= ...``, string literals,
``[^<]{0,N}`` character classes with bounded repetition) whose language is a whole answer for one query
on a ``rows x cols`` grid with the given allowed labels (normalised with
:func:`~text4seg.descriptors.codec.normalize_label`; ``others`` is always allowed)::

    root ::= FREE "<seg>" BLOCK "</seg>"
    FREE ::= [^<]{0,max_free_chars}             free text: at most N characters, none of them "<"

BLOCK is exact, i.e. every accepted answer decodes with ``decode(text, (rows, cols), scheme, strict=True)``
and (up to the free text, see below) the language equals the character grammar of
:mod:`text4seg.descriptors.constrain` (``make_grammar(scheme, size, labels).accepts``):

``rrle``  ``rows`` rows joined by ``"\\n "``, then ``"\\n"``; a row is runs ``LABEL " *" COUNT`` joined by
          ``"| "`` whose counts (1..cols, no leading zero) sum to exactly ``cols``. The row sum is
          enforced by one rule per number of cells left: ``r{c} ::= lab " *" ("c" | "k| " r{c-k} ...)``.
``irle``  the same with one row of ``rows * cols`` cells.
``full``  exactly ``cols`` labels per row joined by ``"| "``, rows as in rrle.
``compact`` ``"others\\n"`` (empty grid), or the label line (distinct allowed labels joined by ``"| "``)
          and ``"\\n"``, then lines ``ROWS ":" SPANS "\\n"``: rows ascending and not overlapping, spans
          ascending within ``0..cols-1``, a span's label index ``=k`` in ``2..len(label line)``; numbers
          without leading zeros.

Worked example (rrle, 2 x 3, labels ``["cat"]``; the count rules enforce the row sum 3)::

    root ::= free "<seg>" body "</seg>"
    free ::= [^<]{0,256}
    lab ::= "cat" | "others"
    r1 ::= lab " *" ("1")
    r2 ::= lab " *" ("2" | "1| " r1)
    r3 ::= lab " *" ("3" | "1| " r2 | "2| " r1)
    body ::= r3 "\\n " r3 "\\n"

accepts ``"Sure.<seg>cat *1| others *2\\n others *3\\n</seg>"`` and rejects a row of ``"others *2\\n"``.

Free text differs from the character grammar on purpose: the character grammar allows any text without
``<seg>`` (``<`` included) for as long as the token budget allows; here it is at most ``max_free_chars``
characters without ``<`` (default :data:`MAX_FREE_CHARS`), so that a character bound on the whole answer
exists: every token is at least one character, so :func:`max_answer_tokens` (the free text, the longest
block of :func:`max_block_chars`, one EOS) always suffices to finish.

:func:`free_ebnf` and :func:`block_ebnf` are the two halves of :func:`answer_ebnf` (free text and
``<seg>``; what follows ``<seg>``), for decoders that compile the label-independent half once
(:mod:`text4seg.descriptors.xgr`).

Compact with many labels: the label line is a sequence of *distinct* labels, which an EBNF can only
state with one rule per subset of labels already used (``2**m`` rules for ``m`` labels), and the span
rules are repeated for every possible label-line length (the ``=k`` bound). Block compile time on the
Qwen vocabulary (last table of ``benchmarks/constrain.py``, 2 loaded cores): 6 ms for 1 label, 15 ms for
2, 30 ms for 4, 60 ms for 6, 180 ms for 8 (any order); above :data:`COMPACT_ANY_ORDER_MAX` = 8 the label
line must list the chosen labels in sorted order (``m**2`` rules: 80 ms for 9, 200 ms for 16, 750 ms for
32), still exact for strict decoding but narrower than the character grammar (it rejects other orders).
Compiled grammars are cached per label set, so a fixed semantic vocabulary pays this once; referring
queries (one label) stay far below the 25 ms target.
"""

from __future__ import annotations

from collections.abc import Iterable

from text4seg.descriptors.core import BACKGROUND, SEG_CLOSE, SEG_OPEN, grid_shape, normalize_label

MAX_FREE_CHARS = 256  # default bound on the free text before <seg> (characters, none of them "<")
COMPACT_ANY_ORDER_MAX = 8  # compact: label line in any order up to this many labels, else given order


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


def allowed_labels(labels: Iterable[str]) -> list[str]:
    """The labels a block may use: the normalised ``labels`` plus ``others``, sorted."""
    return sorted({normalize_label(x) for x in labels} | {BACKGROUND})


def _root(block_rules: list[str], max_free_chars: int | None) -> str:
    """The whole answer; ``max_free_chars=None``: the block alone (``body "</seg>"``, see
    :func:`block_ebnf`)."""
    close = ebnf_literal(SEG_CLOSE)
    if max_free_chars is None:
        return "\n".join([f"root ::= body {close}", *block_rules]) + "\n"
    head = [f"root ::= free {ebnf_literal(SEG_OPEN)} body {close}", f"free ::= {_free(max_free_chars)}"]
    return "\n".join(head + block_rules) + "\n"


def _free(max_free_chars: int) -> str:
    if max_free_chars < 0:
        raise ValueError(f"max_free_chars must be >= 0, got {max_free_chars!r}")
    return f"[^<]{{0,{max_free_chars}}}" if max_free_chars else '""'


def free_ebnf(max_free_chars: int = MAX_FREE_CHARS) -> str:
    """The free text and the opening tag alone: ``root ::= [^<]{0,N} "<seg>"`` (label-independent, so
    it is compiled once per vocabulary; :mod:`.xgr` then continues with :func:`block_ebnf`)."""
    return f"root ::= {_free(max_free_chars)} {ebnf_literal(SEG_OPEN)}\n"


def _label_rule(labels: Iterable[str]) -> str:
    return "lab ::= " + " | ".join(ebnf_literal(x) for x in allowed_labels(labels))


def _rows_body(row: str, rows: int) -> str:
    return "body ::= " + " ".join([row] + [f'"\\n " {row}'] * (rows - 1)) + ' "\\n"'


def _run_rules(cells: int) -> list[str]:
    """``r{c}``: runs covering exactly ``c`` cells, for c = 1..cells."""
    out = []
    for c in range(1, cells + 1):
        alts = [ebnf_literal(str(c))] + [f'"{k}| " r{c - k}' for k in range(1, c)]
        out.append(f'r{c} ::= lab " *" (' + " | ".join(alts) + ")")
    return out


def rrle_ebnf(
    rows: int, cols: int, labels: Iterable[str] = (), max_free_chars: int | None = MAX_FREE_CHARS
) -> str:
    """Exact grammar of an R-RLE answer (row sums enforced)."""
    rules = [_label_rule(labels), *_run_rules(cols), _rows_body(f"r{cols}", rows)]
    return _root(rules, max_free_chars)


def irle_ebnf(
    rows: int, cols: int, labels: Iterable[str] = (), max_free_chars: int | None = MAX_FREE_CHARS
) -> str:
    """Exact grammar of an I-RLE answer: one row of ``rows * cols`` cells."""
    n = rows * cols
    return _root([_label_rule(labels), *_run_rules(n), f'body ::= r{n} "\\n"'], max_free_chars)


def full_ebnf(
    rows: int, cols: int, labels: Iterable[str] = (), max_free_chars: int | None = MAX_FREE_CHARS
) -> str:
    """Exact grammar of a full-length answer: ``cols`` labels per row."""
    row = "lab" + ' "| " lab' * (cols - 1)
    rules = [_label_rule(labels), f"row ::= {row}", _rows_body("row", rows)]
    return _root(rules, max_free_chars)


def _compact_rules(n: int, rows: int, cols: int) -> list[str]:
    """Rules for the spans and row lines after a label line of ``n`` labels (prefix ``{n}``)."""
    out = []
    kx = ""
    if n >= 2:
        out.append(f"k{n} ::= " + " | ".join(ebnf_literal(str(k)) for k in range(2, n + 1)))
        kx = f'("=" k{n})'
    for c in range(cols):
        # t: after a span ending at column c; s: a span starting exactly at c; sp: a span starting >= c;
        # e: the end column of a range, >= c
        parts = []
        if kx:
            parts.append(kx + "?")
        if c + 1 < cols:
            parts.append(f'("," sp{n}_{c + 1})?')
        out.append(f"t{n}_{c} ::= " + (" ".join(parts) if parts else '""'))
        dash = f' | "{c}-" e{n}_{c + 1}' if c + 1 < cols else ""
        out.append(f's{n}_{c} ::= "{c}" t{n}_{c}{dash}')
        out.append(f"sp{n}_{c} ::= " + " | ".join(f"s{n}_{x}" for x in range(c, cols)))
        out.append(f"e{n}_{c} ::= " + " | ".join(f'"{x}" t{n}_{x}' for x in range(c, cols)))
    for r in range(rows):
        # q: a line whose rows start exactly at r; l: the lines from row >= r on (possibly none)
        rng = [f'"{r}-{r1}:" sp{n}_0 "\\n" l{n}_{r1 + 1}' for r1 in range(r + 1, rows)]
        out.append(f"q{n}_{r} ::= " + " | ".join([f'"{r}:" sp{n}_0 "\\n" l{n}_{r + 1}', *rng]))
    for r in range(rows + 1):
        out.append(f"l{n}_{r} ::= " + " | ".join(['""', *(f"q{n}_{x}" for x in range(r, rows))]))
    return out


def compact_ebnf(
    rows: int,
    cols: int,
    labels: Iterable[str] = (),
    max_free_chars: int | None = MAX_FREE_CHARS,
    any_order_max: int = COMPACT_ANY_ORDER_MAX,
) -> str:
    """Exact grammar of a compact answer (see the module docstring for many labels)."""
    targets = [x for x in allowed_labels(labels) if x != BACKGROUND]
    m = len(targets)
    lits = [ebnf_literal(x) for x in targets]
    empty = ebnf_literal(BACKGROUND + "\n")
    if not m:
        return _root([f"body ::= {empty}"], max_free_chars)
    rules: list[str] = []
    for n in range(1, m + 1):
        rules += _compact_rules(n, rows, cols)
    if m <= any_order_max:
        # h{U}: the label line after the labels in bit set U (any order, each at most once)
        full = (1 << m) - 1
        for used in range(full):
            alts = []
            n = bin(used).count("1") + 1
            for i in range(m):
                if used >> i & 1:
                    continue
                nxt = used | 1 << i
                more = f' | "| " h{nxt}' if nxt != full else ""
                alts.append(f'{lits[i]} ("\\n" l{n}_0{more})')
            rules.append(f"h{used} ::= " + " | ".join(alts))
        rules.append(f"body ::= {empty} | h0")
    else:
        # g{i}_{n}: label i is the n-th of the label line; later labels have larger indices
        for n in range(1, m + 1):
            for i in range(n - 1, m):
                later = [f'"| " g{j}_{n + 1}' for j in range(i + 1, m)] if n < m else []
                rules.append(f"g{i}_{n} ::= {lits[i]} (" + " | ".join([f'"\\n" l{n}_0', *later]) + ")")
        rules.append(f"body ::= {empty} | " + " | ".join(f"g{i}_1" for i in range(m)))
    return _root(rules, max_free_chars)


EMITTERS = {"rrle": rrle_ebnf, "irle": irle_ebnf, "full": full_ebnf, "compact": compact_ebnf}


def answer_ebnf(
    scheme: str,
    size: int | tuple[int, int] = 16,
    labels: Iterable[str] = (),
    max_free_chars: int = MAX_FREE_CHARS,
) -> str:
    """The exact grammar of a whole answer in ``scheme`` (a key of :data:`EMITTERS`)."""
    if scheme not in EMITTERS:
        raise ValueError(f"no EBNF grammar for scheme {scheme!r}; available: {sorted(EMITTERS)}")
    rows, cols = grid_shape(size)
    return EMITTERS[scheme](rows, cols, labels, max_free_chars)


def block_ebnf(scheme: str, size: int | tuple[int, int] = 16, labels: Iterable[str] = ()) -> str:
    """The grammar of what follows ``<seg>``: the block and ``</seg>`` (``answer_ebnf`` is
    ``free_ebnf`` then this)."""
    if scheme not in EMITTERS:
        raise ValueError(f"no EBNF grammar for scheme {scheme!r}; available: {sorted(EMITTERS)}")
    rows, cols = grid_shape(size)
    return EMITTERS[scheme](rows, cols, labels, None)


def max_block_chars(scheme: str, size: int | tuple[int, int] = 16, labels: Iterable[str] = ()) -> int:
    """The most characters a well-formed ``"<seg>...</seg>"`` block can take (an upper bound, exact for
    the run-length and full schemes: every cell its own run of the longest label)."""
    rows, cols = grid_shape(size)
    labs = allowed_labels(labels)
    wrap = len(SEG_OPEN) + len(SEG_CLOSE)
    longest = max(len(x) for x in labs)
    if scheme in ("rrle", "irle"):
        r, c = (rows, cols) if scheme == "rrle" else (1, rows * cols)
        row = c * (longest + 3) + 2 * (c - 1)  # "lab *1" per cell, "| " between
        return wrap + r * row + 2 * (r - 1) + 1
    if scheme == "full":
        return wrap + rows * (cols * longest + 2 * (cols - 1)) + 2 * (rows - 1) + 1
    if scheme == "compact":
        targets = [x for x in labs if x != BACKGROUND]
        head = sum(len(x) for x in targets) + 2 * max(len(targets) - 1, 0)
        head = max(head, len(BACKGROUND)) + 1
        kx = 1 + len(str(len(targets))) if len(targets) >= 2 else 0
        line_spans = sum(len(str(c)) + kx for c in range(cols)) + (cols - 1)  # every column its own span
        lines = sum(len(str(r)) + 1 + line_spans + 1 for r in range(rows))  # every row its own line
        return wrap + head + lines
    raise ValueError(f"no EBNF grammar for scheme {scheme!r}; available: {sorted(EMITTERS)}")


def max_answer_tokens(
    scheme: str,
    size: int | tuple[int, int] = 16,
    labels: Iterable[str] = (),
    max_free_chars: int = MAX_FREE_CHARS,
) -> int:
    """Tokens that always suffice to finish an answer of :func:`answer_ebnf` (every token is at least one
    character): the free text, the longest block, and one EOS token."""
    return max_free_chars + max_block_chars(scheme, size, labels) + 1
