"""Keyed, stateless pseudo-randomness in TensorFlow, vectorised in uint64 (splitmix64 finalizer).

Every value is a pure function of its integer key parts, so a pipeline that draws with these is
deterministic however it is parallelised or resumed: the class-balanced sampler decides which
record to take, shard orders and window shuffles with them.
"""

import math

import tensorflow as tf

_RANK_MAX = 64  # permutations of up to this many items are exact (rank of random keys)
_FEISTEL_ROUNDS = 6
_FLOYD, _ORDER = 0x466C6F7964, 0x4F72646572  # domain tags of keyed_sample's two streams


def _u64(x):
    if isinstance(x, int):
        return tf.constant(x & 0xFFFFFFFFFFFFFFFF, tf.uint64)
    return tf.cast(x, tf.uint64)


def _mix(x):
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u64(30))) * _u64(0xBF58476D1CE4E5B9)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u64(27))) * _u64(0x94D049BB133111EB)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _u64(31)))


def _combine(h, part):
    return _mix(tf.bitwise.bitwise_xor(h, _mix(_u64(part) + _u64(0x9E3779B97F4A7C15))))


def keyed_hash(*parts):
    """A 64-bit pseudo-random value per element of the broadcast ``parts`` (integer tensors)."""
    h = _u64(0x243F6A8885A308D3)
    for part in parts:
        h = _combine(h, part)
    return h


def stateless_seed(*key):
    """``keyed_hash(*key)`` as int64, a seed part for ``tf.random.stateless_*`` ops: the keyed streams
    of the sampler and the stateless augmentation then come from one scheme."""
    return tf.bitcast(keyed_hash(*key), tf.int64)


def keyed_uniform_int(n, *key):
    """Uniform int64 in [0, n) per element (modulo bias below n / 2**64)."""
    return tf.cast(tf.math.floormod(keyed_hash(*key), _u64(n)), tf.int64)


def _feistel(y, half_bits, round_keys):
    mask = tf.bitwise.left_shift(_u64(1), half_bits) - 1
    left, right = tf.bitwise.right_shift(y, half_bits), tf.bitwise.bitwise_and(y, mask)
    for round_key in round_keys:
        left, right = right, tf.bitwise.bitwise_xor(left, tf.bitwise.bitwise_and(_combine(round_key, right), mask))
    return tf.bitwise.bitwise_or(tf.bitwise.left_shift(left, half_bits), right)


def keyed_shuffle(n, *key):
    """A pseudo-random permutation of [0, n) (the order of n keyed random values), for small n."""
    values = keyed_hash(*key, tf.range(n, dtype=tf.int64))
    return tf.argsort(tf.cast(tf.bitwise.right_shift(values, _u64(1)), tf.int64), stable=True)


def keyed_permutation(i, n, *key):
    """Position of i (a vector, 0 <= i < n) in a pseudo-random permutation of [0, n) per key.

    Exact (rank of n random keys) for n <= 64; above, a Feistel network on the next power of 4
    with cycle walking, O(1) memory whatever n. ``n`` and the key parts broadcast against ``i``.
    """
    i = tf.cast(i, tf.int64)
    n = tf.broadcast_to(tf.cast(n, tf.int64), tf.shape(i))
    key = tf.broadcast_to(keyed_hash(*key), tf.shape(i))
    # Small n: rank of key_i among key_0..key_{n-1}.
    j = tf.range(_RANK_MAX, dtype=tf.int64)[None, :]
    keys, mine = _combine(key[:, None], j), _combine(key, i)[:, None]
    before = (keys < mine) | ((keys == mine) & (j < i[:, None]))
    rank = tf.reduce_sum(tf.cast(before & (j < n[:, None]), tf.int64), axis=1)
    # Large n: Feistel + cycle walking (re-apply until the value falls back into [0, n)).
    small = n <= _RANK_MAX
    bits = tf.cast(tf.math.ceil(tf.math.log(tf.cast(tf.maximum(n, 2), tf.float64)) / math.log(2.0)), tf.int64)
    bits = tf.where(tf.bitwise.left_shift(tf.ones_like(bits), bits) < n, bits + 1, bits)
    half = _u64(tf.maximum((bits + 1) // 2, 1))
    round_keys = [_combine(key, r) for r in range(_FEISTEL_ROUNDS)]
    y = _u64(tf.where(small, tf.zeros_like(i), i))
    # Small-n elements take the rank above; a limit of the whole domain stops their walk at once.
    limit = tf.where(small, tf.bitwise.left_shift(_u64(1), 2 * half), _u64(n))
    (y,) = tf.while_loop(
        lambda y: tf.reduce_any(y >= limit),
        lambda y: (tf.where(y >= limit, _feistel(y, half, round_keys), y),),
        (_feistel(y, half, round_keys),),
    )
    return tf.where(small, rank, tf.cast(y, tf.int64))


def keyed_sample(n, k, *key):
    """k distinct values of [0, n) per row, uniformly (every k-subset equally likely, in random
    order): int64 [rows, k] for ``n`` int64 [rows] with ``n >= k`` (Floyd's algorithm, O(k^2)
    whatever n, so drawing 3 of a million classes costs what drawing 3 of 10 does).

    ``k`` is a python int; the key parts broadcast against [rows, 1] (give one part per row, e.g.
    the class, for the rows to be drawn independently).
    """
    n = tf.reshape(tf.cast(n, tf.int64), [-1, 1])
    chosen = []
    for t in range(k):
        m = n[:, 0] - k + t  # step t draws from [0, m]; a value already taken is replaced by m
        draw = keyed_uniform_int(m[:, None] + 1, *key, _FLOYD, t)[:, 0]
        if chosen:
            taken = tf.reduce_any(tf.stack(chosen, axis=1) == draw[:, None], axis=1)
            draw = tf.where(taken, m, draw)
        chosen.append(draw)
    values = tf.stack(chosen, axis=1)
    # Floyd's output order is not exchangeable (m lands at position t): shuffle each row.
    order = tf.argsort(
        tf.cast(
            tf.bitwise.right_shift(keyed_hash(*key, _ORDER, tf.range(k, dtype=tf.int64)[None, :]), _u64(1)), tf.int64
        ),
        axis=1,
        stable=True,
    )
    return tf.gather(values, tf.broadcast_to(order, tf.shape(values)), batch_dims=1)
