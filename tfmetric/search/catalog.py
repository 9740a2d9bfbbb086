"""The embedded-catalog format: what ``python -m pipelines.embed_catalog`` writes and indexes read.

    <output-dir>/
      embeddings-SSSSS-of-NNNNN.parquet   one row per embedded image (schema below)
      dead_letter-SSSSS-of-NNNNN.jsonl    one JSON object per failed input: id, source, reason, detail
      catalog.json                        the catalog manifest, written last: model identity,
                                          dimension, count, failures (earlier releases: manifest.json)

Parquet columns:

    id         string                 the input's stable id (relative path, TFRecord image/id, CSV id)
    embedding  list<float32>          L2-normalised, D values (absent with --signature serving_binary)
    bits       fixed_size_binary[B]   sign bits, B = ceil(D / 8), packed MSB-first (numpy.packbits)
    source     string                 where the image was read: path or URI, or <tfrecord file>#offset=<N>
                                      for TFRecord input (tfmetric.search.image_source reads either)

A directory without ``catalog.json`` is incomplete (an interrupted or running job); catalogs of
earlier releases named it ``manifest.json``, which is still read.
``write_catalog`` writes the same format from numpy arrays without Beam.
"""

import datetime
import os
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

import tfmetric
from tfmetric.export.binarize import packed_width
from tfmetric.json_file import Artifact
from tfmetric.metrics.knn import pack_bits

FORMAT_VERSION = 1
CATALOG_MANIFEST = Artifact(
    "embedding catalog manifest",
    "catalog.json",
    "format_version",
    FORMAT_VERSION,
    old_names=("manifest.json",),
    hint="Embed the catalog again with this tfmetric.",
)
MANIFEST_NAME = CATALOG_MANIFEST.file_name
EMBEDDINGS_PREFIX = "embeddings"
DEAD_LETTER_PREFIX = "dead_letter"
PARQUET_SUFFIX = ".parquet"
ID, EMBEDDING, BITS, SOURCE = "id", "embedding", "bits", "source"


code_bytes = packed_width  # bytes of a row's packed sign bits


def parquet_schema(dim, has_float=True):
    """The pyarrow schema of the embedding shards of a ``dim``-dimensional model."""
    fields = [pa.field(ID, pa.string(), nullable=False)]
    if has_float:
        fields.append(pa.field(EMBEDDING, pa.list_(pa.float32())))
    fields += [pa.field(BITS, pa.binary(code_bytes(dim))), pa.field(SOURCE, pa.string())]
    return pa.schema(fields, metadata={"tfmetric.embedding_dim": str(int(dim))})


class Catalog(NamedTuple):
    """An embedded catalog in memory; rows in shard order."""

    ids: np.ndarray  # object [n] of str
    sources: np.ndarray  # object [n] of str or None
    embeddings: np.ndarray | None  # float32 [n, D], None when the job ran serving_binary
    bits: np.ndarray  # uint8 [n, ceil(D/8)]
    manifest: dict


def write_manifest(directory, manifest):
    """Writes the catalog manifest ``catalog.json`` atomically (last)."""
    return CATALOG_MANIFEST.write(directory, manifest)


def read_manifest(directory):
    """The manifest of a complete embedding output; a clear error for anything else."""
    if not tf.io.gfile.isdir(directory):
        raise NotADirectoryError(
            f"embeddings_dir is not a directory; pass the output directory of "
            f"pipelines.embed_catalog. Received: embeddings_dir={directory}"
        )
    if not CATALOG_MANIFEST.exists(directory):
        raise FileNotFoundError(
            f"embeddings_dir has no {MANIFEST_NAME}; the embedding job did not finish "
            f"there (it writes the manifest last). Received: embeddings_dir={directory}"
        )
    return CATALOG_MANIFEST.read(directory)


def shard_paths(directory, manifest):
    return [os.path.join(directory, name) for name in manifest["files"]]


def _column_array(table, name):
    return table.column(name).combine_chunks()


def _read_table(path):
    if "://" not in path:
        return pq.read_table(path)
    with tf.io.gfile.GFile(path, "rb") as f:  # gs:// and other filesystems TensorFlow reads
        return pq.read_table(pa.BufferReader(f.read()))


def _write_table(table, path):
    if "://" not in path:
        return pq.write_table(table, path)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(sink.getvalue().to_pybytes())


