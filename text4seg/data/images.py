"""Opening images safely: one pixel limit for every image the toolkit reads, regular files only.

Every image the toolkit opens (dataset images, label maps, mask PNGs, uploads, video frames) goes through
:func:`open_image`, which

* refuses anything that is not a regular file (a FIFO would block the reader forever, a device never ends);
* reads the header only and refuses a size over :data:`MAX_IMAGE_PIXELS` (or a side over
  :data:`MAX_IMAGE_SIDE`) *before* any pixel is decoded, so a 48 KB PNG that claims 20000 x 20000 pixels
  (a decompression bomb) costs nothing;
* turns every decoder failure (PIL's ``UnidentifiedImageError``, ``DecompressionBombError``, truncated
  data) into one ``ValueError`` naming the file.

The limit is ``2**26`` pixels (8192 x 8192; a uint8 mask of that size is 64 MiB). Set the environment
variable ``TEXT4SEG_MAX_IMAGE_PIXELS`` to raise or lower it for a whole run. Example::

    >>> with open_image("photo.jpg") as im:        # PIL.Image.Image, lazily decoded
    ...     rgb = im.convert("RGB")
    >>> w, h = image_size("photo.jpg")             # header only: (width, height), PIL's order

:func:`check_image_size` bounds a size claimed by an annotation file or a results record the same way.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Iterator

MAX_IMAGE_SIDE = 65_536  # pixels per side; larger sizes are refused before anything is allocated
MAX_IMAGE_PIXELS = int(os.environ.get("TEXT4SEG_MAX_IMAGE_PIXELS") or 2**26)  # height * width


def check_image_size(height, width, where: str = "") -> tuple[int, int]:
    """``(height, width)`` as ints if ``1 <= side <= MAX_IMAGE_SIDE`` and ``height * width <=
    MAX_IMAGE_PIXELS``; else ``ValueError`` quoting the size and the limits (``where`` names the source)."""
    pre = f"{where}: " if where else ""
    try:
        if isinstance(height, bool) or isinstance(width, bool):
            raise TypeError
        h, w = int(height), int(width)
        if h != height or w != width:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{pre}image size {height!r}x{width!r} is not a pair of integers") from None
    if not (1 <= h <= MAX_IMAGE_SIDE and 1 <= w <= MAX_IMAGE_SIDE) or h * w > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"{pre}image size {h}x{w} out of range: each side 1..{MAX_IMAGE_SIDE}, "
            f"at most {MAX_IMAGE_PIXELS} pixels (TEXT4SEG_MAX_IMAGE_PIXELS)"
        )
    return h, w


def check_regular_file(path: str | os.PathLike, what: str = "image") -> None:
    """``FileNotFoundError``/``ValueError`` naming ``path`` unless it is an existing regular file (links
    followed): a FIFO or a device would block or never end, so no reader of this toolkit opens one.
    ``what`` names the kind of file in the not-found message."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: not a regular file (a FIFO, device or folder is never read)")


@contextlib.contextmanager
def open_image(src, where: str | None = None) -> Iterator:
    """A ``PIL.Image.Image`` of a path, ``bytes`` or binary file object, its size checked from the header.

    ``where`` names the source in errors (default: the path, or ``"image"``). Pixels are decoded when the
    caller first touches them (``convert``, ``np.asarray``, ``load``); a truncated or corrupt file then
    raises ``OSError`` from PIL, which callers inside the ``with`` see as ``ValueError`` too.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(src, (str, os.PathLike)):
        check_regular_file(src)
        name = where or str(src)
    else:
        name = where or "image"
        if isinstance(src, (bytes, bytearray, memoryview)):
            src = io.BytesIO(bytes(src))
    try:
        im = Image.open(src)
    except Image.DecompressionBombError as exc:  # PIL's own guard fired first: its message has the size
        limit = f"{MAX_IMAGE_PIXELS} pixels (TEXT4SEG_MAX_IMAGE_PIXELS)"
        raise ValueError(f"{name}: image over the limit of {limit}: {str(exc)[:120]}") from None
    except UnidentifiedImageError:  # (PIL's text repeats the path: the name says enough)
        raise ValueError(f"{name}: not an image PIL can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        why = f"{type(exc).__name__}: {str(exc)[:120]}"
        raise ValueError(f"{name}: not an image PIL can read ({why})") from None
    try:
        w, h = im.size
        check_image_size(h, w, name)
        try:
            yield im
        except (Image.DecompressionBombError, SyntaxError, EOFError) as exc:
            why = f"{type(exc).__name__}: {str(exc)[:120]}"
            raise ValueError(f"{name}: cannot decode image ({why})") from None
        except OSError as exc:
            if exc.errno is not None:  # the caller's own file system error, not a decoder failure
                raise
            raise ValueError(f"{name}: cannot decode image ({str(exc)[:160]})") from None
    finally:
        im.close()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (every SOFn but DHT C4, JPG C8 and DAC CC): they carry height and width
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_SCAN_LIMIT = 1 << 20  # bytes of JPEG segments walked before falling back to PIL


def _header_size(fh) -> tuple[int, int] | None:
    """``(width, height)`` read straight from a PNG IHDR chunk or a JPEG SOF segment, None for any other
    file or anything unusual (the caller falls back to PIL, which decides)."""
    import struct

    head = fh.read(26)
    if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR" and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return (w, h) if w and h else None
    if not head.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos < JPEG_SCAN_LIMIT:
        fh.seek(pos)
        seg = fh.read(9)
        if len(seg) < 4 or seg[0] != 0xFF:
            return None
        marker = seg[1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        length = struct.unpack(">H", seg[2:4])[0]
        if marker in JPEG_SOF:
            if len(seg) < 9 or length < 7:
                return None
            h, w = struct.unpack(">HH", seg[5:9])
            return (w, h) if w and h else None
        if marker in (0xD9, 0xDA) or length < 2:  # end of image, start of scan: no frame header met
            return None
        pos += 2 + length
    return None


def image_size(path: str | os.PathLike, where: str | None = None) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header (PIL's order), checked as by :func:`open_image`
    (regular file, size limits). PNG and JPEG headers are read directly (a builder checks one per image of a
    whole dataset); any other file, or a header that reads oddly, goes through PIL."""
    check_regular_file(path)
    name = where or str(path)
    try:
        with open(path, "rb") as fh:
            size = _header_size(fh)
    except OSError as exc:
        raise OSError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if size is not None:
        check_image_size(size[1], size[0], name)
        return size
    with open_image(path, where) as im:
        return im.size


def load_rgb(src, where: str | None = None):
    """The image as a decoded RGB ``PIL.Image.Image`` (checked and closed source; see :func:`open_image`)."""
    with open_image(src, where) as im:
        return im.convert("RGB")
