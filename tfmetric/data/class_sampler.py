"""Training batches streamed from class-grouped TFRecord shards, drawn like the official sampler.

``ClassBalancedSampler`` is the official ``ClassBalancedBatchSampler``
(github.com/azgo14/classification_metric_learning, ``metric_learning/sampler.py``): every batch
draws its P = ``batch_size // images_per_class`` classes uniformly at random, without
replacement, from all the split's classes, independently of every other batch, and then K =
``images_per_class`` images of each class, with replacement (``replace=False``: K distinct
images, every image plus K - n drawn with replacement for a class of n < K). Batch ``step`` of
``epoch`` is a pure function of ``(seed, epoch, step)`` (keyed hashes, ``keyed_random``), so it
does not depend on the shard layout, the label order, the other batches or how many threads
read, and a resumed run sees exactly the batches it would have seen.

``ShuffledSampler`` is the ablation without class balancing: a uniform shuffle of the whole split
(every record once per round, in the order of a keyed pseudo-random permutation of all records).

Neither reads a split in order. Both only *choose* records and leave the reading to
``record_reader.fetch_batches``, which opens each chosen class at its byte offset and reads that
class's records up to the last one chosen. Memory: ``cycle_length`` open classes x (a read buffer
+ ``CHUNK`` records + the records they place) + one batch + what the consumer prefetches; the
class index holds O(classes) integers. Nothing grows with the split.

With ``in_memory`` (``data.cache``, for small splits) a sampler instead holds the split's encoded
images (``memory_records``, read once) and gathers each batch from there: the same batches,
without the per-class set-up of a shard reader, at the cost of the split's size in memory.
"""

import numpy as np
import tensorflow as tf

from tfmetric.data.balanced_batches import check_balanced_args
from tfmetric.data.class_index import ClassIndex, ShardLayoutError  # noqa: F401 (the sampler's index)
from tfmetric.data.keyed_random import keyed_permutation, keyed_sample, keyed_uniform_int
from tfmetric.data.memory_records import MemoryRecords
from tfmetric.data.record_reader import bounded, class_reader, fetch_batches

# Domain tags keep the keyed random streams of different decisions independent.
_CLASSES, _IMAGES, _SHUFFLE = range(11, 14)


class _Sampler:
    """``batches(epoch, steps)`` from ``_requests(epoch, step)`` (what each batch reads)."""

    def __init__(self, index, batch_size, seed, cycle_length, reader, in_memory=False):
        self.index, self.batch_size, self.seed = index, int(batch_size), int(seed)
        self.cycle_length, self.reader = max(1, int(cycle_length)), reader
        self.in_memory, self._records = bool(in_memory), None
        self._classes = tf.constant(index.classes)
        self._counts = tf.constant(index.runs[:, 2])
        # Traced once for every epoch: the keyed draws are thousands of small ops, and tracing
        # them again each time an epoch's dataset is built costs seconds.
        scalar = tf.TensorSpec([], tf.int64)
        self._traced_requests = tf.function(self._requests, input_signature=(scalar, scalar))

    def _epoch_requests(self, epoch):
        epoch = tf.cast(epoch, tf.int64)  # an int, or a tensor inside a tf.data function
        return lambda step: self._traced_requests(epoch, step)

    def records(self):
        """The ``in_memory`` sampler's MemoryRecords, read on the first call (batch_labels never
        reads them). Call it eagerly before building ``batches`` inside a tf.data function."""
        if self._records is None:
            self._records = MemoryRecords(self.index)
        return self._records

    def batches(self, epoch, steps):
        """Exactly ``steps`` batches ``(image_bytes [batch_size], labels [batch_size])``."""
        requests_of = self._epoch_requests(epoch)
        if self.in_memory:
            records = self.records()
            return tf.data.Dataset.range(steps).map(lambda step: records.batch(*requests_of(step)))

        def step_requests(step):
            label, j, position = requests_of(step)  # padded: slicing ragged rows warns
            return label, j.to_tensor(-1), position.to_tensor(-1), j.row_lengths()

        requests = tf.data.Dataset.range(steps).map(step_requests).unbatch()
        return bounded(fetch_batches(self.index, requests, self.batch_size, self.cycle_length, self.reader))

    def batch_labels(self, epoch, steps):
        """int64 [steps, batch_size]: the labels ``batches`` yields, without reading a record."""

        requests_of = self._epoch_requests(epoch)

        def labels(step):
            label, j, position = requests_of(step)
            per_record = tf.repeat(label, j.row_lengths())
            return tf.gather(per_record, tf.argsort(position.flat_values))

        ds = tf.data.Dataset.range(steps).map(labels).batch(max(1, steps))
        return next(iter(ds.as_numpy_iterator()), np.zeros([0, self.batch_size], np.int64))

    def _requests(self, epoch, step):
        raise NotImplementedError


