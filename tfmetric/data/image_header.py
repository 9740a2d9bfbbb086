"""What an encoded image is and how big it is, read from its header, and whether it is safe to keep.

Height and width of JPEG (SOF marker) and PNG (IHDR chunk) come from the header bytes without
decoding; other formats go through PIL, whose ``Image.open`` is lazy and reads only the header. The
pixel limit is checked on those header dimensions *before* any decode, so a decompression bomb is
rejected without allocating its pixels. ``inspect_image`` then proves that the image decodes (a
truncated or corrupt file fails here, not in the middle of training) and re-encodes formats other
than JPEG/PNG to JPEG.

Reasons for rejecting an image are stable strings (they name Beam counters and manifest entries):
``empty``, ``truncated``, ``corrupt``, ``unsupported_format``, ``too_many_pixels``.
"""

import dataclasses
import io
import struct
import warnings

from PIL import Image, UnidentifiedImageError

# About 7,000 x 7,000: 150 MB as decoded RGB, far above any image of the four benchmarks and below
# PIL's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS, 89.5 M).
DEFAULT_MAX_PIXELS = 50_000_000
REENCODE_QUALITY = 95

EMPTY, TRUNCATED, CORRUPT = "empty", "truncated", "corrupt"
UNSUPPORTED_FORMAT, TOO_MANY_PIXELS = "unsupported_format", "too_many_pixels"
REASONS = (EMPTY, TRUNCATED, CORRUPT, UNSUPPORTED_FORMAT, TOO_MANY_PIXELS)

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Every format recognised by its magic bytes, first match wins: (format, ((offset, bytes), ...)),
# all pairs must match. The serving graph (tfmetric.export.image_guard) sniffs with the same table.
MAGIC = (
    ("jpeg", ((0, JPEG_MAGIC),)),
    ("png", ((0, PNG_MAGIC),)),
    ("gif", ((0, b"GIF87a"),)),
    ("gif", ((0, b"GIF89a"),)),
    ("bmp", ((0, b"BM"),)),
    ("webp", ((0, b"RIFF"), (8, b"WEBP"))),
    ("tiff", ((0, b"II*\x00"),)),
    ("tiff", ((0, b"MM\x00*"),)),
)
MAGIC_BYTES = max(offset + len(magic) for _, parts in MAGIC for offset, magic in parts)
# Start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_JPEG_STANDALONE = frozenset([0x01, 0xD8, *range(0xD0, 0xD8)])


class ImageError(ValueError):
    """An image that cannot be kept; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """An image ready for a record: ``encoded`` is the original bytes unless ``reencoded``."""

    format: str
    height: int
    width: int
    encoded: bytes
    reencoded: bool = False


def sniff_format(data: bytes) -> str | None:
    """``jpeg``, ``png``, ``gif``, ``bmp``, ``webp`` or ``tiff`` from the magic bytes (``MAGIC``), else None."""
    for fmt, parts in MAGIC:
        if all(data[offset : offset + len(magic)] == magic for offset, magic in parts):
            return fmt
    return None


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the first start-of-frame marker of a JPEG."""
    if data[:2] != b"\xff\xd8":
        raise ImageError(CORRUPT, "not a JPEG (no SOI marker)")
    i, n = 2, len(data)
    while True:
        # Like libjpeg and PIL, tolerate stray bytes between segments (some encoders write
        # them); then skip the 0xFF fill bytes in front of the marker code.
        while i < n and data[i] != 0xFF:
            i += 1
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            raise ImageError(TRUNCATED, "JPEG ends before its frame header")
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            raise ImageError(CORRUPT, "JPEG has no frame header before its scan data")
        if i + 2 > n:
            raise ImageError(TRUNCATED, "JPEG ends inside a marker segment")
        (length,) = struct.unpack(">H", data[i : i + 2])
        if length < 2:
            raise ImageError(CORRUPT, f"JPEG segment length {length} at byte {i}")
        if marker in _JPEG_SOF:
            if i + 7 > n:
                raise ImageError(TRUNCATED, "JPEG ends inside its frame header")
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            if height == 0 or width == 0:
                raise ImageError(CORRUPT, f"JPEG frame size {width}x{height}")
            return height, width
        i += length