def read_catalog(directory):
    """All rows of an embedding output, checked against its manifest (count, dimension)."""
    manifest = read_manifest(directory)
    dim, count, has_float = int(manifest["dimension"]), int(manifest["count"]), manifest["has_float"]
    width = code_bytes(dim)
    ids, sources = [], []
    embeddings = np.empty((count, dim), np.float32) if has_float else None
    bits = np.empty((count, width), np.uint8)
    row = 0
    for path in shard_paths(directory, manifest):
        table = _read_table(path)
        n = table.num_rows
        if row + n > count:
            raise ValueError(f"{directory}: the shards hold more rows than the manifest's count {count}.")
        ids += table.column(ID).to_pylist()
        sources += table.column(SOURCE).to_pylist()
        codes = _column_array(table, BITS)
        bits[row : row + n] = np.frombuffer(codes.buffers()[1], np.uint8)[
            codes.offset * width : (codes.offset + n) * width
        ].reshape(n, width)
        if has_float:
            lists = _column_array(table, EMBEDDING)
            values = lists.flatten().to_numpy(zero_copy_only=False)
            if values.size != n * dim:
                raise ValueError(f"{path}: embeddings are not all {dim}-dimensional.")
            embeddings[row : row + n] = values.reshape(n, dim)
        row += n
    if row != count:
        raise ValueError(f"{directory}: the shards hold {row} rows, the manifest says {count}.")
    return Catalog(np.array(ids, dtype=object), np.array(sources, dtype=object), embeddings, bits, manifest)


def write_catalog(directory, ids, embeddings=None, bits=None, sources=None, model=None, **extra):
    """Writes numpy embeddings in the format above, in one shard (for tests and non-Beam callers).

    Args:
      directory: output directory (created).
      ids: unique string ids [n].
      embeddings: float32 [n, D] or None; bits: uint8 [n, ceil(D/8)], default packed from embeddings.
      sources: paths or URIs of the images [n], or None.
      model: the producing model's identity (``tfmetric.search.embedder.model_identity``).
      **extra: more manifest fields (e.g. ``dimension`` when only bits are given).
    """
    ids = [str(i) for i in ids]
    if embeddings is not None:
        embeddings = np.asarray(embeddings, np.float32)
        dim = embeddings.shape[1]
        bits = pack_bits(embeddings) if bits is None else bits
    else:
        dim = int(extra.pop("dimension", None) or (model or {}).get("embedding_dim") or 0)
        if not dim:
            raise ValueError("write_catalog needs embeddings, or the dimension of the bits.")
    bits = np.asarray(bits, np.uint8).reshape(len(ids), code_bytes(dim))
    sources = list(sources) if sources is not None else [None] * len(ids)
    schema = parquet_schema(dim, embeddings is not None)
    columns = {ID: ids, BITS: [row.tobytes() for row in bits], SOURCE: sources}
    if embeddings is not None:
        columns[EMBEDDING] = list(embeddings)
    tf.io.gfile.makedirs(directory)
    name = f"{EMBEDDINGS_PREFIX}-00000-of-00001{PARQUET_SUFFIX}"
    table = pa.Table.from_pydict(columns, schema=schema)
    _write_table(table, os.path.join(directory, name))
    manifest = new_manifest(model, dim, embeddings is not None, len(ids), [name], **extra)
    write_manifest(directory, manifest)
    return manifest


def new_manifest(model, dim, has_float, count, files, *, failed=(), duplicate_ids=(), **extra):
    """The manifest of an embedding output (see the module docstring for the files it names)."""
    failed = sorted(failed, key=lambda f: (str(f.get("id")), str(f.get("source"))))
    by_reason = {}
    for entry in failed:
        by_reason[entry["reason"]] = by_reason.get(entry["reason"], 0) + 1
    return {
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "created_by": f"tfmetric {tfmetric.__version__}",
        "model": model,
        "dimension": int(dim),
        "code_bytes": code_bytes(dim),
        "has_float": bool(has_float),
        "count": int(count),
        "files": sorted(files),
        "num_failed": len(failed),
        "failed_by_reason": dict(sorted(by_reason.items())),
        "failed": failed,
        "duplicate_ids": sorted(duplicate_ids),
        "columns": {field.name: str(field.type) for field in parquet_schema(dim, has_float)},
        **extra,
    }