class ClassBalancedSampler(_Sampler):
    """Class-balanced batches of encoded images, drawn like the official sampler (module doc).

    Args:
      index: ClassIndex of the split (or of one input pipeline's shards).
      batch_size: images per batch, a multiple of images_per_class.
      images_per_class: K, images of each class in a batch.
      replace: draw within a class with replacement (the official sampler) or K distinct images.
      seed: integer seed; the same seed, epoch and step give the same batch.
      cycle_length: classes read at the same time.
      reader: ``(path, byte offset) -> dataset of serialized records`` (default: class_reader).
      in_memory: hold the split's encoded images in memory (``MemoryRecords``, read once) and
        gather each batch from there instead of reading the shards; the same batches.
    """

    def __init__(
        self,
        index,
        batch_size,
        images_per_class,
        replace=True,
        seed=0,
        cycle_length=8,
        reader=class_reader,
        in_memory=False,
    ):
        self.classes_per_batch = check_balanced_args(index.num_classes, batch_size, images_per_class)
        super().__init__(index, batch_size, seed, cycle_length, reader, in_memory)
        self.images_per_class, self.replace = int(images_per_class), bool(replace)

    def _requests(self, epoch, step):
        p, k, key = self.classes_per_batch, self.images_per_class, (self.seed, epoch, step)
        chosen = keyed_sample(tf.size(self._classes, out_type=tf.int64)[None], p, *key, _CLASSES)[0]
        label = tf.gather(self._classes, chosen)
        n = tf.gather(self._counts, label)
        slot = tf.range(k, dtype=tf.int64)[None, :]
        drawn = keyed_uniform_int(n[:, None], *key, _IMAGES, label[:, None], slot)
        if not self.replace:
            distinct = keyed_sample(tf.maximum(n, k), k, *key, _IMAGES, label[:, None])
            topped = tf.where(slot < n[:, None], slot, drawn)  # n < K: every image, then draws
            drawn = tf.where(n[:, None] >= k, distinct, topped)
        position = tf.reshape(tf.range(p * k, dtype=tf.int64), [p, k])
        return label, tf.RaggedTensor.from_tensor(drawn), tf.RaggedTensor.from_tensor(position)


class ShuffledSampler(_Sampler):
    """Plain batches without class balancing (the ablation): a uniform shuffle of the whole split.

    Round r of an epoch visits every record once, record ``perm(p)`` at position p, where perm is
    a keyed pseudo-random permutation of the split's records (``keyed_permutation``); an epoch of
    ``num_images // batch_size`` steps is one round, its remainder dropped.

    Args:
      index: ClassIndex of the split (or of one input pipeline's shards).
      batch_size: images per batch.
      seed: integer seed; the same seed, epoch and step give the same batch.
      cycle_length: classes read at the same time.
      reader: ``(path, byte offset) -> dataset of serialized records`` (default: class_reader).
      in_memory: as for ClassBalancedSampler.
    """

    def __init__(self, index, batch_size, seed=0, cycle_length=8, reader=class_reader, in_memory=False):
        if batch_size < 1 or batch_size > index.num_images:
            raise ValueError(
                f"batch_size must be in [1, {index.num_images}] (the split's images). Received: batch_size={batch_size}"
            )
        super().__init__(index, batch_size, seed, cycle_length, reader, in_memory)
        counts = index.runs[index.classes, 2]
        self._first = tf.constant(np.r_[0, np.cumsum(counts)[:-1]])  # record number of each class's first

    def _requests(self, epoch, step):
        n = self.index.num_images
        p = tf.cast(step, tf.int64) * self.batch_size + tf.range(self.batch_size, dtype=tf.int64)
        record = keyed_permutation(p % n, n, self.seed, _SHUFFLE, epoch, p // n)
        order = tf.argsort(record)  # groups the batch's records by class, each class's in file order
        record, position = tf.gather(record, order), tf.gather(p % self.batch_size, order)
        slot = tf.searchsorted(self._first, record, side="right") - 1
        label, group = tf.unique(tf.gather(self._classes, slot), out_idx=tf.int64)
        j = record - tf.gather(self._first, slot)
        return (label, tf.RaggedTensor.from_value_rowids(j, group), tf.RaggedTensor.from_value_rowids(position, group))
