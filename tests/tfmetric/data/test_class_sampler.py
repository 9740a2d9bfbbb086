"""The streaming class-balanced sampler: batch invariant, replacement rules, coverage, determinism,
bounded buffering, clear errors on bad shards, and the keyed randomness it is built on."""

import collections
import os

import numpy as np
import pytest
import tensorflow as tf

from tfmetric.data import schema
from tfmetric.data.class_index import ClassIndex, ShardLayoutError
from tfmetric.data.class_sampler import ClassBalancedSampler, ShuffledSampler
from tfmetric.data.record_reader import class_reader


def write_split(directory, sizes, num_shards, image=None, order=None):
    """Class-grouped shards like pipelines.build_tfrecords writes: classes round-robin over shards,
    records sorted by label. Image c:k is ``image(c, k)`` (default: the text ``b"c:k"``).

    ``order`` overrides the layout: a list (one per shard) of label sequences, record by record.
    """
    os.makedirs(directory, exist_ok=True)
    image = image or (lambda c, k: f"{c}:{k}".encode())
    if order is None:
        order = [
            [c for c in range(len(sizes)) if c % num_shards == s for _ in range(sizes[c])] for s in range(num_shards)
        ]
    paths, seen = [], collections.Counter()
    for s, labels in enumerate(order):
        path = os.path.join(directory, f"train-{s:05d}-of-{len(order):05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for c in labels:
                writer.write(
                    schema.make_example(
                        image(c, seen[c]), "jpeg", 1, 1, c, f"class_{c}", f"{c}/{seen[c]}"
                    ).SerializeToString()
                )
                seen[c] += 1
        paths.append(path)
    return paths


def collect(sampler, epoch, steps):
    return [
        (np.array([int(x.split(b":")[1]) for x in images]), labels)
        for images, labels in sampler.batches(epoch, steps).as_numpy_iterator()
    ]


def assert_balanced(batches, batch_size, k):
    for images, labels in batches:
        assert labels.shape == images.shape == (batch_size,)
        groups = labels.reshape(batch_size // k, k)
        assert np.all(groups == groups[:, :1])  # K consecutive images per class
        assert len(np.unique(groups[:, 0])) == batch_size // k  # P distinct classes


@pytest.fixture(scope="module")
def ragged(tmp_path_factory):
    sizes = np.random.default_rng(0).integers(1, 30, size=23)
    paths = write_split(str(tmp_path_factory.mktemp("ragged")), sizes, num_shards=4)
    return ClassIndex.scan(paths), sizes


@pytest.mark.parametrize("batch_size,k", [(12, 4), (15, 5), (6, 1), (9, 9)])
def test_every_batch_has_exact_classes_and_images(ragged, batch_size, k):
    index, sizes = ragged
    for seed, epoch in ((0, 0), (1, 3)):
        batches = collect(ClassBalancedSampler(index, batch_size, k, seed=seed), epoch, 25)
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


def test_without_replacement_uses_a_class_s_images_uniformly(tmp_path):
    index = ClassIndex.scan(write_split(str(tmp_path), [10, 10, 10], num_shards=2))
    sampler = ClassBalancedSampler(index, 8, 4, replace=False, seed=3)
    batches = collect(sampler, 0, 50)
    drawn = np.concatenate([images for images, _ in batches])
    groups = drawn.reshape(-1, 4)
    assert all(len(set(g)) == 4 for g in groups)  # 4 distinct images per group
    counts = np.bincount(drawn + 10 * np.concatenate([labels for _, labels in batches]), minlength=30)
    chi2 = ((counts - counts.mean()) ** 2 / counts.mean()).sum()  # 400 draws over 30 images
    assert chi2 < 29 + 5 * np.sqrt(2 * 29)


# ---- Classes drawn like the official sampler: uniform, independent, whatever the layout -----------

C, P, K, STEPS = 50, 5, 2, 400


@pytest.fixture(scope="module")
def label_sorted(tmp_path_factory):
    """50 classes in 5 label-sorted shards (the converter's layout), and their sampler's labels."""
    sizes = np.random.default_rng(1).integers(2, 9, size=C)
    paths = write_split(
        str(tmp_path_factory.mktemp("sorted")),
        sizes,
        num_shards=5,
        order=[[c for c in range(C) if c * 5 // C == s for _ in range(sizes[c])] for s in range(5)],
    )
    index = ClassIndex.scan(paths)
    sampler = ClassBalancedSampler(index, P * K, K, seed=11)
    classes = sampler.batch_labels(0, STEPS)[:, ::K]
    return index, sampler, classes, sizes


def uniform_reference(steps, seed=0):
    """The official sampler's draw in numpy: P of C classes without replacement, per batch."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(C, P, replace=False) for _ in range(steps)])


def test_batch_labels_are_those_the_batches_carry(label_sorted):
    _, sampler, classes, _ = label_sorted
    streamed = [labels for _, labels in sampler.batches(0, 30).as_numpy_iterator()]
    np.testing.assert_array_equal(np.stack(streamed)[:, ::K], classes[:30])
    assert_balanced([(np.zeros(P * K), y) for y in streamed], P * K, K)


def test_class_usage_is_multinomial_like_not_round_robin(label_sorted):
    _, _, classes, _ = label_sorted

    def chi2(draws):
        counts = np.bincount(draws.ravel(), minlength=C)
        return ((counts - counts.mean()) ** 2 / counts.mean()).sum()

    ours, reference = chi2(classes), np.mean([chi2(uniform_reference(STEPS, s)) for s in range(20)])
    # Uniform draws: about (C - 1) * (C - P) / (C - 1) = 45, sd ~ 9.5; a round-robin schedule
    # (every class equally often) gives about 0, a skewed one far more.
    assert 45 - 4 * 9.5 < ours < 45 + 4 * 9.5
    assert abs(reference - 45) < 6


def test_label_span_matches_a_uniform_draw(label_sorted):
    _, _, classes, _ = label_sorted
    span = classes.max(1) - classes.min(1)
    expected = (P - 1) * (C + 1) / (P + 1) - 1  # E[max - min] of P of 0..C-1: 33
    reference = uniform_reference(STEPS)
    assert abs(span.mean() - expected) < 2.0 and abs(np.ptp(reference, 1).mean() - expected) < 2.0


def test_consecutive_batches_are_independent(label_sorted):
    _, _, classes, _ = label_sorted
    overlap = [len(set(a) & set(b)) for a, b in zip(classes[:-1], classes[1:])]
    assert abs(np.mean(overlap) - P * P / C) < 0.15  # E = 0.5 classes shared; sd of the mean 0.034
    means = classes.mean(1)
    assert abs(np.corrcoef(means[:-1], means[1:])[0, 1]) < 0.15
    first = np.bincount(classes[:, 0], minlength=C)  # every slot is uniform too
    assert ((first - first.mean()) ** 2 / first.mean()).sum() < 49 + 5 * np.sqrt(98)


def test_class_pair_coverage_matches_a_uniform_draw(label_sorted):
    _, _, classes, _ = label_sorted

    def coverage(draws):
        pairs = {(a, b) for row in draws for a in row for b in row if a < b}
        return len(pairs) / (C * (C - 1) / 2)

    expected = 1 - (1 - P * (P - 1) / (C * (C - 1))) ** STEPS  # 0.805
    assert abs(coverage(classes) - expected) < 0.03
    assert abs(coverage(uniform_reference(STEPS)) - expected) < 0.03


def test_batches_do_not_depend_on_the_shard_layout(tmp_path, label_sorted):
    index, sampler, classes, sizes = label_sorted
    other = ClassIndex.scan(write_split(str(tmp_path), sizes, num_shards=7))  # round-robin layout
    again = ClassBalancedSampler(other, P * K, K, seed=11)
    np.testing.assert_array_equal(again.batch_labels(0, STEPS)[:, ::K], classes)
    a, b = collect(sampler, 2, 5), collect(again, 2, 5)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))


def test_a_batch_is_a_function_of_seed_epoch_and_step(ragged):
    index, _ = ragged

    def run(seed, epoch, steps):
        return np.concatenate(
            [np.stack(b) for b in collect(ClassBalancedSampler(index, 12, 3, seed=seed), epoch, steps)]
        )

    a = run(5, 0, 10)
    np.testing.assert_array_equal(a, run(5, 0, 10))
    np.testing.assert_array_equal(a[:6], run(5, 0, 3))  # the epoch's length does not matter
    assert not np.array_equal(a, run(6, 0, 10))
    assert not np.array_equal(a, run(5, 1, 10))


def test_reads_only_the_chosen_classes_up_to_their_last_chosen_image(tmp_path):
    """A split far larger than a batch: the records read per batch are at most those of its P
    classes (up to the last image chosen), so nothing is read ahead beyond a few batches."""
    k, classes_per_batch, size, num_classes = 4, 4, 6, 400
    paths = write_split(str(tmp_path), [size] * num_classes, num_shards=8)
    reads = tf.Variable(0, dtype=tf.int64)

    def counting_reader(path, offset):
        def count(record):
            with tf.control_dependencies([reads.assign_add(1)]):
                return tf.identity(record)

        return class_reader(path, offset).map(count)

    sampler = ClassBalancedSampler(
        ClassIndex.scan(paths), classes_per_batch * k, k, seed=0, cycle_length=4, reader=counting_reader
    )
    per_batch = classes_per_batch * size
    iterator = iter(sampler.batches(0, 50))
    for b in range(50):
        next(iterator)
        assert int(reads.numpy()) <= (b + 4) * per_batch  # + the classes and batches in flight
    assert int(reads.numpy()) < 50 * per_batch < num_classes * size


def test_shards_with_a_class_in_two_shards_are_named(tmp_path):
    paths = write_split(str(tmp_path), None, 0, order=[[0, 0, 1, 1], [2, 2, 1]])
    with pytest.raises(ShardLayoutError, match=r"Class 1 \('class_1'\) is in two shards") as e:
        ClassIndex.scan(paths)
    assert paths[0] in str(e.value) and paths[1] in str(e.value)


def test_class_runs_are_checked_like_scanned_labels():
    paths = ["a.tfrecord", "b.tfrecord"]
    index = ClassIndex.from_runs(paths, [[[0, 2], [2, 1]], [[1, 3]]], [[0, 40], [0]])
    assert index.runs.tolist() == [[0, 0, 2], [1, 0, 3], [0, 2, 1]] and index.order.tolist() == [0, 2, 1]
    assert index.offsets.tolist() == [0, 0, 40]
    with pytest.raises(ShardLayoutError, match=r"Class 1 is in two shards: a.tfrecord and b.tfrecord"):
        ClassIndex.from_runs(paths, [[[0, 2], [1, 1]], [[1, 3]]], [[0, 9], [0]])
    with pytest.raises(ShardLayoutError, match=r"missing \[1\]"):
        ClassIndex.from_runs(paths, [[[0, 2]], [[2, 3]]], [[0], [0]])
    with pytest.raises(ShardLayoutError, match="1 lists of class runs and 1 of class offsets for 2 shards"):
        ClassIndex.from_runs(paths, [[[0, 2]]], [[0]])
    with pytest.raises(ShardLayoutError, match="a.tfrecord: 2 class runs but 1 offsets"):
        ClassIndex.from_runs(paths, [[[0, 2], [2, 1]], [[1, 3]]], [[0], [0]])


def test_scanned_offsets_are_where_each_class_starts(ragged):
    index, _ = ragged
    for c in (0, 5, 22):
        # Inside a tf.data function, as the sampler uses it (its op cannot be serialized eagerly).
        first = next(
            iter(
                tf.data.Dataset.from_tensors(0).interleave(
                    lambda _, c=c: class_reader(index.paths[index.runs[c, 0]], index.offsets[c])
                )
            )
        )
        example = tf.train.Example.FromString(first.numpy())
        assert example.features.feature[schema.ENCODED].bytes_list.value == [f"{c}:0".encode()]


def test_a_shared_label_space_may_have_gaps():
    """In-Shop query and gallery share labels: a split may hold C of L labels (not 0..C-1)."""
    index = ClassIndex.from_runs(["q.tfrecord"], [[[0, 2], [3, 1]]], [[0, 90]], num_classes=2, num_labels=4)
    assert index.classes.tolist() == [0, 3] and index.labels().tolist() == [0, 0, 3]
    with pytest.raises(ShardLayoutError, match="out of range \\[3\\]"):
        ClassIndex.from_runs(["q.tfrecord"], [[[0, 2], [3, 1]]], [[0, 90]], num_classes=2, num_labels=3)


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


@pytest.mark.parametrize("batch_size,k,match", [(12, 0, "images_per_class"), (10, 3, "multiple"), (40, 2, "only 5")])
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
    sampler = ShuffledSampler(index, 6, seed=0)
    records = [
        (int(label), bytes(x))
        for images, labels in sampler.batches(0, 8).as_numpy_iterator()
        for x, label in zip(images, labels)
    ]
    assert len(records) == 48 and len(set(records[:24])) == len(set(records[24:])) == 24  # 2 rounds
    assert records[:24] != records[24:]
    np.testing.assert_array_equal(sampler.batch_labels(0, 8).ravel(), [r[0] for r in records])


def test_plain_batches_hold_as_many_classes_as_a_true_shuffle(tmp_path):
    """The ablation baseline on CUB-like data (100 classes, ~59 images each, batches of 75): a
    true shuffle puts about 53 classes in a batch (a window over label-sorted shards gave 14)."""
    sizes = np.random.default_rng(2).integers(41, 61, size=100)
    index = ClassIndex.scan(write_split(str(tmp_path), sizes, num_shards=6, image=lambda c, k: b""))
    sampler = ShuffledSampler(index, 75, seed=0)
    ours = [len(np.unique(b)) for b in sampler.batch_labels(0, 40)]
    split = np.repeat(np.arange(100), sizes)
    rng = np.random.default_rng(0)
    reference = [len(np.unique(b)) for _ in range(10) for b in rng.permutation(split)[: 75 * 40].reshape(40, 75)]
    assert abs(np.mean(ours) - np.mean(reference)) < 1.0 and np.mean(reference) > 50
    streamed = [labels for _, labels in sampler.batches(0, 2).as_numpy_iterator()]
    np.testing.assert_array_equal(np.stack(streamed), sampler.batch_labels(0, 2))


@pytest.mark.parametrize(
    "make",
    [
        lambda index, **kw: ClassBalancedSampler(index, 12, 4, seed=5, **kw),
        lambda index, **kw: ClassBalancedSampler(index, 15, 5, replace=False, seed=2, **kw),
        lambda index, **kw: ShuffledSampler(index, 10, seed=1, **kw),
    ],
    ids=["balanced", "balanced-distinct", "shuffled"],
)
def test_in_memory_batches_are_the_streamed_ones(ragged, make):
    """data.cache: the same bytes and labels in the same order as read from the shards, every epoch."""
    index, _ = ragged
    streamed, held = make(index), make(index, in_memory=True)
    for epoch in (0, 3):
        a = list(streamed.batches(epoch, 7).as_numpy_iterator())
        b = list(held.batches(epoch, 7).as_numpy_iterator())
        assert len(a) == len(b) == 7
        for (ia, la), (ib, lb) in zip(a, b):
            np.testing.assert_array_equal(la, lb)
            assert list(ia) == list(ib)


def test_in_memory_records_of_a_shard_subset(ragged):
    index, _ = ragged
    part = index.subset([3, 0])
    held = ClassBalancedSampler(part, 8, 2, seed=0, in_memory=True)
    np.testing.assert_array_equal(
        np.stack([labels for _, labels in held.batches(1, 5).as_numpy_iterator()]), held.batch_labels(1, 5)
    )
    for images, labels in held.batches(1, 5).as_numpy_iterator():
        assert [int(x.split(b":")[0]) for x in images] == list(labels)  # image c:k belongs to class c


def test_in_memory_records_refuse_shards_that_changed(tmp_path):
    index = ClassIndex.scan(write_split(str(tmp_path / "a"), [3, 4, 5], num_shards=2))
    write_split(str(tmp_path / "a"), [3, 4, 2], num_shards=2)  # rewritten after indexing
    sampler = ClassBalancedSampler(index, 4, 2, in_memory=True)
    assert sampler.batch_labels(0, 1).shape == (1, 4)  # labels alone never read the records
    with pytest.raises(ValueError, match=r"train-00000-of-00002.tfrecord.*9 records.*describes 12"):
        sampler.batches(0, 1)


def test_epochs_do_not_trace_the_draws_again(ragged):
    index, _ = ragged
    sampler = ClassBalancedSampler(index, 12, 4, seed=0)
    for epoch in range(3):
        sampler.batches(epoch, 2)
    assert sampler._traced_requests.experimental_get_tracing_count() == 1
