"""text4seg.data.images: one pixel limit, regular files only, and the PNG/JPEG header fast path agreeing with
PIL on every form PIL writes (modes, progressive and EXIF-laden JPEGs)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from text4seg.data.images import _header_size, image_size

FORMS = [
    ("PNG", "RGB", {}),
    ("PNG", "L", {}),
    ("PNG", "RGBA", {}),
    ("PNG", "P", {}),
    ("PNG", "1", {}),
    ("PNG", "I;16", {}),
    ("JPEG", "RGB", {"quality": 80}),
    ("JPEG", "L", {}),
    ("JPEG", "CMYK", {}),
    ("JPEG", "RGB", {"progressive": True}),
    ("JPEG", "RGB", {"exif": "big"}),
    ("GIF", "P", {}),
    ("BMP", "RGB", {}),
    ("WEBP", "RGB", {}),
    ("TIFF", "RGB", {}),
]


@pytest.mark.parametrize("fmt,mode,kw", FORMS, ids=[f"{f}-{m}-{'-'.join(k)}" for f, m, k in FORMS])
@pytest.mark.parametrize("h,w", [(1, 1), (37, 91), (300, 17)])
def test_header_size_is_pils_size_or_defers_to_pil(tmp_path, fmt, mode, kw, h, w):
    rng = np.random.default_rng(h * w)
    im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    if kw.get("exif") == "big":
        exif = Image.Exif()
        exif[0x010E] = "x" * 60000  # an APP1 segment of 60 KB before the frame header
        kw = {"exif": exif}
    path = tmp_path / f"a.{fmt.lower()}"
    im.save(path, fmt, **kw)
    with Image.open(path) as ref:
        want = ref.size
    with open(path, "rb") as fh:
        fast = _header_size(fh)
    assert fast in (None, want)
    if fmt in ("PNG", "JPEG"):
        assert fast == want  # the fast path reads every PNG and JPEG PIL writes
    assert image_size(path) == want


def test_a_header_claiming_a_huge_size_is_refused_before_any_decoding(tmp_path):
    import struct
    import zlib

    ihdr = struct.pack(">II5B", 20000, 20000, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )
    (tmp_path / "bomb.png").write_bytes(png)
    with pytest.raises(ValueError, match="bomb.png: image size 20000x20000 out of range"):
        image_size(tmp_path / "bomb.png")


def test_odd_files_fall_back_to_pil_and_name_the_file(tmp_path):
    (tmp_path / "short.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ValueError, match="short.png"):
        image_size(tmp_path / "short.png")
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    with pytest.raises(ValueError, match="cut.jpg"):
        image_size(tmp_path / "cut.jpg")
    os.mkfifo(tmp_path / "f.png")
    with pytest.raises(ValueError, match="not a regular file"):
        image_size(tmp_path / "f.png")
