"""A split's encoded images held in memory, for training batches gathered without reading shards.

``data.cache=true`` is for small splits: opening a class at its byte offset costs a few
milliseconds of tf.data set-up per class, which on a split of a few thousand tiny images is most of
an epoch. ``MemoryRecords`` reads the split's shards once, in file order, and keeps each record's
encoded image and label; a sampler's requests (label, record j of the class, position in the batch)
then become one gather per batch. The batches are the same bytes in the same order as
``record_reader.fetch_batches`` reads from the shards, so a run trains identically either way.
Memory: the split's encoded images (about their size on disk), nothing decoded.
"""

import numpy as np
import tensorflow as tf

from tfmetric.data import schema
from tfmetric.data.record_reader import RAW_SPEC

_READ_BATCH = 1024  # records parsed at a time while loading


class MemoryRecords:
    """Every record of a ClassIndex's shards: ``encoded`` [N] and ``labels`` [N], in file order.

    ``first[c]`` is the position of class c's first record (-1 for a label the shards lack).

    Raises:
      ValueError: the shards hold another number of records than the index describes (they
        changed after the index was built); the message names the first shard.
    """

    def __init__(self, index):
        shard, start, count = index.runs[index.classes].T
        totals = np.bincount(shard, weights=count, minlength=len(index.paths))  # records per shard
        base = np.r_[0, np.cumsum(totals)[:-1]].astype(np.int64)
        first = np.full(len(index.runs), -1, np.int64)
        first[index.classes] = base[shard] + start
        encoded, labels = [], []
        if index.paths:
            ds = tf.data.TFRecordDataset(index.paths).batch(_READ_BATCH)
            for chunk in ds.map(lambda r: tf.io.parse_example(r, RAW_SPEC)):
                encoded.append(chunk[schema.ENCODED])
                labels.append(chunk[schema.LABEL])
        self.encoded = tf.concat(encoded, 0) if encoded else tf.zeros([0], tf.string)
        self.labels = tf.concat(labels, 0) if labels else tf.zeros([0], tf.int64)
        if int(self.labels.shape[0]) != index.num_images:
            raise ValueError(
                f"{index.paths[0] if index.paths else 'no shards'} (and the split's other shards) hold "
                f"{int(self.labels.shape[0])} records, but the class index describes {index.num_images}: "
                "the shards changed after it was built (rebuild the TFRecords)."
            )
        self.first = tf.constant(first)

    def batch(self, label, j, position):
        """``(image_bytes [B], labels [B])`` for one batch's requests.

        Args:
          label: int64 [P], the batch's classes.
          j: ragged int64 [P, None], which records of each class (record j of the class's run).
          position: ragged int64 [P, None], where each record goes in the batch.
        """
        rows = tf.repeat(tf.gather(self.first, label), j.row_lengths()) + j.flat_values
        order = tf.argsort(position.flat_values)
        rows = tf.gather(rows, order)
        wanted = tf.gather(tf.repeat(label, j.row_lengths()), order)
        got = tf.gather(self.labels, rows)
        check = tf.debugging.assert_equal(
            got, wanted, message="A record held in memory has another label than the class index says."
        )
        with tf.control_dependencies([check]):
            return tf.gather(self.encoded, rows), tf.identity(got)
