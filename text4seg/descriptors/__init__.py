"""Semantic descriptors: masks <-> grids of text labels <-> text (numpy and Pillow only).

Everything outside this package imports descriptor names from here (``from text4seg.descriptors import
decode``), never from a submodule, so the package may be reorganised freely; the one exception is
:mod:`text4seg.decoding`, the constrained-decoding engines (torch and xgrammar imported lazily), which read
the grammar internals (``core``, ``grammar``, ``ebnf``, ``codec``).

Modules (each imports only those above it): ``core`` (labels, tags, errors, the ``Scheme`` interface),
``ebnf`` (what every exact answer grammar shares), ``grid`` (PIL-nearest geometry), ``runs`` (run
parsing), ``grammar`` (character-level grammars), ``compact_grammar`` (the compact scheme's grammars), one
module per scheme (``rrle``, ``irle``, ``full``, ``compact``: format, decoders, exact EBNF emitter),
``schemes`` (the registry), ``codec`` (answers: ``encode``/``decode``, the exact answer grammar and the
one answer budget).
"""

from text4seg.descriptors.codec import (
    Decoded,
    answer_ebnf,
    count_repairs,
    decode,
    encode,
    extract,
    max_answer_tokens,
    wrap,
)
from text4seg.descriptors.core import (
    BACKGROUND,
    DEFAULT_GRID,
    DEFAULT_SCHEME,
    MAX_FREE,
    MAX_GRID_SIDE,
    REPAIR_KINDS,
    SEG_CLOSE,
    SEG_OPEN,
    Budget,
    DescriptorError,
    Repair,
    Scheme,
    grid_shape,
    normalize_grid,
    normalize_label,
)
from text4seg.descriptors.grid import (
    GEOMETRIES,
    SAMPLERS,
    grid_labels,
    grid_to_label_map,
    grid_to_mask,
    mask_to_grid,
    nearest_index,
)
from text4seg.descriptors.runs import grid_runs
from text4seg.descriptors.schemes import SCHEMES, get_scheme

__all__ = [
    "GEOMETRIES",
    "BACKGROUND",
    "DEFAULT_GRID",
    "DEFAULT_SCHEME",
    "MAX_FREE",
    "REPAIR_KINDS",
    "SAMPLERS",
    "SCHEMES",
    "SEG_CLOSE",
    "SEG_OPEN",
    "Budget",
    "Decoded",
    "DescriptorError",
    "Repair",
    "Scheme",
    "answer_ebnf",
    "count_repairs",
    "decode",
    "encode",
    "extract",
    "get_scheme",
    "grid_labels",
    "grid_runs",
    "grid_shape",
    "MAX_GRID_SIDE",
    "grid_to_label_map",
    "grid_to_mask",
    "mask_to_grid",
    "max_answer_tokens",
    "nearest_index",
    "normalize_grid",
    "normalize_label",
    "wrap",
]
