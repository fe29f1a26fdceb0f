"""Semantic descriptors: masks <-> grids of text labels <-> text (numpy and Pillow only).

Everything outside this package imports descriptor names from here (``from text4seg.descriptors import
decode``), never from a submodule, so the package may be reorganised freely. The token-level
constrained-decoding machinery is :mod:`text4seg.descriptors.constrain` (torch imported lazily).
"""

from text4seg.descriptors.codec import (
    BACKGROUND,
    REPAIR_KINDS,
    SCHEMES,
    SEG_CLOSE,
    SEG_OPEN,
    Decoded,
    DescriptorError,
    Repair,
    count_repairs,
    decode,
    encode,
    extract,
    grid_runs,
    normalize_grid,
    normalize_label,
    wrap,
)
from text4seg.descriptors.grid import (
    SAMPLERS,
    grid_labels,
    grid_shape,
    grid_to_label_map,
    grid_to_mask,
    mask_to_grid,
    nearest_index,
)

DEFAULT_SCHEME = "rrle"

__all__ = [
    "BACKGROUND",
    "DEFAULT_SCHEME",
    "REPAIR_KINDS",
    "SAMPLERS",
    "SCHEMES",
    "SEG_CLOSE",
    "SEG_OPEN",
    "Decoded",
    "DescriptorError",
    "Repair",
    "count_repairs",
    "decode",
    "encode",
    "extract",
    "grid_labels",
    "grid_runs",
    "grid_shape",
    "grid_to_label_map",
    "grid_to_mask",
    "mask_to_grid",
    "nearest_index",
    "normalize_grid",
    "normalize_label",
    "wrap",
]
