"""Catalog search: exact float / Hamming and faiss ANN indexes over embedded catalogs, and queries.

    from tfmetric.search import build_index, load_index, query_index
    index = build_index("embeddings/products-3", "indexes/products-3", kind="flat")
    index.neighbours(embedding, k=10)            # [Neighbour(rank, id, score, source), ...]
    index.search_ids(embeddings, k=10)           # (scores, ids) [m, k]; index.search gives faiss rows
    query_index("indexes/products-3", "saved_models/products/3", "query.jpg", k=10).neighbours

``catalog`` reads and writes the embedding job's output format, ``embedder`` calls an exported
SavedModel (and says which model it is), ``kinds`` holds the faiss index of each ``--kind`` and
its defaults, ``index`` the CatalogIndex, ``build`` and ``query`` the two operations, ``plot`` the
picture of a query's neighbours, ``image_source`` reads an item's image back from its ``source``
(an image file or ``<tfrecord>#offset=<N>``), ``modes`` the float / binary / rescore search of any
index and ``calibrate`` the match cut-offs stored in an index manifest. Names are imported lazily so
that ``python -m tfmetric.search --help`` answers before TensorFlow and faiss load.
"""

from tfmetric.lazy_exports import lazy_exports

_EXPORTS = {
    "build_index": "build",
    "CatalogIndex": "index",
    "Neighbour": "index",
    "load_index": "index",
    "query_index": "query",
    "QueryResult": "query",
    "read_query_image": "query",
    "KINDS": "kinds",
    "default_params": "kinds",
    "Catalog": "catalog",
    "read_catalog": "catalog",
    "write_catalog": "catalog",
    "parquet_schema": "catalog",
    "SavedModelEmbedder": "embedder",
    "EmbedResult": "embedder",
    "model_identity": "embedder",
    "plot_neighbours": "plot",
    "read_image_bytes": "image_source",
    "ModeSearcher": "modes",
    "MODES": "modes",
    "match_thresholds": "calibrate",
    "calibrate_index": "calibrate",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
