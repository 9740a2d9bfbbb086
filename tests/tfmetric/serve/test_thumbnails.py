"""Thumbnails read catalog sources as the search does: image files and records of TFRecord catalogs."""

import io

import pytest
import tensorflow as tf
from PIL import Image

from tests import fixtures as fx
from tfmetric.data import schema
from tfmetric.data.image_header import DEFAULT_MAX_PIXELS
from tfmetric.search.image_source import tfrecord_source
from tfmetric.serve.requests import RequestError
from tfmetric.serve.thumbnails import thumbnail


def test_thumbnails_of_files_and_tfrecord_records(tmp_path):
    big, small = fx.noise_jpeg_bytes((320, 200), seed=1), fx.png_bytes((40, 30))
    path = str(tmp_path / "catalog.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        first = schema.serialize_example(small, "png", 30, 40, 0, "c", "small")
        writer.write(first)
        writer.write(schema.serialize_example(big, "jpeg", 200, 320, 0, "c", "big"))
    image_file = fx.write_bytes(str(tmp_path / "big.jpg"), big)
    sizes = {}
    for name, source in (("file", image_file), ("record", tfrecord_source(path, 16 + len(first)))):
        with Image.open(io.BytesIO(thumbnail(source, DEFAULT_MAX_PIXELS))) as image:
            sizes[name] = (image.format, image.size)
    assert sizes == {"file": ("JPEG", (160, 100)), "record": ("JPEG", (160, 100))}


def test_unreadable_sources_are_404(tmp_path):
    for source in (str(tmp_path / "gone.jpg"), str(tmp_path / "gone.tfrecord") + "#offset=0"):
        with pytest.raises(RequestError, match="cannot read the catalog image") as e:
            thumbnail(source, DEFAULT_MAX_PIXELS)
        assert e.value.status == 404
