"""Streaming class-balanced batches from class-grouped TFRecord shards.

Every batch holds exactly ``batch_size // images_per_class`` (P) distinct classes and exactly
``images_per_class`` (K) images of each, as consecutive runs of K. The split is never loaded: the
sampler relies on each shard holding whole classes as contiguous runs of records (the guarantee of
``pipelines.build_tfrecords``, checked by ``ClassIndex.scan``) and reads the shards sequentially.

An epoch is made of *rounds*. A round reads every shard once (shard order shuffled per round,
``cycle_length`` shards interleaved) and takes one group of K images from each class while it
streams past: whether a record is taken is a pure function of (seed, round, class, position in the
class), a keyed hash, so nothing but the chosen records is kept and the pipeline is deterministic
however it is parallelised. ``C mod P`` classes sit out each round, chosen along a fixed random
cycle, so that a round is a whole number of batches without a class repeating inside a batch, and
over the rounds every class is used equally often (within one). Groups are shuffled inside windows
of ``window_batches * P`` groups and cut into batches. An epoch is ``steps`` batches (the official
``num_images // batch_size``), i.e. ``ceil(steps * P / (C - C mod P))`` rounds, the last one cut short.

Within a class, with ``replace=True`` (the official sampler) the K images are drawn uniformly with
replacement; with ``replace=False`` a class of n >= K images is walked through successive random
permutations, ``n // K`` disjoint groups per permutation (no image repeats in a batch, nor across
consecutive uses of the class), and a class of n < K images gives all n plus K - n drawn with
replacement.

Memory: ``cycle_length`` open shards x (a read buffer + a chunk of ``CHUNK`` records) + at most
``cycle_length`` partial groups + one window of ``window_batches * batch_size`` images + what the
consumer prefetches; nothing grows with the split. ``ClassIndex`` holds O(classes) integers.
"""
import math

import numpy as np
import tensorflow as tf

from tfmetric.data import schema
from tfmetric.data.balanced_batches import check_balanced_args
from tfmetric.data.keyed_random import keyed_permutation, keyed_shuffle, keyed_uniform_int
from tfmetric.datasets.base import DatasetFormatError

CHUNK = 64  # records parsed and selected per vectorised step
_LABEL_SPEC = {schema.LABEL: schema.FEATURE_SPEC[schema.LABEL]}
_INDEX_SPEC = {schema.LABEL: schema.FEATURE_SPEC[schema.LABEL],
               schema.CLASS_NAME: schema.FEATURE_SPEC[schema.CLASS_NAME]}
_ENCODED_SPEC = {schema.ENCODED: schema.FEATURE_SPEC[schema.ENCODED]}
RAW_SPEC = {k: schema.FEATURE_SPEC[k] for k in (schema.ENCODED, schema.LABEL)}  # bytes and label
# Domain tags keep the keyed random streams of different decisions independent.
_DRAW, _PERM, _SHARD, _WINDOW = range(1, 5)


def default_reader(path):
    return tf.data.TFRecordDataset(path, buffer_size=1 << 20)


def bounded(dataset):
    """Turns off the rewrites that add read-ahead buffers of autotuned size (map parallelisation,
    injected prefetch), so the sampler holds what the module doc says; the consumer's decode map
    and prefetch stay as parallel as it asks."""
    options = tf.data.Options()
    options.experimental_optimization.map_parallelization = False
    options.experimental_optimization.inject_prefetch = False
    return dataset.with_options(options)


class ShardLayoutError(DatasetFormatError):
    """Shards that do not hold whole classes as contiguous runs (the sampler cannot stream them)."""


# ---- The class index: where each class's run of records is --------------------------------------

