"""Keyed stateless randomness: bijective permutations, uniform draws, distinct keys give distinct streams."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfmetric.data.keyed_random import keyed_permutation, keyed_shuffle, keyed_uniform_int


@pytest.mark.parametrize("n", [1, 2, 5, 64, 65, 100, 1000])
def test_keyed_permutation_is_a_bijection(n):
    positions = keyed_permutation(tf.range(n, dtype=tf.int64), n, 7, 3).numpy()
    assert sorted(positions) == list(range(n))
    if n > 2:
        assert not np.array_equal(positions, keyed_permutation(tf.range(n, dtype=tf.int64), n, 7, 4).numpy())


@pytest.mark.parametrize("n", [4, 70])
def test_keyed_permutation_is_uniform_over_keys(n):
    # Over 2000 keys, the position of item 0 is uniform on [0, n) (chi-square, loose threshold).
    keys = tf.range(2000, dtype=tf.int64)
    positions = keyed_permutation(tf.zeros([2000], tf.int64), n, 11, keys).numpy()
    counts = np.bincount(positions, minlength=n)
    expected = 2000 / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < (n - 1) + 6 * math.sqrt(2 * (n - 1))
    if n == 4:  # and every one of the 24 orders of 4 items occurs, over 400 keys
        items, keys = np.tile(np.arange(4), 400), np.repeat(np.arange(400), 4)
        perms = keyed_permutation(tf.constant(items), 4, 11, tf.constant(keys)).numpy().reshape(400, 4)
        assert len({tuple(p) for p in perms}) == 24


def test_keyed_uniform_int_and_shuffle():
    draws = keyed_uniform_int(6, 1, tf.range(6000, dtype=tf.int64)).numpy()
    assert set(draws) == set(range(6)) and np.bincount(draws).min() > 850
    order = keyed_shuffle(10, 1, 2).numpy()
    assert sorted(order) == list(range(10)) and not np.array_equal(order, np.arange(10))
    assert len({tuple(keyed_shuffle(5, 1, s).numpy()) for s in range(50)}) > 30
