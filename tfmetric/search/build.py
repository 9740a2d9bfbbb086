"""build_index: the output of ``pipelines.embed_catalog`` -> a saved CatalogIndex of a chosen kind.

from tfmetric.search import build_index
index = build_index("embeddings/products-3", "indexes/products-3-hnsw", kind="hnsw")
"""

import datetime
import logging
import os
import time

import faiss

import tfmetric
from tfmetric.search import catalog as catalog_lib
from tfmetric.search import index as index_lib
from tfmetric.search import kinds

_LOG = logging.getLogger(__name__)


def build_index(
    embeddings_dir,
    index_dir=None,
    kind=kinds.FLAT,
    *,
    nlist=None,
    nprobe=None,
    train_size=None,
    m=None,
    ef_construction=None,
    ef_search=None,
    seed=0,
):
    """Indexes every row of an embedding output; saves it to ``index_dir`` when given.

    Args:
      embeddings_dir: ``--output-dir`` of ``python -m pipelines.embed_catalog`` (or ``write_catalog``).
      index_dir: where to save the index (a local directory), or None to keep it in memory only.
      kind: ``flat``, ``binary``, ``ivf``, ``hnsw``, ``binary-ivf`` or ``binary-hnsw``
        (``tfmetric.search.kinds``). Float kinds need an output of ``--signature serving_default``.
      nlist, nprobe, train_size: IVF parameters; m, ef_construction, ef_search: HNSW parameters.
        None takes the defaults of ``kinds.default_params`` for the catalog's size.
      seed: seeds the IVF training sample.

    Returns:
      The CatalogIndex.
    """
    kinds.check_kind(kind)
    catalog = catalog_lib.read_catalog(embeddings_dir)
    manifest = catalog.manifest
    count = len(catalog.ids)
    if count == 0:
        raise ValueError(
            f"No embeddings (count 0, {manifest.get('num_failed', 0)} failed inputs, see its "
            f"manifest.json): nothing to index. Received: embeddings_dir={embeddings_dir}"
        )
    if not kinds.is_binary(kind) and catalog.embeddings is None:
        raise ValueError(
            f"The embeddings are sign bits only (embedded with signature "
            f"{manifest.get('signature', 'serving_binary')}); use a binary kind "
            f"({', '.join(k for k in kinds.KINDS if kinds.is_binary(k))}) or re-embed with "
            f"signature serving_default. Received: embeddings_dir={embeddings_dir}, kind={kind!r}"
        )
    if manifest.get("duplicate_ids"):
        _LOG.warning(
            "%s: %d ids occur more than once (e.g. %s); each occurrence is indexed.",
            embeddings_dir,
            len(manifest["duplicate_ids"]),
            manifest["duplicate_ids"][0],
        )
    params = kinds.resolve_params(
        kind,
        count,
        nlist=nlist,
        nprobe=nprobe,
        train_size=train_size,
        m=m,
        ef_construction=ef_construction,
        ef_search=ef_search,
    )
    data = catalog.bits if kinds.is_binary(kind) else _normalized(catalog.embeddings)
    arrays = _mode_arrays(kind, catalog)
    start = time.perf_counter()
    index = kinds.create(kind, data, params, seed=seed)
    _LOG.info("Built a %s index of %d items in %.1f s", kind, count, time.perf_counter() - start)
    index_manifest = {
        "format_version": index_lib.FORMAT_VERSION,
        "kind": kind,
        "metric": kinds.metric(kind),
        "dim": int(manifest["dimension"]),
        "code_bytes": int(manifest["code_bytes"]),
        "count": count,
        "params": params,
        "model": manifest.get("model"),
        "embeddings": {
            "path": os.path.abspath(embeddings_dir) if "://" not in embeddings_dir else embeddings_dir,
            **{k: v for k, v in manifest.items() if k not in ("failed", "model")},
        },
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "created_by": f"tfmetric {tfmetric.__version__}, faiss {faiss.__version__}",
        "files": {"index": index_lib.INDEX_FILE, "ids": index_lib.IDS_FILE, **{name: f"{name}.npy" for name in arrays}},
    }
    built = index_lib.CatalogIndex(index, kind, catalog.ids, catalog.sources, index_manifest, arrays)
    if index_dir:
        built.save(index_dir)
    return built


def _mode_arrays(kind, catalog):
    """What the index keeps beside its faiss index so it answers every search mode
    (``tfmetric.search.modes``): the sign bits for float kinds, the float embeddings where the faiss
    index cannot hand them back (``holds_vectors``: flat does) and the catalog has them."""
    arrays = {}
    if not kinds.is_binary(kind):
        arrays[index_lib.BITS] = catalog.bits
    if not kinds.get_kind(kind).holds_vectors and catalog.embeddings is not None:
        arrays[index_lib.EMBEDDINGS] = catalog.embeddings  # normalised in place above for float kinds
        if kinds.is_binary(kind):
            _normalized(arrays[index_lib.EMBEDDINGS])
    return arrays


def _normalized(embeddings):
    """L2-normalised float32 rows, in place (the model's are already; this guards other producers)."""
    faiss.normalize_L2(embeddings)
    return embeddings
