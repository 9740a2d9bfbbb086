"""CatalogIndex: a faiss index over an embedded catalog, with its ids, image sources and manifest.

    <index-dir>/
      index.faiss     the faiss index (faiss.write_index, or write_index_binary for binary kinds)
      ids.parquet     row -> id, source (faiss labels are row numbers)
      bits.npy        float kinds: the catalog's packed sign bits, uint8 [n, ceil(D/8)]
      embeddings.npy  kinds other than flat, when the catalog has float embeddings: float32 [n, D],
                      L2-normalised (a flat index hands its own vectors back without a copy)
      index.json      the index manifest, written last: kind, metric, dim, count, parameters, the
                      producing model's identity and the catalog manifest (without its failure
                      list); earlier releases named it manifest.json, which is still read

The two extra arrays let every index answer the three search modes of ``tfmetric.search.modes``
(float, binary and binary-then-float ``rescore``) whatever its kind; they are memory-mapped on load.
Index directories are local (faiss reads and writes local files).
"""

import os
from typing import NamedTuple

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tfmetric.json_file import Artifact
from tfmetric.search import catalog, kinds

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.parquet"
INDEX_MANIFEST = Artifact(
    "index manifest",
    "index.json",
    "format_version",
    FORMAT_VERSION,
    old_names=("manifest.json",),
    hint="Build the index again with this tfmetric.",
)
MANIFEST_NAME = INDEX_MANIFEST.file_name
BITS, EMBEDDINGS = "bits", "embeddings"  # optional arrays, saved as <name>.npy and listed in manifest["files"]
ARRAYS = (BITS, EMBEDDINGS)


class Neighbour(NamedTuple):
    rank: int
    id: str
    score: float  # cosine similarity (higher is closer) or Hamming distance (lower is closer)
    source: str | None  # the image's path or URI, or <tfrecord>#offset=<N> (image_source); None if unknown


