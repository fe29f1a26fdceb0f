"""text4seg: decoder-free, text-as-mask segmentation with multimodal LLMs.

A mask becomes a grid of text labels (semantic descriptors), written row by row with run-length
encoding (R-RLE), which an unmodified MLLM learns to write. This package imports numpy and Pillow only;
training, SAM refinement and inference import their heavy dependencies lazily.

>>> import numpy as np, text4seg
>>> m = np.zeros((4, 4), bool); m[1:3, 1:3] = True
>>> text = text4seg.encode(text4seg.mask_to_grid(m, 4, labels="dog"))
>>> text
'others *4\\n others *1| dog *2| others *1\\n others *1| dog *2| others *1\\n others *4\\n'
>>> bool((text4seg.grid_to_mask(text4seg.decode(text, 4).grid, 4, 4) == m).all())
True
"""

from text4seg.descriptors import (
    SCHEMES,
    Decoded,
    DescriptorError,
    decode,
    encode,
    grid_to_mask,
    mask_to_grid,
    wrap,
)

__version__ = "0.1.0"
__all__ = [
    "SCHEMES",
    "Decoded",
    "DescriptorError",
    "decode",
    "encode",
    "grid_to_mask",
    "mask_to_grid",
    "wrap",
]
