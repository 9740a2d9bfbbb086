"""Output that every Beam runner writes the same way, for both jobs: shards, then a summary.

Beam's file sinks (``WriteToParquet``, ``WriteToText``) emit their results from ``finish_bundle``
and coordinate through side inputs; Beam's DaskRunner drops ``finish_bundle`` outputs, so there
they finalise nothing. ``WriteShards`` needs neither: elements are keyed by a stable hash of their
id into ``num_shards`` shards, every shard key is also created once (so empty shards are written
too and the set of files is complete), and one worker writes each shard to a temporary name in
the same directory and renames it into place: a retried shard overwrites, it never duplicates.

A job's last step writes its summary (what the launcher needs for the manifest, from one combine
over everything, so the step depends on every shard); the launcher reads it once the pipeline
succeeded, deletes it and writes the manifest, last (build_tfrecords: tfrecord_output;
embed_catalog: embed_output).
"""

import contextlib
import json
import os
import uuid
import zlib

import apache_beam as beam
import tensorflow as tf

SUMMARY_NAME = "_job_summary.json"


def shard_path(prefix: str, index: int, num_shards: int, suffix: str) -> str:
    return f"{prefix}-{index:05d}-of-{num_shards:05d}{suffix}"


def _shard_of(element, key, num_shards):
    return zlib.crc32(str(key(element)).encode("utf-8")) % num_shards, (True, element)


@contextlib.contextmanager
def written_atomically(path: str):
    """Yields a temporary path beside ``path`` (any filesystem TensorFlow writes) and renames it onto
    ``path`` once the block succeeded; deletes it if the block fails. A retried write overwrites,
    and an interrupted one leaves no file under the final name."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f"_incomplete-{uuid.uuid4().hex}-{name}")
    try:
        yield temporary
    except BaseException:
        remove_if_exists(temporary)
        raise
    tf.io.gfile.rename(temporary, path, overwrite=True)


class _WriteShardFn(beam.DoFn):
    def __init__(self, prefix, suffix, num_shards, write):
        self._prefix, self._suffix, self._num_shards, self._write = prefix, suffix, num_shards, write

    def process(self, element):
        index, values = element
        path = shard_path(self._prefix, index, self._num_shards, self._suffix)
        with written_atomically(path) as temporary:
            self._write(temporary, [value for present, value in values if present])
        yield os.path.basename(path)


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
            [(index, (False, None)) for index in range(self._num_shards)]
        )
        return (
            (keyed, every)
            | "With every shard" >> beam.Flatten()
            | "Group by shard" >> beam.GroupByKey()
            | "Write shard" >> beam.ParDo(_WriteShardFn(self._prefix, self._suffix, self._num_shards, self._write))
        )


def write_summary(directory: str, summary: dict) -> None:
    """The pipeline's last step: the summary dict, as JSON, into ``directory``."""
    with tf.io.gfile.GFile(os.path.join(directory, SUMMARY_NAME), "w") as f:
        json.dump(summary, f)


def take_summary(directory: str) -> dict:
    """The summary the pipeline wrote into ``directory``, deleting its file."""
    path = os.path.join(directory, SUMMARY_NAME)
    with tf.io.gfile.GFile(path, "r") as f:
        summary = json.load(f)
    tf.io.gfile.remove(path)
    return summary


def remove_if_exists(path: str) -> None:
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)
