"""Thumbnails of catalog images for the upload page, read from each item's ``source``.

Only sources listed in the served index are read (the route takes a catalog id, never a path),
with ``tfmetric.search.image_source.read_image_bytes`` (image files on any filesystem TensorFlow
reads, and records of TFRecord catalogs), and each is checked like a query image before it is decoded.
"""

import io

from PIL import Image

from tfmetric.data import image_header
from tfmetric.search.image_source import read_image_bytes
from tfmetric.serve.requests import RequestError

SIZE = 160
QUALITY = 85


def thumbnail(source, max_pixels, size=SIZE):
    """JPEG bytes of the image at ``source``, at most ``size`` pixels on its longer side."""
    try:
        data = read_image_bytes(source)
    except (OSError, ValueError) as e:  # a missing or unreadable file, a damaged record
        raise RequestError(404, f"cannot read the catalog image {source} ({e}).") from None
    try:
        info = image_header.inspect_image(data, max_pixels)
    except image_header.ImageError as e:
        raise RequestError(422, f"the catalog image {source} is unusable ({e.reason}: {e.detail}).") from None
    with Image.open(io.BytesIO(info.encoded)) as image:
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        image.thumbnail((size, size))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()