class ClassIndex:
    """Where every class of a split lives: its shard, first record in the shard and image count.

    Args:
      paths: shard paths in split order.
      runs: int64 [L, 3] rows (shard, start, count), row c for label c; count 0 for a label
        that is not in these shards (a subset of the split).
      order: the labels present, in file order (shard by shard).
    """

    def __init__(self, paths, runs, order):
        self.paths = list(paths)
        self.runs = np.asarray(runs, np.int64).reshape(-1, 3)
        self.order = np.asarray(order, np.int64)
        self.classes = np.flatnonzero(self.runs[:, 2] > 0)

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def num_images(self):
        return int(self.runs[:, 2].sum())

    def labels(self):
        """Labels of every record, in file order."""
        return np.repeat(self.order, self.runs[self.order, 2])

    def subset(self, shard_ids):
        """The index restricted to some shards (labels unchanged), e.g. one input pipeline's share."""
        keep = np.isin(self.runs[:, 0], shard_ids) & (self.runs[:, 2] > 0)
        remap = np.full(len(self.paths), -1, np.int64)
        remap[list(shard_ids)] = np.arange(len(shard_ids))
        runs = self.runs.copy()
        runs[:, 0] = remap[runs[:, 0]]
        runs[~keep] = (-1, 0, 0)
        return ClassIndex([self.paths[s] for s in shard_ids], runs,
                          [c for c in self.order if keep[c]])

    @classmethod
    def scan(cls, paths, num_classes=None, reader=default_reader):
        """Reads the labels of every shard (not the images) and checks the class grouping.

        Raises:
          ShardLayoutError: a class is split over two shards or not contiguous inside its shard,
            or the labels are not 0..C-1; the message names the shard(s) and the class.
        """
        found = {}  # label -> (shard, start, count, class name)
        order = []
        for s, path in enumerate(paths):
            position, current = 0, None
            for chunk in reader(path).batch(4096).map(lambda r: tf.io.parse_example(r, _INDEX_SPEC)):
                labels, names = chunk[schema.LABEL].numpy(), chunk[schema.CLASS_NAME].numpy()
                starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
                for k, start in enumerate(starts):
                    stop = starts[k + 1] if k + 1 < len(starts) else len(labels)
                    label = int(labels[start])
                    if current is not None and current[0] == label:  # run continues over chunks
                        current[2] += stop - start
                        continue
                    if current is not None:
                        cls._add_run(found, order, paths, s, current)
                    current = [label, position + start, stop - start, names[start]]
                position += len(labels)
            if current is not None:
                cls._add_run(found, order, paths, s, current)
        return cls._from_runs_found(paths, found, order, num_classes)

    @classmethod
    def from_runs(cls, paths, shard_runs, num_classes=None):
        """The index from the converter's record of each shard's classes, without reading the shards.

        Args:
          paths: shard paths in split order.
          shard_runs: per shard, ``[[label, count], ...]`` in file order (the manifest's
            ``class_runs``, written by ``pipelines.build_tfrecords`` beside the shards).

        Raises:
          ShardLayoutError: as ``scan``, for runs that do not describe whole, contiguous classes.
        """
        if len(shard_runs) != len(paths):
            raise ShardLayoutError(f"{len(shard_runs)} lists of class runs for {len(paths)} shards.")
        found, order = {}, []
        for s, runs in enumerate(shard_runs):
            start = 0
            for label, count in runs:
                cls._add_run(found, order, paths, s, [int(label), start, int(count), None])
                start += int(count)
        return cls._from_runs_found(paths, found, order, num_classes)

    @classmethod
    def _from_runs_found(cls, paths, found, order, num_classes):
        num_classes = len(found) if num_classes is None else num_classes
        missing = sorted(set(range(num_classes)) - set(found))
        if missing or len(found) != num_classes:
            extra = sorted(set(found) - set(range(num_classes)))
            raise ShardLayoutError(
                f"Labels of {len(paths)} shard(s) starting with {paths[0] if paths else '-'} must be "
                f"exactly 0..{num_classes - 1}; missing {missing[:5]}, out of range {extra[:5]}.")
        runs = [found[c] for c in range(num_classes)]
        return cls(paths, runs, order)

    @staticmethod
    def _add_run(found, order, paths, shard, run):
        label, start, count, name = run
        name = "" if name is None else f" ({name.decode('utf-8', 'replace')!r})"  # None: from runs
        if label < 0:
            raise ShardLayoutError(f"{paths[shard]}: negative label {label}{name}.")
        if label in found:
            first_shard, first_start, first_count = found[label]
            if first_shard == shard:
                raise ShardLayoutError(
                    f"Class {label}{name} is not contiguous in shard {paths[shard]}: records "
                    f"{first_start}-{first_start + first_count - 1}, then again from record {start}. "
                    f"Each class must be one run of records; rebuild with pipelines.build_tfrecords.")
            raise ShardLayoutError(
                f"Class {label}{name} is in two shards: {paths[first_shard]} and {paths[shard]}. "
                f"Each class must sit inside one shard; rebuild with pipelines.build_tfrecords.")
        found[label] = (shard, start, count)
        order.append(label)


