"""Thumbnails of catalog images for the upload page, read from each item's ``source``.

Only sources listed in the served index are read (the route takes a catalog id, never a path),
through ``tf.io.gfile`` (local paths, gs:// and the other filesystems TensorFlow reads), and each
is checked like a query image before it is decoded.
"""
import io

import tensorflow as tf
from PIL import Image

from tfmetric.data import image_header
from tfmetric.serve.requests import RequestError

SIZE = 160
QUALITY = 85


def thumbnail(source, max_pixels, size=SIZE):
    """JPEG bytes of the image at ``source``, at most ``size`` pixels on its longer side."""
    try:
        with tf.io.gfile.GFile(source, "rb") as f:
            data = f.read()
    except tf.errors.OpError as e:
        raise RequestError(404, f"cannot read the catalog image {source} ({e.message}).") from None
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
