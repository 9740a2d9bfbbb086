"""Serving edge cases through a reloaded SavedModel: each is a clear InvalidArgument naming the input."""

import json
import struct
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmetric import config as config_lib
from tfmetric.export import __main__ as export_cli
from tfmetric.export import image_guard, model_card
from tfmetric.models.embedding import build_embedding_model

DIM, SIZE, RESIZE = 16, 32, 36


def png_declaring(height, width):
    """The first bytes of a PNG whose IHDR announces ``height`` x ``width`` (a forged header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return image_guard.PNG_MAGIC + chunk + b"\x00" * 64


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    """The version dir of a tiny model exported with the default pixel limit."""
    workdir = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(0)
    build_embedding_model("inception_v1", DIM, SIZE).save(str(workdir / "embedding_model.keras"))
    config = config_lib.preset("digits")
    config.data.image_size, config.data.resize_size, config.model.embedding_dim = SIZE, RESIZE, DIM
    (workdir / "config.json").write_text(config.to_json())
    (workdir / "metrics.json").write_text(json.dumps({"test": {}}))
    out = tmp_path_factory.mktemp("saved_models")
    assert export_cli.main(["--workdir", str(workdir), "--output-dir", str(out), "--name", "tiny"]) == 0
    return str(out / "tiny" / "1")


@pytest.fixture(scope="module")
def loaded(version):
    return tf.saved_model.load(version)


def _jpeg():
    return tf.io.encode_jpeg(np.full((40, 30, 3), 90, np.uint8)).numpy()


@pytest.mark.parametrize("signature", ["serving_default", "serving_binary"])
@pytest.mark.parametrize(
    "case,value,message",
    [
        ("empty_batch", "none", r"image_bytes: empty batch; send at least one image"),
        ("scalar", "one", r"image_bytes must have shape \[batch\]; received rank 0. Send a list even for one image"),
        ("rank_2", "two", r"image_bytes must have shape \[batch\]; received rank 2"),
    ],
)
def test_bad_image_bytes_shape_is_a_clear_invalid_argument(loaded, signature, case, value, message):
    data = {"none": [], "one": _jpeg(), "two": [[_jpeg()]]}[value]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures[signature](image_bytes=tf.constant(data, tf.string))
    # The same signature still serves a good request afterwards.
    assert loaded.signatures[signature](image_bytes=tf.constant([_jpeg()])) is not None


@pytest.mark.parametrize(
    "case,images,message",
    [
        ("empty_batch", np.zeros((0, 20, 20, 3), np.uint8), r"images: empty batch"),
        ("four_channels", np.zeros((1, 20, 20, 4), np.uint8), r"images must have 3 channels \(RGB\); received 4"),
        (
            "rank_3",
            np.zeros((20, 20, 3), np.uint8),
            r"images must have shape \[batch, height, width, 3\]; received rank 3",
        ),
    ],
)
def test_bad_serving_images_is_a_clear_invalid_argument(loaded, case, images, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["serving_images"](images=tf.constant(images))
    ok = loaded.signatures["serving_images"](images=tf.zeros((1, 20, 20, 3), tf.uint8))
    assert ok["embedding"].shape == (1, DIM)


def test_default_pixel_limit_is_derived_from_the_model_and_overridable(version, loaded):
    assert model_card.read_model_card(version)["preprocessing"]["max_pixels"] == 4096 * 4096
    assert image_guard.default_max_pixels(RESIZE) == 4096 * 4096  # the floor: a phone photo still passes
    assert image_guard.default_max_pixels(400) == 6400**2  # (16 x resize_size)^2
    assert image_guard.default_max_pixels(2000) == 50_000_000  # never above the converter's limit
    # A forged 5000 x 5000 header (25 MP in a few bytes) is refused before decoding by default...
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="declares 5000x5000 = 25000000 pixels, more than the limit of 16777216"
    ):
        loaded.signatures["serving_default"](image_bytes=tf.constant([_jpeg(), png_declaring(5000, 5000)]))
    # ... and --max-pixels (export_saved_model(max_pixels=...)) sets another limit.
    strict = tf.function(
        lambda b: image_guard.guarded_eval_preprocess(b, SIZE, RESIZE, "imagenet_mean_std", max_pixels=2_000_000)
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than the limit of 2000000"):
        strict(tf.constant([png_declaring(1500, 1500)]))
    args = export_cli.parse_args(["--workdir", "w", "--max-pixels", "2000000"])
    assert args.max_pixels == 2_000_000 and export_cli.parse_args(["--workdir", "w"]).max_pixels is None


def test_per_request_decode_memory_is_bounded():
    for max_pixels in (4096 * 4096, 6400**2, 50_000_000, 10_000):
        parallel = image_guard.parallel_decodes(max_pixels)
        assert 1 <= parallel <= image_guard.PARALLEL_DECODES
        one_image = max_pixels * 15
        assert parallel * one_image <= max(image_guard.DECODE_BUDGET_BYTES, one_image)
    assert image_guard.parallel_decodes(4096 * 4096) == 4 and image_guard.parallel_decodes(50_000_000) == 1