# ---- The sampler --------------------------------------------------------------------------------

class ClassBalancedSampler:
    """Class-balanced batches of encoded images streamed from class-grouped shards (see module doc).

    Args:
      index: ClassIndex of the split (or of one input pipeline's shards).
      batch_size: images per batch, a multiple of images_per_class.
      images_per_class: K, images of each class in a batch.
      replace: draw within a class with replacement (the official sampler) or without while the
        class has enough images.
      seed: integer seed; the same seed and epoch give the same batches.
      cycle_length: shards read at the same time (interleaved).
      window_batches: groups are shuffled within windows of this many batches.
      reader: path tensor -> dataset of serialized records (default: TFRecordDataset).
    """

    def __init__(self, index, batch_size, images_per_class, replace=True, seed=0, cycle_length=8,
                 window_batches=8, reader=default_reader):
        self.classes_per_batch = check_balanced_args(index.num_classes, batch_size, images_per_class)
        self.index, self.batch_size, self.images_per_class = index, batch_size, images_per_class
        self.replace, self.seed, self.reader = replace, int(seed), reader
        self.cycle_length = max(1, min(cycle_length, len(index.paths)))
        self.window = max(1, window_batches) * self.classes_per_batch
        self.sitting_out = index.num_classes % self.classes_per_batch
        self.groups_per_round = index.num_classes - self.sitting_out
        # The cycle along which classes sit out: a fixed random order of the classes.
        self._sit_out_rank = np.zeros(len(index.runs), np.int64)
        self._sit_out_rank[index.classes] = np.random.default_rng(self.seed).permutation(index.num_classes)
        # Traced once per sampler and reused by every epoch's dataset (tracing is the slow part).
        self._select_fn = tf.function(self._select, input_signature=[
            tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int64)])

    def rounds_per_epoch(self, steps):
        return max(1, math.ceil(steps * self.classes_per_batch / self.groups_per_round))

    def batches(self, epoch, steps):
        """Exactly ``steps`` batches ``(image_bytes [batch_size], labels [batch_size])``."""
        rounds = self.rounds_per_epoch(steps)
        ds = tf.data.Dataset.range(epoch * rounds, (epoch + 1) * rounds).flat_map(self.round_batches)
        return bounded(ds.take(steps))

    def round_batches(self, round_):
        """The batches of one round: every class not sitting out contributes one group of K."""
        order = keyed_shuffle(len(self.index.paths), self.seed, _SHARD, round_)
        ds = tf.data.Dataset.from_tensor_slices(order).interleave(
            lambda s: self._shard_groups(s, round_), cycle_length=self.cycle_length, block_length=1)
        ds = window_shuffle(ds, self.window, self.seed, round_)
        ds = ds.batch(self.classes_per_batch, drop_remainder=True)
        return ds.map(lambda images, labels: (tf.reshape(images, [self.batch_size]),
                                              tf.repeat(labels, self.images_per_class)))

    def _shard_groups(self, shard, round_):
        paths = tf.constant(self.index.paths)
        ds = self.reader(tf.gather(paths, shard)).enumerate().batch(CHUNK)
        ds = ds.map(lambda pos, records: self._select_fn(pos, records, round_)).unbatch()
        return ds.batch(self.images_per_class, drop_remainder=True).map(_check_group)

    def _select(self, position, records, round_):
        """The chosen records of a chunk, each repeated by its multiplicity (0 for most)."""
        labels = tf.io.parse_example(records, _LABEL_SPEC)[schema.LABEL]
        runs = tf.gather(tf.constant(self.index.runs), labels)
        count = runs[:, 2]
        m = self.multiplicity(labels, position - runs[:, 1], count, round_)
        kept = tf.repeat(records, m)
        return tf.io.parse_example(kept, _ENCODED_SPEC)[schema.ENCODED], tf.repeat(labels, m)

    def multiplicity(self, labels, i, count, round_):
        """How many times image i (of ``count``) of class ``labels`` is taken in ``round_``."""
        k, seed = self.images_per_class, self.seed
        j = tf.range(k, dtype=tf.int64)[None, :]
        draws = keyed_uniform_int(count[:, None], seed, _DRAW, round_, labels[:, None], j)
        hits = tf.cast(draws == i[:, None], tf.int64)
        if self.replace:
            m = tf.reduce_sum(hits, axis=1)
        else:
            per_perm = tf.maximum(count // k, 1)
            slot = tf.math.floormod(round_, per_perm)
            pos = keyed_permutation(i, count, seed, _PERM, labels, round_ // per_perm)
            taken = tf.cast((pos >= slot * k) & (pos < (slot + 1) * k), tf.int64)
            topped = 1 + tf.reduce_sum(hits * tf.cast(j < (k - count)[:, None], tf.int64), axis=1)
            m = tf.where(count >= k, taken, topped)
        if self.sitting_out:
            c, q = self.index.num_classes, self.sitting_out
            rank = tf.gather(tf.constant(self._sit_out_rank), labels)
            m = tf.where(tf.math.floormod(rank - round_ * q, c) < q, tf.zeros_like(m), m)
        return m


def _check_group(images, labels):
    check = tf.debugging.assert_equal(labels, labels[0], message=(
        "A group of records mixes classes: the shards changed after the class index was built."))
    with tf.control_dependencies([check]):
        return images, tf.identity(labels[0])


def window_shuffle(dataset, window, seed, round_):
    """Shuffles ``dataset`` (elements of any structure) within consecutive windows of ``window``
    elements, by a keyed permutation of (seed, round, window number): deterministic, bounded memory."""
    def permute(w, elements):
        first = tf.nest.flatten(elements)[0]
        order = keyed_shuffle(tf.shape(first)[0], seed, _WINDOW, round_, w)
        return tf.nest.map_structure(lambda t: tf.gather(t, order), elements)

    return dataset.batch(window).enumerate().map(permute).unbatch()


def shuffled_batches(index, batch_size, epoch, steps, seed=0, cycle_length=8, window_batches=8,
                     reader=default_reader):
    """Plain batches ``(image_bytes, labels)`` without class balancing (the ablation).

    Every record once per round, shards in a random order and interleaved, records shuffled within
    windows of ``window_batches`` batches. A shard stores a class as one run, so these batches are
    more class-correlated than a shuffle of the whole split in memory.
    """
    num = len(index.paths)
    rounds = max(1, math.ceil(steps * batch_size / max(1, index.num_images)))

    def round_records(round_):
        order = keyed_shuffle(num, seed, _SHARD, round_)
        ds = tf.data.Dataset.from_tensor_slices(tf.gather(tf.constant(index.paths), order))
        ds = ds.interleave(reader, cycle_length=max(1, min(cycle_length, num)), block_length=1)
        return window_shuffle(ds, window_batches * batch_size, seed, round_)

    def parse(records):
        features = tf.io.parse_example(records, RAW_SPEC)
        return features[schema.ENCODED], features[schema.LABEL]

    ds = tf.data.Dataset.range(epoch * rounds, (epoch + 1) * rounds).flat_map(round_records)
    return bounded(ds.batch(batch_size, drop_remainder=True).take(steps).map(parse))
