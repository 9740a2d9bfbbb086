"""Sharded file output that every Beam runner executes the same way.

Beam's file sinks (``WriteToParquet``, ``WriteToText``) emit their results from ``finish_bundle``
and coordinate through side inputs; Beam's DaskRunner drops ``finish_bundle`` outputs, so there
they finalise nothing. ``WriteShards`` needs neither: elements are keyed by a stable hash of their
id into ``num_shards`` shards, every shard key is also created once (so empty shards are written
too and the set of files is complete), and one worker writes each shard to a temporary name in
the same directory and renames it into place: a retried shard overwrites, it never duplicates.
"""
import os
import uuid
import zlib

import apache_beam as beam
import tensorflow as tf


def shard_path(prefix: str, index: int, num_shards: int, suffix: str) -> str:
    return f"{prefix}-{index:05d}-of-{num_shards:05d}{suffix}"


def _shard_of(element, key, num_shards):
    return zlib.crc32(str(key(element)).encode("utf-8")) % num_shards, (True, element)


class _WriteShardFn(beam.DoFn):
    def __init__(self, prefix, suffix, num_shards, write):
        self._prefix, self._suffix, self._num_shards, self._write = prefix, suffix, num_shards, write

    def process(self, element):
        index, values = element
        path = shard_path(self._prefix, index, self._num_shards, self._suffix)
        directory, name = os.path.split(path)
        temporary = os.path.join(directory, f"_incomplete-{uuid.uuid4().hex}-{name}")
        self._write(temporary, [value for present, value in values if present])
        tf.io.gfile.rename(temporary, path, overwrite=True)
        yield name


class WriteShards(beam.PTransform):
    """PCollection -> the names of the ``num_shards`` files written, ``<prefix>-SSSSS-of-NNNNN<suffix>``.

    Args:
      prefix: path prefix of the files (any filesystem TensorFlow writes).
      suffix: file name suffix, e.g. ``.parquet``.
      num_shards: number of files, >= 1.
      key: element -> its id; elements are spread over shards by a stable hash of it.
      write: ``write(path, elements)`` writes one file (sorting the elements if order matters).
    """

    def __init__(self, prefix, suffix, num_shards, key, write):
        super().__init__()
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1. Received: num_shards={num_shards}")
        self._prefix, self._suffix, self._num_shards = prefix, suffix, num_shards
        self._key, self._write = key, write

    def expand(self, pcoll):
        keyed = pcoll | "Key by shard" >> beam.Map(_shard_of, self._key, self._num_shards)
        every = pcoll.pipeline | "Every shard" >> beam.Create(
            [(index, (False, None)) for index in range(self._num_shards)])
        return ((keyed, every) | "With every shard" >> beam.Flatten()
                | "Group by shard" >> beam.GroupByKey()
                | "Write shard" >> beam.ParDo(_WriteShardFn(self._prefix, self._suffix,
                                                            self._num_shards, self._write)))
