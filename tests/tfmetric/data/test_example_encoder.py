"""The hand-written Example encoder gives TensorFlow's own deterministic bytes, on edge cases."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures as fx
from tfmetric.data import example_encoder, schema


def tf_bytes(features):
    def feature(value):
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        value = value.encode("utf-8") if isinstance(value, str) else value
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    example = tf.train.Example(
        features=tf.train.Features(feature={name: feature(value) for name, value in features.items()})
    )
    return example.SerializeToString(deterministic=True)


@pytest.mark.parametrize(
    "features",
    [
        {"a": 0},
        {"a": b""},
        {"a": ""},
        {"a": 1, "b": 127, "c": 128, "d": 300, "e": 2**31, "f": 2**63 - 1},
        {"neg": -1, "min": -(2**63), "small": -129},
        {"x": os.urandom(127)},
        {"x": os.urandom(128)},  # one- and two-byte lengths
        {"x": os.urandom(16_383)},
        {"x": os.urandom(16_384)},
        {"x": os.urandom(2_100_000)},
        {"unicode/名前": "クラス ß", "z": "ascii"},
        # key order: prefixes (after the keys they begin), upper case before lower, '/' before letters
        {"image/class/name": "n", "image/class": 1, "image/Z": 2, "image/": b"s", "image_": 3},
        {"b": 1, "ab": 2, "a": 3, "abc": 4, "B": 5, "é": 6, "e": 7},
    ],
)
def test_equals_tensorflow_deterministic_serialization(features):
    assert example_encoder.encode_example(features) == tf_bytes(features)


def test_sizes_near_varint_boundaries():
    """Message lengths around 127/128 and 16,383/16,384 bytes, where the outer lengths grow."""
    for n in list(range(95, 135)) + list(range(16_340, 16_390)):
        features = {"image/encoded": b"\xff" * n, "image/height": n}
        assert example_encoder.encode_example(features) == tf_bytes(features), n


def test_schema_record_is_byte_identical_to_make_example():
    jpeg = fx.jpeg_bytes((40, 30))
    for label, name, image_id in [
        (0, "0", "0/a.jpg"),
        (59, "c059", "c059/000123.jpg"),
        (2**40, "Ünïcode", "dir/ß.png"),
    ]:
        args = (jpeg, "jpeg", 30, 40, label, name, image_id)
        assert schema.serialize_example(*args) == schema.make_example(*args).SerializeToString(deterministic=True)
    # numpy integers (what a caller may hold) encode as the int they are
    args = (jpeg, "png", np.int64(30), np.int32(40), np.int64(3), "c", "i")
    assert schema.serialize_example(*args) == schema.make_example(*args).SerializeToString(deterministic=True)


def test_rejects_values_outside_int64():
    with pytest.raises(ValueError, match="int64"):
        example_encoder.encode_example({"a": 2**63})
    with pytest.raises(ValueError, match="int64"):
        example_encoder.encode_example({"a": -(2**63) - 1})


def test_schema_checks_arguments_like_make_example():
    with pytest.raises(ValueError, match="image_format"):
        schema.serialize_example(b"x", "gif", 1, 1, 0, "c", "i")
    with pytest.raises(ValueError, match="label"):
        schema.serialize_example(b"x", "jpeg", 1, 1, -1, "c", "i")
