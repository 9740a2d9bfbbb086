"""Recall@K, R-precision and MAP@R of embeddings by exact float (cosine) or binary (Hamming) search.

Recall@K is the metric Zhai & Wu (BMVC 2019) report; R-precision and MAP@R follow Musgrave et al.,
"A Metric Learning Reality Check" (ECCV 2020). Neighbours are ranked by the rule in
``tfmetric.metrics.knn`` (ties by ascending gallery index).
"""

import numbers

import numpy as np

from tfmetric.metrics import knn, ranks

# Float mode scores a block of queries against the whole gallery at once; by default blocks are
# sized so that score matrix stays near this many bytes (256 MiB).
_SCORE_BLOCK_BYTES = 1 << 28


def retrieval_metrics(
    query, query_labels, gallery=None, gallery_labels=None, ks=(1, 2, 4, 8), binary=False, block_size=None
):
    """Retrieval metrics of ``query`` against ``gallery`` (or against itself).

    For a query with label ``y``, ``R`` is the number of gallery items labelled ``y`` (in
    self-retrieval not counting the query itself) and ``rel(i)`` says whether the i-th ranked
    neighbour is labelled ``y``:

    - ``recall@K``: fraction of queries with at least one relevant item among the top ``K``.
    - ``r_precision``: mean of (#relevant in the top ``R``) / ``R``.
    - ``map@r``: mean of ``sum_{i<=R} P(i) * rel(i) / R`` with ``P(i)`` the precision at ``i``.

    Queries with ``R = 0`` (a class with a single image in self-retrieval, or no gallery item of
    the query's class) count as misses in every ``recall@K``, as in the paper's official evaluation
    code, and are left out of the ``r_precision`` and ``map@r`` averages, where they are undefined.
    If no query has ``R > 0`` those two are NaN.

    Args:
      query: ``[n, d]`` embeddings (numpy array or eager tensor). Float mode L2-normalises them
        (all-zero rows stay zero) and ranks by inner product, i.e. cosine similarity.
      query_labels: ``[n]`` labels of any comparable dtype (ints, strings).
      gallery: ``[m, d]`` embeddings to search, or None for self-retrieval: each query searches all
        queries except itself, excluded by index, so an exact duplicate still counts.
      gallery_labels: ``[m]`` labels; required with ``gallery``.
      ks: the K of ``recall@K``; each at most the number of items a query can retrieve.
      binary: rank by Hamming distance between sign bits (``pack_bits``) instead of cosine.
      block_size: queries searched at once; None picks it from the gallery size. Float mode
        scores a block against the whole gallery with one matrix product and counts positions
        (``tfmetric.metrics.ranks``): about ``block_size * num_gallery * 5`` bytes on top of the
        embeddings, 256 MiB by default. Binary mode keeps a top-k list per query: about
        ``block_size * max(max(ks), R of the block's queries) * 24`` bytes (1024 queries by
        default; queries are processed in order of ``R`` so one large class only widens its own
        blocks). The results do not depend on ``block_size``.

    Returns:
      dict of python floats: ``recall@K`` for each K in ``ks``, ``map@r``, ``r_precision``.

    Raises:
      ValueError: naming the offending argument (shapes, lengths, ``ks``, non-finite values).
    """
    query, query_labels, gallery, gallery_labels, ks = _validated(
        query, query_labels, gallery, gallery_labels, ks, binary, block_size
    )
    self_retrieval = gallery is None

    if binary:
        query_codes = knn.pack_bits(query)
    else:
        query_codes = knn.l2_normalize(query)
    if self_retrieval:
        gallery_codes, gallery_labels = query_codes, query_labels
    else:
        gallery_codes = knn.pack_bits(gallery) if binary else knn.l2_normalize(gallery)

    # Integer class ids shared by both sides, so labels of any dtype compare with one vector op.
    _, class_ids = np.unique(np.concatenate([query_labels, gallery_labels]), return_inverse=True)
    query_class, gallery_class = class_ids[: len(query_labels)], class_ids[len(query_labels) :]
    num_classes = class_ids.max() + 1
    r = np.bincount(gallery_class, minlength=num_classes)[query_class]
    if self_retrieval:
        r = r - 1
    if block_size is None:
        block_size = 1024 if binary else max(1, _SCORE_BLOCK_BYTES // (4 * len(gallery_codes)))
    members = None if binary else ranks.ClassMembers(gallery_class, num_classes)

    # Blocks of queries with similar R: a block searches only as deep as its own largest R.
    by_r = np.argsort(r, kind="stable")
    hits = np.zeros(len(ks), np.int64)
    # Per-query values, averaged once at the end: the result does not depend on block_size.
    r_precision = np.full(len(r), np.nan)
    average_precision = np.full(len(r), np.nan)
    for start in range(0, len(by_r), block_size):
        rows = by_r[start : start + block_size]
        self_index = rows if self_retrieval else None
        if binary:
            k = max(max(ks), int(r[rows].max()))
            ids = knn.search(query_codes[rows], gallery_codes, k, binary=True, self_index=self_index)
            relevant = gallery_class[ids] == query_class[rows, None]
            hits += _hits(relevant, ks)
            r_precision[rows], average_precision[rows] = _r_precision_and_ap(relevant, r[rows])
        else:
            first_hit, relevant = ranks.rank_relevant(
                query_codes[rows], gallery_codes, query_class[rows], gallery_class, members, r[rows], self_index
            )
            hits += np.array([np.count_nonzero(first_hit < k) for k in ks], np.int64)
            r_precision[rows], average_precision[rows] = _r_precision_and_ap(relevant, r[rows])

    result = {f"recall@{k}": float(h) / len(r) for k, h in zip(ks, hits)}
    with_relevant = r > 0
    nan = float("nan")
    result["map@r"] = average_precision[with_relevant].mean() if with_relevant.any() else nan
    result["r_precision"] = r_precision[with_relevant].mean() if with_relevant.any() else nan
    return {key: float(value) for key, value in result.items()}


def _hits(relevant, ks):
    """Number of rows of ``relevant`` [b, k] with a True among the first K columns, for each K."""
    first_hit = np.where(relevant.any(axis=1), relevant.argmax(axis=1), relevant.shape[1])
    return np.array([np.count_nonzero(first_hit < k) for k in ks], np.int64)


def _r_precision_and_ap(relevant, r):
    """R-precision and AP@R per row of ``relevant`` [b, k >= R]; NaN where R = 0."""
    r_precision = np.full(len(r), np.nan)
    average_precision = np.full(len(r), np.nan)
    valid = r > 0
    if valid.any():
        r = r[valid]
        # Only the first max(R) columns matter here; usually far fewer than max(ks).
        depth = int(r.max())
        in_top_r = relevant[valid, :depth] & (np.arange(depth) < r[:, None])
        relevant_so_far = np.cumsum(in_top_r, axis=1, dtype=np.int32)
        precision_at_i = relevant_so_far / np.arange(1, depth + 1)
        r_precision[valid] = relevant_so_far[:, -1] / r
        average_precision[valid] = np.where(in_top_r, precision_at_i, 0.0).sum(axis=1) / r
    return r_precision, average_precision


def _validated(query, query_labels, gallery, gallery_labels, ks, binary, block_size):
    query = _embeddings("query", query, binary)
    query_labels = _labels("query_labels", query_labels, len(query), "query")
    if gallery is None:
        if gallery_labels is not None:
            raise ValueError(
                "gallery_labels was given without gallery. Pass both for "
                "query/gallery retrieval, or neither for self-retrieval."
            )
        available = len(query) - 1
    else:
        if gallery_labels is None:
            raise ValueError("gallery_labels is required when gallery is given.")
        gallery = _embeddings("gallery", gallery, binary)
        if gallery.shape[1] != query.shape[1]:
            raise ValueError(f"gallery has dimension {gallery.shape[1]} but query has dimension {query.shape[1]}.")
        gallery_labels = _labels("gallery_labels", gallery_labels, len(gallery), "gallery")
        available = len(gallery)

    ks = tuple(ks) if not isinstance(ks, numbers.Integral) else (ks,)
    if not ks or not all(isinstance(k, numbers.Integral) and k >= 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive integers. Received: ks={ks}")
    ks = tuple(dict.fromkeys(int(k) for k in ks))
    if max(ks) > available:
        where = "the other queries (self-retrieval excludes the query itself)" if gallery is None else "the gallery"
        raise ValueError(
            f"ks asks for {max(ks)} neighbours but a query can retrieve only "
            f"{available}: the items of {where}. Received: ks={ks}"
        )
    if block_size is not None and (not isinstance(block_size, numbers.Integral) or block_size < 1):
        raise ValueError(f"block_size must be a positive integer. Received: block_size={block_size}")
    return query, query_labels, gallery, gallery_labels, ks


def _embeddings(name, x, binary):
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array [num_items, dim]. Received: {name} with shape {x.shape}"
        )
    if binary and x.dtype == np.uint8:
        raise ValueError(
            f"binary=True takes real-valued {name} embeddings and packs their sign "
            f"bits itself; uint8 looks like codes that are already packed."
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"{name} must be numeric. Received: {name} with dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return x


def _labels(name, labels, expected, owner):
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != expected:
        raise ValueError(
            f"{name} must be 1-D with one label per row of {owner} ({expected}). "
            f"Received: {name} with shape {labels.shape}"
        )
    return labels
