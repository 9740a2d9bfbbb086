"""Where ``embed_catalog`` writes, and how its output becomes complete.

The job writes Parquet shards and dead-letter shards straight into ``--output-dir``
(``job_output.WriteShards`` renames each into place) and, as its last step, a summary (count,
failed inputs, duplicate ids; ``job_output.write_summary``). After the pipeline succeeded the
launcher turns the summary into ``manifest.json``, written last: a directory without a manifest
is incomplete. A re-run first deletes the previous run's manifest, then its shards, so an
interrupted re-run never leaves a stale manifest beside new shards. Any filesystem TensorFlow
reads and writes (local, gs://).
"""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from pipelines import job_output
from tfmetric.search import catalog

DEAD_LETTER_SUFFIX = ".jsonl"


def embeddings_prefix(output_dir):
    return os.path.join(output_dir, catalog.EMBEDDINGS_PREFIX)


def dead_letter_prefix(output_dir):
    return os.path.join(output_dir, catalog.DEAD_LETTER_PREFIX)


def write_parquet(path, rows, schema):
    """One Parquet shard of ``rows`` (sorted by id, then source), local or on any filesystem."""
    rows = sorted(rows, key=lambda row: (row[catalog.ID], str(row[catalog.SOURCE])))
    table = pa.Table.from_pylist(rows, schema=schema)
    if "://" not in path:
        pq.write_table(table, path)
        return
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(sink.getvalue().to_pybytes())


def write_dead_letter(path, failures):
    """One JSON Lines shard of failure dicts, one sorted-key line each, in a stable order."""
    lines = sorted(json.dumps(failure, sort_keys=True) for failure in failures)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def _embedding_shards(output_dir):
    return tf.io.gfile.glob(embeddings_prefix(output_dir) + "-*" + catalog.PARQUET_SUFFIX)


def _dead_letter_shards(output_dir):
    return tf.io.gfile.glob(dead_letter_prefix(output_dir) + "-*" + DEAD_LETTER_SUFFIX)


def _outputs(output_dir):
    return _embedding_shards(output_dir) + _dead_letter_shards(output_dir)


def prepare_output_dir(output_dir, overwrite=False):
    """Creates ``output_dir`` and deletes a previous run's manifest, summary and shards (manifest first).

    A finished catalog (one with a manifest) is replaced only with ``overwrite``; an interrupted
    run's shards always are.
    """
    manifest = catalog.CATALOG_MANIFEST.locate(output_dir)
    if not overwrite and manifest:
        raise ValueError(
            f"--output-dir {output_dir} holds a finished catalog ({manifest}); pass --overwrite "
            f"to replace it or choose another --output-dir. Nothing was changed."
        )
    tf.io.gfile.makedirs(output_dir)
    catalog.CATALOG_MANIFEST.remove(output_dir)
    job_output.remove_if_exists(os.path.join(output_dir, job_output.SUMMARY_NAME))
    for path in _outputs(output_dir) + tf.io.gfile.glob(os.path.join(output_dir, "_incomplete-*")):
        tf.io.gfile.remove(path)


def finish(output_dir, model, dim, has_float, **extra):
    """Turns the summary (``embed_transforms.SummaryFn``) into the catalog manifest
    (written last) and returns the manifest."""
    summary = job_output.take_summary(output_dir)
    embeddings = sorted(os.path.basename(p) for p in _embedding_shards(output_dir))
    dead_letter = sorted(os.path.basename(p) for p in _dead_letter_shards(output_dir))
    manifest = catalog.new_manifest(
        model,
        dim,
        has_float,
        summary["count"],
        embeddings,
        failed=summary["failed"],
        duplicate_ids=summary["duplicate_ids"],
        dead_letter=dead_letter,
        **extra,
    )
    catalog.write_manifest(output_dir, manifest)
    return manifest