def png_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the IHDR chunk of a PNG."""
    if data[:8] != PNG_MAGIC:
        raise ImageError(CORRUPT, "not a PNG (bad signature)")
    if len(data) < 24:
        raise ImageError(TRUNCATED, "PNG ends before its IHDR chunk")
    if data[12:16] != b"IHDR":
        raise ImageError(CORRUPT, "PNG does not start with an IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    if height == 0 or width == 0:
        raise ImageError(CORRUPT, f"PNG size {width}x{height}")
    return height, width


def _open(data: bytes, fmt: str | None = None) -> Image.Image:
    """PIL's lazy open (header only) with its errors mapped to reasons; ``fmt``: sniffed format."""
    try:
        with warnings.catch_warnings():
            # Our own limit is checked on the header dims right after; PIL's warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageError(TOO_MANY_PIXELS, str(e)) from None
    except UnidentifiedImageError:
        if fmt:  # the magic bytes say what it should be
            raise ImageError(CORRUPT, f"invalid {fmt.upper()} header") from None
        raise ImageError(UNSUPPORTED_FORMAT, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        raise ImageError(CORRUPT, f"unreadable header ({e})") from None


def image_size(data: bytes) -> tuple[str, int, int]:
    """(format, height, width) from the header; the format is the sniffed or PIL's, lower case."""
    if not data:
        raise ImageError(EMPTY, "zero-byte file")
    fmt = sniff_format(data)
    if fmt == "jpeg":
        return (fmt, *jpeg_size(data))
    if fmt == "png":
        return (fmt, *png_size(data))
    image = _open(data, fmt)
    return (fmt or (image.format or "unknown").lower(), image.height, image.width)


def check_pixels(height: int, width: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Raises ImageError(too_many_pixels) when ``height * width`` exceeds ``max_pixels``."""
    if max_pixels and height * width > max_pixels:
        raise ImageError(TOO_MANY_PIXELS, f"{width}x{height} = {height * width} pixels > --max-pixels {max_pixels}")


def _decode(data: bytes, fmt: str) -> Image.Image:
    image = _open(data, fmt)
    if fmt == "jpeg":
        # DCT scaling still runs the whole entropy-coded stream, so truncation and corrupt
        # data are caught at a fraction of the cost of a full decode.
        image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
    try:
        image.load()
    except Image.DecompressionBombError as e:
        raise ImageError(TOO_MANY_PIXELS, str(e)) from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
        if "not available" in str(e):  # e.g. a JPEG 2000 without PIL's decoder built in
            raise ImageError(UNSUPPORTED_FORMAT, f"cannot be decoded here ({e})") from None
        reason = TRUNCATED if "truncated" in str(e) or isinstance(e, EOFError) else CORRUPT
        raise ImageError(reason, f"does not decode ({e})") from None
    return image


def _to_jpeg(image: Image.Image) -> bytes:
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    elif image.mode != "RGB":
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=REENCODE_QUALITY)
    return out.getvalue()


def inspect_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Checks an encoded image and returns what a record stores.

    JPEG and PNG keep their original bytes; any other format PIL decodes is re-encoded to JPEG
    (the first frame of an animation; transparency composited onto white).

    Raises:
      ImageError: with ``reason`` in ``REASONS``; nothing larger than ``max_pixels`` is decoded.
    """
    fmt, height, width = image_size(data)
    check_pixels(height, width, max_pixels)
    image = _decode(data, fmt)
    if fmt in ("jpeg", "png"):
        return ImageInfo(fmt, height, width, data)
    try:
        encoded = _to_jpeg(image)
    except (OSError, ValueError) as e:
        raise ImageError(CORRUPT, f"cannot be re-encoded to JPEG ({e})") from None
    return ImageInfo("jpeg", image.height, image.width, encoded, reencoded=True)