class CatalogIndex:
    """Nearest catalog items of query embeddings (float kinds) or packed sign bits (binary kinds).

    Args:
      index: a filled faiss index whose row ``i`` is catalog item ``ids[i]``.
      kind: one of ``tfmetric.search.kinds.KINDS``.
      ids, sources: object arrays [n] (sources may hold None).
      manifest: the index manifest: ``dim``, ``params`` and the model identity under ``model``.
      arrays: optional ``{"bits": uint8 [n, B], "embeddings": float32 [n, D]}`` kept beside the
        faiss index (see the module docstring).
    """

    def __init__(self, index, kind, ids, sources, manifest, arrays=None):
        self.index, self.kind = index, kinds.check_kind(kind)
        self.ids, self.sources = np.asarray(ids, dtype=object), np.asarray(sources, dtype=object)
        self.manifest = manifest
        self.arrays = {name: value for name, value in (arrays or {}).items() if value is not None}
        if index.ntotal != len(self.ids):
            raise ValueError(f"The faiss index holds {index.ntotal} items but there are {len(self.ids)} ids.")
        for name, value in self.arrays.items():
            if name not in ARRAYS or len(value) != len(self.ids):
                raise ValueError(
                    f"arrays must map {' or '.join(ARRAYS)} to one row per id ({len(self.ids)}). "
                    f"Received: {name}={getattr(value, 'shape', None)}"
                )

    binary = property(lambda self: kinds.is_binary(self.kind))
    dim = property(lambda self: int(self.manifest["dim"]))
    count = property(lambda self: len(self.ids))
    model = property(lambda self: self.manifest.get("model") or {})

    def set_search_params(self, nprobe=None, ef_search=None):
        """Overrides nprobe (IVF kinds) or ef_search (HNSW kinds) for the following searches."""
        params = kinds.with_search_params(self.kind, self.manifest["params"], nprobe, ef_search)
        kinds.configure(self.index, self.kind, params)
        self.manifest["params"] = params

    def _prepare(self, queries):
        if self.binary:
            queries = np.atleast_2d(np.asarray(queries))
            if queries.dtype != np.uint8 or queries.shape[1] != catalog.code_bytes(self.dim):
                raise ValueError(
                    f"A binary index takes uint8 codes of {catalog.code_bytes(self.dim)} bytes. "
                    f"Received: dtype={queries.dtype}, shape={queries.shape}"
                )
            return np.ascontiguousarray(queries)
        queries = np.array(np.atleast_2d(queries), np.float32, order="C")
        if queries.shape[1] != self.dim:
            raise ValueError(f"The index holds {self.dim}-dimensional embeddings. Received: shape={queries.shape}")
        faiss.normalize_L2(queries)
        return queries

    def search(self, queries, k=10):
        """(scores, rows) [m, min(k, count)] for a batch of queries: faiss row numbers, -1 where none
        was found; ``self.ids[row]`` is a row's id (``search_ids`` returns ids directly)."""
        if self.count == 0:
            raise ValueError("The index is empty.")
        if k < 1:
            raise ValueError(f"k must be a positive integer. Received: k={k}")
        return kinds.search(self.index, self.kind, self._prepare(queries), min(k, self.count))

    def search_ids(self, queries, k=10):
        """(scores, ids) [m, min(k, count)] for a batch of queries: catalog ids (object array), None
        where none was found; scores as ``search``."""
        scores, rows = self.search(queries, k)
        ids = np.where(rows >= 0, self.ids[np.maximum(rows, 0)], None)
        return scores, ids

    def neighbours(self, query, k=10):
        """The ``k`` nearest catalog items of one query, best first."""
        scores, rows = self.search(query, k)
        return [
            Neighbour(rank + 1, self.ids[row], float(score) if not self.binary else int(score), self.sources[row])
            for rank, (score, row) in enumerate(zip(scores[0], rows[0]))
            if row >= 0
        ]

    def save(self, directory):
        """Writes the index directory; the manifest last, so a partial directory reads as incomplete."""
        os.makedirs(directory, exist_ok=True)
        INDEX_MANIFEST.remove(directory)  # until the new one is written, the directory reads as incomplete
        kinds.write(self.index, self.kind, os.path.join(directory, INDEX_FILE))
        table = pa.table(
            {"id": pa.array(list(self.ids), pa.string()), "source": pa.array(list(self.sources), pa.string())}
        )
        pq.write_table(table, os.path.join(directory, IDS_FILE))
        for name, value in self.arrays.items():
            np.save(os.path.join(directory, self.manifest["files"][name]), np.ascontiguousarray(value))
        write_index_manifest(directory, self.manifest)  # last: marks the index complete
        return directory

    @classmethod
    def load(cls, directory, nprobe=None, ef_search=None):
        """The index saved in ``directory``, with optional search-time parameter overrides."""
        manifest = read_index_manifest(directory)
        kind = manifest["kind"]
        if int(manifest["count"]) == 0:
            raise ValueError(f"The index is empty (built from 0 embeddings). Received: index_dir={directory}")
        index = kinds.read(kind, os.path.join(directory, INDEX_FILE))
        table = pq.read_table(os.path.join(directory, IDS_FILE))
        arrays = {
            name: np.load(os.path.join(directory, manifest["files"][name]), mmap_mode="r")
            for name in ARRAYS
            if name in manifest.get("files", {})
        }
        loaded = cls(index, kind, table.column("id").to_pylist(), table.column("source").to_pylist(), manifest, arrays)
        kinds.configure(index, kind, manifest["params"])
        if nprobe is not None or ef_search is not None:
            loaded.set_search_params(nprobe, ef_search)
        return loaded


def write_index_manifest(directory, manifest):
    """Writes the index manifest ``index.json`` atomically."""
    return INDEX_MANIFEST.write(directory, manifest)


def read_index_manifest(directory):
    """The manifest of a complete index directory; a clear error for anything else."""
    if not os.path.isdir(directory):
        raise NotADirectoryError(
            f"index_dir is not a directory; build one there with build_index (python -m "
            f"tfmetric.search build). Received: index_dir={directory}"
        )
    if not INDEX_MANIFEST.exists(directory):
        raise FileNotFoundError(
            f"index_dir has no {MANIFEST_NAME}; not an index directory, or its build did "
            f"not finish. Received: index_dir={directory}"
        )
    manifest = INDEX_MANIFEST.read(directory)
    if manifest.get("kind") not in kinds.KINDS:
        raise ValueError(
            f"Not an index manifest of this tfmetric (kind {manifest.get('kind')!r}; known: "
            f"{', '.join(kinds.KINDS)}). Received: index_dir={directory}"
        )
    return manifest


def load_index(directory, nprobe=None, ef_search=None):
    return CatalogIndex.load(directory, nprobe=nprobe, ef_search=ef_search)
