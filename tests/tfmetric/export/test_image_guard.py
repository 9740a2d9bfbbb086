"""The checks on untrusted bytes: each bad input is an InvalidArgument naming the problem, raised
from the header before the decoder could allocate the declared pixels; good inputs get exactly
the evaluation preprocessing."""

import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures as fx
from tfmetric.data import preprocessing
from tfmetric.data.image_header import sniff_format
from tfmetric.export import image_guard

SIZE, RESIZE, NORM = 32, 36, "imagenet_mean_std"


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _jpeg(h=40, w=30, seed=0):
    return tf.io.encode_jpeg(_image(h, w, seed), quality=90).numpy()


def _png(h=40, w=30, seed=0, channels=3):
    return tf.io.encode_png(_image(h, w, seed)[..., :channels]).numpy()


def jpeg_declaring(height, width):
    """A real JPEG whose SOF0 header is patched to declare height x width."""
    data = bytearray(_jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_declaring(height, width):
    """A PNG signature and a valid IHDR chunk declaring height x width, then nothing."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return image_guard.PNG_MAGIC + chunk


@pytest.fixture(scope="module")
def guarded():
    fn = tf.function(
        lambda b: image_guard.guarded_eval_preprocess(b, SIZE, RESIZE, NORM, max_pixels=10_000),
        input_signature=[tf.TensorSpec([None], tf.string)],
        autograph=False,
    )
    return fn


@pytest.fixture(scope="module")
def reference():
    return tf.function(lambda b: preprocessing.eval_preprocess(b, SIZE, RESIZE, NORM), autograph=False)


def test_good_images_get_the_evaluation_preprocessing(guarded, reference):
    images = [_jpeg(40, 30), _png(50, 70, seed=1), _png(33, 33, seed=2, channels=1), _jpeg(32, 32, seed=3)]
    got = guarded(tf.constant(images)).numpy()
    assert got.shape == (4, SIZE, SIZE, 3)
    for i, data in enumerate(images):
        np.testing.assert_allclose(got[i], reference(tf.constant(data)).numpy(), atol=1e-6)


def test_empty_batch(guarded):
    assert guarded(tf.constant([], tf.string)).shape == (0, SIZE, SIZE, 3)


def test_header_size_reads_jpeg_and_png_headers():
    for data in (_jpeg(40, 30), _png(40, 30), jpeg_declaring(4000, 3000), png_declaring(4000, 3000)):
        height, width = image_guard.header_size(tf.constant(data))
        assert (int(height), int(width)) in ((40, 30), (4000, 3000))


BAD = [
    ("empty", b"", r"image 1 of the batch: empty image bytes"),
    ("gif", b"GIF89a" + b"\x00" * 40, r"image 1 of the batch: unsupported image format \(gif\)"),
    ("text", b"hello, world", r"unsupported image format \(unknown\)"),
    ("riff_not_webp", b"RIFF\x00\x00\x00\x00WAVE", r"unsupported image format \(unknown\)"),
    ("short_riff", b"RIFF", r"unsupported image format \(unknown\)"),
    ("jpeg_garbage_header", b"\xff\xd8\xff" + b"x" * 20, r"Invalid JPEG data"),
    ("jpeg_truncated", _jpeg()[:300], r"Invalid JPEG data"),
    ("png_truncated_header", _png()[:20], r"image 1 of the batch: corrupt or truncated PNG header"),
    ("png_no_ihdr", _png()[:12] + b"XXXX" + _png()[16:], r"corrupt or truncated PNG header"),
    ("png_zero_width", png_declaring(10, 0), r"corrupt or truncated PNG header"),
    ("png_corrupt_data", _png()[:33] + b"\x00" * 64, r"PNG"),
    # Declared sizes far beyond memory: rejected from the header, never decoded.
    ("jpeg_bomb", jpeg_declaring(65000, 65000), r"declares 65000x65000 = 4225000000 pixels, more than the limit"),
    ("png_bomb", png_declaring(2_000_000_000, 2_000_000_000), r"declares 2000000000x2000000000"),
    (
        "over_limit",
        _png(101, 100),
        r"image 1 of the batch: declares 100x101 = 10100 pixels, more than the "
        r"limit of 10000 \(max_pixels\)",
    ),
]


@pytest.mark.parametrize("name,data,message", BAD, ids=[b[0] for b in BAD])
def test_bad_image_in_a_batch_is_an_invalid_argument(guarded, name, data, message):
    # A good image first: the whole batch fails, no partial result.
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        guarded(tf.constant([_jpeg(), data]))


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "WEBP", "TIFF"])
def test_graph_names_formats_as_the_data_pipeline_sniffs_them(guarded, fmt):
    data = fx.image_bytes(fmt, size=(7, 5))  # one table of magic bytes: image_header.MAGIC
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"unsupported image format \({sniff_format(data)}\)"):
        guarded(tf.constant([data]))


def test_limit_is_inclusive(guarded):
    assert guarded(tf.constant([_png(100, 100)])).shape == (1, SIZE, SIZE, 3)


def test_decoded_images_input_is_limited_and_preprocessed():
    images = np.stack([_image(40, 30, 0), _image(40, 30, 1)])
    got = image_guard.guarded_eval_preprocess_images(images, SIZE, RESIZE, NORM, max_pixels=1200)
    want = preprocessing.eval_preprocess_image(images, SIZE, RESIZE, NORM)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images of 30x40 = 1200 pixels exceed the limit"):
        image_guard.guarded_eval_preprocess_images(images, SIZE, RESIZE, NORM, max_pixels=1199)
