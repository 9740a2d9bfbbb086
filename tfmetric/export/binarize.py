"""Sign binarization of embeddings, packed MSB-first exactly like ``numpy.packbits(x > 0, axis=-1)``.

The affine-free LayerNormalization of the head centres embeddings at zero, so thresholding each
dimension at zero keeps most of the retrieval quality at 1/32 of the size (Zhai & Wu 2019,
Sec. 3.2). Bit ``j`` of an embedding is bit ``7 - j % 8`` of byte ``j // 8``; when the dimension is
not a multiple of 8 the last byte is padded with zero bits, which are equal for every code and so
never add to a Hamming distance. ``tfmetric.metrics.pack_bits`` is the numpy twin of this op.
"""

import numpy as np
import tensorflow as tf

# Weight of bit position 0..7 within a byte, most significant first.
_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


def packed_width(dim):
    """Bytes per packed code of a ``dim``-dimensional embedding: ``ceil(dim / 8)``."""
    if dim is None or dim < 1:
        raise ValueError(f"dim must be a positive integer. Received: dim={dim}")
    return -(-int(dim) // 8)


def pack_sign_bits(embeddings):
    """float ``[..., d]`` tensor -> uint8 ``[..., ceil(d / 8)]`` of sign bits (``x > 0`` -> 1).

    ``d`` and the rank must be static (they are for a model's output); the leading dimensions may
    be dynamic.
    """
    x = tf.convert_to_tensor(embeddings)
    rank, dim = x.shape.rank, x.shape[-1] if x.shape.rank else None
    if rank is None or rank < 1 or dim is None:
        raise ValueError(f"embeddings need a static rank >= 1 and a static last dimension. Received: shape={x.shape}")
    width = packed_width(dim)
    bits = tf.cast(x > 0, tf.int32)
    if width * 8 != dim:
        bits = tf.pad(bits, [[0, 0]] * (rank - 1) + [[0, width * 8 - dim]])
    bits = tf.reshape(bits, tf.concat([tf.shape(x)[:-1], [width, 8]], axis=0))
    packed = tf.reduce_sum(bits * tf.constant(_BIT_WEIGHTS, tf.int32), axis=-1)
    return tf.cast(packed, tf.uint8)


def unpack_sign_bits(codes, dim):
    """uint8 ``[..., ceil(dim / 8)]`` codes -> float32 ``[..., dim]`` of +1 / -1 (padding dropped).

    The result has the same sign bits as the embedding the codes came from, so any function of
    sign bits (``tfmetric.metrics.retrieval_metrics(..., binary=True)``) gives the same value.
    """
    codes = np.asarray(codes, np.uint8)
    if codes.shape[-1] != packed_width(dim):
        raise ValueError(
            f"codes of {codes.shape[-1]} bytes cannot hold dim={dim} bits (expected {packed_width(dim)} bytes)."
        )
    bits = np.unpackbits(codes, axis=-1, count=dim)
    return bits.astype(np.float32) * 2.0 - 1.0
