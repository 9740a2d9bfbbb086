"""pack_sign_bits against numpy.packbits, the documented contract of serving_binary."""

import numpy as np
import pytest
import tensorflow as tf

from tfmetric.export.binarize import pack_sign_bits, packed_width, unpack_sign_bits
from tfmetric.metrics import pack_bits


@pytest.mark.parametrize("dim", [1, 7, 8, 9, 12, 16, 17, 64])
def test_equals_numpy_packbits(dim):
    x = np.random.default_rng(dim).normal(size=(5, dim)).astype(np.float32)
    x[0, : dim // 2] = 0.0  # zero is not > 0: bit 0
    got = pack_sign_bits(tf.constant(x)).numpy()
    assert got.dtype == np.uint8 and got.shape == (5, packed_width(dim))
    np.testing.assert_array_equal(got, np.packbits(x > 0, axis=-1))
    np.testing.assert_array_equal(got, pack_bits(x))


def test_msb_first_and_zero_padding():
    # Bits 1 0 0 0 0 0 0 1 | 1 1 1 (padded with five zeros): bytes 0b10000001, 0b11100000.
    x = np.array([[1, -1, -1, -1, -1, -1, -1, 1, 1, 1, 1]], np.float32)
    np.testing.assert_array_equal(pack_sign_bits(x).numpy(), [[129, 224]])


def test_dynamic_batch_and_extra_leading_dims():
    fn = tf.function(pack_sign_bits, input_signature=[tf.TensorSpec([None, 2, 12], tf.float32)])
    x = np.random.default_rng(0).normal(size=(3, 2, 12)).astype(np.float32)
    np.testing.assert_array_equal(fn(x).numpy(), np.packbits(x > 0, axis=-1))
    assert fn(np.zeros((0, 2, 12), np.float32)).shape == (0, 2, 2)


def test_unpack_round_trip_keeps_the_bits():
    x = np.random.default_rng(1).normal(size=(4, 12)).astype(np.float32)
    signs = unpack_sign_bits(np.packbits(x > 0, axis=-1), 12)
    np.testing.assert_array_equal(signs, np.where(x > 0, 1.0, -1.0))
    np.testing.assert_array_equal(pack_bits(signs), pack_bits(x))


def test_errors():
    with pytest.raises(ValueError, match="static last dimension"):
        pack_sign_bits(np.float32(1.0))
    with pytest.raises(ValueError, match="dim"):
        packed_width(0)
    with pytest.raises(ValueError, match="expected 2 bytes"):
        unpack_sign_bits(np.zeros((1, 3), np.uint8), 12)
