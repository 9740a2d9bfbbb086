"""The streaming class-balanced sampler: batch invariant, replacement rules, coverage, determinism,
bounded buffering, clear errors on bad shards, and the keyed randomness it is built on."""
import collections
import os

import numpy as np
import pytest
import tensorflow as tf

from tfmetric.data import schema
from tfmetric.data.class_sampler import CHUNK, ClassBalancedSampler, ClassIndex, ShardLayoutError, shuffled_batches


def write_split(directory, sizes, num_shards, image=None, order=None):
    """Class-grouped shards like pipelines.build_tfrecords writes: classes round-robin over shards,
    records sorted by label. Image c:k is ``image(c, k)`` (default: the text ``b"c:k"``).

    ``order`` overrides the layout: a list (one per shard) of label sequences, record by record.
    """
    os.makedirs(directory, exist_ok=True)
    image = image or (lambda c, k: f"{c}:{k}".encode())
    if order is None:
        order = [[c for c in range(len(sizes)) if c % num_shards == s for _ in range(sizes[c])]
                 for s in range(num_shards)]
    paths, seen = [], collections.Counter()
    for s, labels in enumerate(order):
        path = os.path.join(directory, f"train-{s:05d}-of-{len(order):05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for c in labels:
                writer.write(schema.make_example(image(c, seen[c]), "jpeg", 1, 1, c, f"class_{c}",
                                                 f"{c}/{seen[c]}").SerializeToString())
                seen[c] += 1
        paths.append(path)
    return paths


def collect(sampler, epoch, steps):
    return [(np.array([int(x.split(b":")[1]) for x in images]), labels)
            for images, labels in sampler.batches(epoch, steps).as_numpy_iterator()]


def assert_balanced(batches, batch_size, k):
    for images, labels in batches:
        assert labels.shape == images.shape == (batch_size,)
        groups = labels.reshape(batch_size // k, k)
        assert np.all(groups == groups[:, :1])                       # K consecutive images per class
        assert len(np.unique(groups[:, 0])) == batch_size // k      # P distinct classes


@pytest.fixture(scope="module")
def ragged(tmp_path_factory):
    sizes = np.random.default_rng(0).integers(1, 30, size=23)
    paths = write_split(str(tmp_path_factory.mktemp("ragged")), sizes, num_shards=4)
    return ClassIndex.scan(paths), sizes


@pytest.mark.parametrize("batch_size,k", [(12, 4), (15, 5), (6, 1), (9, 9)])
def test_every_batch_has_exact_classes_and_images(ragged, batch_size, k):
    index, sizes = ragged
    for seed, epoch in ((0, 0), (1, 3)):
        batches = collect(ClassBalancedSampler(index, batch_size, k, seed=seed, window_batches=2), epoch, 25)
        assert len(batches) == 25
        assert_balanced(batches, batch_size, k)
        for images, labels in batches:  # image k of class c exists
            assert np.all(images < sizes[labels])


def test_without_replacement_rules_on_tiny_classes(tmp_path):
    sizes = [10, 3, 8, 12, 5, 1]
    index = ClassIndex.scan(write_split(str(tmp_path), sizes, num_shards=2))
    batches = collect(ClassBalancedSampler(index, 8, 4, replace=False, seed=1), 0, 60)
    assert_balanced(batches, 8, 4)
    for images, labels in batches:
        for group, c in zip(images.reshape(2, 4), labels[::4]):
            # Enough images: 4 distinct. Too few: every image, the rest drawn with replacement.
            assert len(np.unique(group)) == min(4, sizes[c])
            if sizes[c] < 4:
                assert set(group) == set(range(sizes[c]))


def test_with_replacement_is_the_default_and_repeats_images(tmp_path):
    index = ClassIndex.scan(write_split(str(tmp_path), [6] * 4, num_shards=2))
    sampler = ClassBalancedSampler(index, 8, 4, seed=0)
    assert sampler.replace
    groups = [g for images, _ in collect(sampler, 0, 40) for g in images.reshape(2, 4)]
    repeats = sum(len(np.unique(g)) < 4 for g in groups)
    # P(no repeat in 4 draws of 6) = 6*5*4*3/6**4 = 0.28: most of the 80 groups repeat an image.
    assert 40 < repeats < 80


def test_without_replacement_walks_through_all_images_of_a_class(tmp_path):
    index = ClassIndex.scan(write_split(str(tmp_path), [8, 8], num_shards=2))
    batches = collect(ClassBalancedSampler(index, 8, 4, replace=False, seed=3), 0, 4)
    for c in (0, 1):  # rounds 0, 1 use one permutation, rounds 2, 3 the next: all 8 images twice
        drawn = np.concatenate([images[labels == c] for images, labels in batches])
        assert sorted(drawn[:8]) == list(range(8)) and sorted(drawn[8:]) == list(range(8))


@pytest.mark.parametrize("num_classes,classes_per_batch", [(50, 5), (53, 5)])
def test_classes_are_used_equally_over_an_epoch(tmp_path, num_classes, classes_per_batch):
    index = ClassIndex.scan(write_split(str(tmp_path), [3] * num_classes, num_shards=5))
    sampler = ClassBalancedSampler(index, classes_per_batch * 2, 2, seed=4)
    steps = 100  # 500 class slots
    usage = np.bincount(np.concatenate([labels[::2] for _, labels in collect(sampler, 0, steps)]),
                        minlength=num_classes)
    if num_classes % classes_per_batch == 0:
        assert usage.min() == usage.max() == 10                 # 10 full rounds
    else:  # 3 classes sit out per round, along a cycle: counts differ by at most 2 in an epoch
        assert usage.sum() == 500 and usage.max() - usage.min() <= 2


def test_deterministic_for_a_seed_and_different_across_seeds_and_epochs(ragged):
    index, _ = ragged

    def run(seed, epoch):
        batches = collect(ClassBalancedSampler(index, 12, 3, seed=seed), epoch, 10)
        return np.concatenate([np.stack(b) for b in batches])

    a = run(5, 0)
    assert np.array_equal(a, run(5, 0))
    assert not np.array_equal(a, run(6, 0))
    assert not np.array_equal(a, run(5, 1))


def test_buffers_a_bounded_number_of_records_on_a_large_split(tmp_path):
    """A split 10x larger than everything the sampler may hold: records read but not yet emitted
    (every record is taken once: classes of exactly K images, without replacement) stay within
    the documented bound at every batch."""
    k, classes_per_batch, cycle, window_batches = 4, 4, 4, 2
    num_classes = 1200
    paths = write_split(str(tmp_path), [k] * num_classes, num_shards=8)
    reads = tf.Variable(0, dtype=tf.int64)

    def counting_reader(path):
        def count(record):
            with tf.control_dependencies([reads.assign_add(1)]):
                return tf.identity(record)
        return tf.data.TFRecordDataset(path).map(count)

    index = ClassIndex.scan(paths)
    sampler = ClassBalancedSampler(index, classes_per_batch * k, k, replace=False, seed=0,
                                   cycle_length=cycle, window_batches=window_batches, reader=counting_reader)
    bound = cycle * (CHUNK + k) + window_batches * classes_per_batch * k + classes_per_batch * k
    assert 10 * bound < num_classes * k
    held = []
    steps = num_classes // classes_per_batch
    iterator = iter(sampler.batches(0, steps))
    for b in range(steps):
        next(iterator)
        held.append(int(reads.numpy()) - (b + 1) * classes_per_batch * k)
    assert max(held) <= bound
    assert int(reads.numpy()) == num_classes * k  # one pass read every record exactly once


def test_shards_with_a_class_in_two_shards_are_named(tmp_path):
    paths = write_split(str(tmp_path), None, 0, order=[[0, 0, 1, 1], [2, 2, 1]])
    with pytest.raises(ShardLayoutError, match=r"Class 1 \('class_1'\) is in two shards") as e:
        ClassIndex.scan(paths)
    assert paths[0] in str(e.value) and paths[1] in str(e.value)


def test_class_runs_are_checked_like_scanned_labels():
    paths = ["a.tfrecord", "b.tfrecord"]
    index = ClassIndex.from_runs(paths, [[[0, 2], [2, 1]], [[1, 3]]])
    assert index.runs.tolist() == [[0, 0, 2], [1, 0, 3], [0, 2, 1]] and index.order.tolist() == [0, 2, 1]
    with pytest.raises(ShardLayoutError, match=r"Class 1 is in two shards: a.tfrecord and b.tfrecord"):
        ClassIndex.from_runs(paths, [[[0, 2], [1, 1]], [[1, 3]]])
    with pytest.raises(ShardLayoutError, match=r"missing \[1\]"):
        ClassIndex.from_runs(paths, [[[0, 2]], [[2, 3]]])
    with pytest.raises(ShardLayoutError, match="1 lists of class runs for 2 shards"):
        ClassIndex.from_runs(paths, [[[0, 2]]])


def test_a_class_that_is_not_contiguous_is_named(tmp_path):
    paths = write_split(str(tmp_path), None, 0, order=[[0, 0, 1, 0], [2]])
    with pytest.raises(ShardLayoutError, match=r"Class 0 \('class_0'\) is not contiguous") as e:
        ClassIndex.scan(paths)
    assert paths[0] in str(e.value) and "records 0-1, then again from record 3" in str(e.value)


def test_a_class_split_across_read_chunks_is_one_run(tmp_path):
    paths = write_split(str(tmp_path), [5000, 3], num_shards=1)  # > one 4096-record scan chunk
    assert ClassIndex.scan(paths).runs.tolist() == [[0, 0, 5000], [0, 5000, 3]]


def test_labels_must_be_contiguous(tmp_path):
    paths = write_split(str(tmp_path), None, 0, order=[[0, 0, 2]])
    with pytest.raises(ShardLayoutError, match=r"missing \[1\]"):
        ClassIndex.scan(paths)


@pytest.mark.parametrize("batch_size,k,match", [
    (12, 0, "images_per_class"), (10, 3, "multiple"), (40, 2, "only 5")])
def test_clear_errors_for_impossible_batches(tmp_path, batch_size, k, match):
    index = ClassIndex.scan(write_split(str(tmp_path), [4] * 5, num_shards=2))
    with pytest.raises(ValueError, match=match):
        ClassBalancedSampler(index, batch_size, k)


def test_a_subset_of_shards_yields_only_its_classes(ragged):
    index, sizes = ragged
    part = index.subset([1, 3])
    assert set(part.classes) == {c for c in range(len(sizes)) if c % 4 in (1, 3)}
    batches = collect(ClassBalancedSampler(part, 8, 2, seed=0), 0, 12)
    assert_balanced(batches, 8, 2)
    assert set(np.concatenate([labels for _, labels in batches])) <= set(part.classes)


def test_plain_batches_read_every_record_once_per_round(tmp_path):
    index = ClassIndex.scan(write_split(str(tmp_path), [3, 5, 4, 6, 2, 4], num_shards=3))
    records = [(int(label), bytes(x)) for images, labels in
               shuffled_batches(index, 6, epoch=0, steps=4, seed=0, window_batches=2).as_numpy_iterator()
               for x, label in zip(images, labels)]
    assert len(records) == len(set(records)) == 24
