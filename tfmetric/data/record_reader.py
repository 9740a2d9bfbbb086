"""Reads chosen records of chosen classes straight from class-grouped shards, by byte offset.

A sampler describes each batch as *requests*: per class of the batch, the class's label, which of
its records it needs (``j``: record j of the class's run, repeats allowed) and where each goes in
the batch. ``fetch_batches`` opens the class's shard at the class's byte offset (TFRecord readers
can start at any record boundary), reads the class's records up to the last one requested, keeps
the requested ones and puts every record at its place in the batch. Nothing else of the shard is
read; classes are fetched ``cycle_length`` at a time, in parallel, in a deterministic order.
"""

import tensorflow as tf

from tfmetric.data import schema

CHUNK = 32  # records of one class held and selected at a time
READ_BUFFER = 256 * 1024  # bytes of a shard read ahead per open class (TensorFlow's default)
RAW_SPEC = {k: schema.FEATURE_SPEC[k] for k in (schema.ENCODED, schema.LABEL)}  # bytes and label


def class_reader(path, offset):
    """The records of a TFRecord file from byte ``offset`` (a record boundary) to its end.

    ``tf.data.TFRecordDataset`` does not expose the op's ``byte_offsets``; the seek costs one
    small read whatever the offset (local files, ``gs://``, ...). Build it inside a tf.data
    function (``interleave``, ``flat_map``), as ``fetch_batches`` does: TensorFlow 2.21 cannot
    serialize the op's dataset object, which iterating it eagerly at top level needs.
    """
    variant = tf.raw_ops.TFRecordDatasetV2(
        filenames=tf.reshape(path, [1]),
        compression_type="",
        buffer_size=tf.constant(READ_BUFFER, tf.int64),
        byte_offsets=tf.reshape(tf.cast(offset, tf.int64), [1]),
    )
    return tf.data.experimental.from_variant(variant, tf.TensorSpec([], tf.string))


def bounded(dataset):
    """Turns off the rewrites that add read-ahead buffers of autotuned size (map parallelisation,
    injected prefetch), so a sampler holds what its doc says; the consumer's decode map and
    prefetch stay as parallel as it asks."""
    options = tf.data.Options()
    options.experimental_optimization.map_parallelization = False
    options.experimental_optimization.inject_prefetch = False
    return dataset.with_options(options)


def fetch_batches(index, requests, batch_size, cycle_length=8, reader=class_reader):
    """Batches ``(image_bytes [batch_size], labels [batch_size])`` from a dataset of requests.

    Args:
      index: the split's ClassIndex (shard, run and byte offset of every class).
      requests: dataset of ``(label, j [m], position [m], n)``, one element per class of a batch,
        of which the first n requests are valid; the requests of a batch are consecutive and
        place exactly ``batch_size`` records.
      batch_size: records per batch.
      cycle_length: classes read at the same time.
      reader: ``(path, byte offset) -> dataset of serialized records`` (default: class_reader).
    """
    paths = tf.constant(index.paths if index.paths else [""])
    shards, offsets = tf.constant(index.runs[:, 0]), tf.constant(index.offsets)

    def fetch(label, j, position, n):
        j, position = j[:n], position[:n]
        records = reader(tf.gather(paths, tf.gather(shards, label)), tf.gather(offsets, label))

        def select(chunk, chunk_records):
            first = chunk * CHUNK
            here = tf.where((j >= first) & (j < first + tf.size(chunk_records, out_type=tf.int64)))[:, 0]
            return (
                tf.gather(position, here),
                tf.fill(tf.shape(here), label),
                tf.gather(chunk_records, tf.gather(j, here) - first),
            )

        ds = records.take(tf.reduce_max(j) + 1).batch(CHUNK).enumerate()
        return ds.map(select).unbatch()

    ds = requests.interleave(
        fetch, cycle_length=cycle_length, block_length=batch_size, num_parallel_calls=cycle_length, deterministic=True
    )
    return ds.batch(batch_size, drop_remainder=True).map(_assemble)


def _assemble(position, label, records):
    order = tf.argsort(position)
    features = tf.io.parse_example(tf.gather(records, order), RAW_SPEC)
    label = tf.gather(label, order)
    check = tf.debugging.assert_equal(
        features[schema.LABEL],
        label,
        message=(
            "A record read at a class's byte offset has another label: the shards changed after the "
            "class index was built (rebuild the TFRecords, or drop the manifest's class_offsets)."
        ),
    )
    with tf.control_dependencies([check]):
        return features[schema.ENCODED], tf.identity(label)
