"""Exact k-nearest-neighbour search for evaluation: cosine (float) or Hamming (sign bits), by faiss.

Ranking rule shared by every metric in this package: gallery items are ordered by decreasing inner
product of L2-normalised float32 embeddings (float mode) or by increasing Hamming distance of the
packed sign bits (binary mode); items at exactly equal score are ordered by ascending gallery index.

faiss computes the scores exactly (brute force) but only its Hamming heap honours that tie rule
(it compares (distance, id) pairs); its float search may keep any members of a group of equal
scores that crosses the k-th position and returns equal scores in arbitrary order. Float results
are therefore re-ordered here, and rows whose tie group crosses the cut are searched again deeper.
"""

import faiss
import numpy as np


def pack_bits(embeddings):
    """Sign bits packed MSB-first: ``numpy.packbits(embeddings > 0, axis=-1)``.

    This is the bit layout of the SavedModel's ``serving_binary`` signature: bit ``j`` of the
    embedding is bit ``7 - j % 8`` of byte ``j // 8``; a dimension not divisible by 8 is padded
    with zero bits, so the padding never contributes to a Hamming distance.

    Args:
      embeddings: real-valued array-like ``[..., d]`` (numpy array or eager tensor).

    Returns:
      uint8 array ``[..., ceil(d / 8)]``.
    """
    return np.packbits(np.asarray(embeddings) > 0, axis=-1)


def l2_normalize(embeddings):
    """Row-wise L2-normalised float32 copy; all-zero rows stay zero (score 0 against everything)."""
    x = np.array(embeddings, dtype=np.float32, order="C", copy=True)
    # In place and multithreaded: no second full-size temporary at 60k x 2048.
    faiss.normalize_L2(x)
    return x


def search(query, gallery, k, binary=False, self_index=None):
    """The ``k`` best gallery indices for each query row, ranked by the rule above (ties by index).

    Memory is ``O(len(query) * k)`` (faiss tiles the score computation), so callers bound it by
    searching in blocks of query rows.

    Args:
      query: float32 ``[m, d]`` L2-normalised rows (float mode) or uint8 ``[m, b]`` packed bits.
      gallery: the same kind of array, ``[n, d]`` or ``[n, b]``.
      k: number of neighbours to return.
      binary: rank by Hamming distance of packed bits instead of inner product.
      self_index: optional int ``[m]``: each query's own row in ``gallery`` (self-retrieval). That
        row is excluded by index, never by score, so exact duplicates of a query still count.

    Returns:
      int64 ``[m, k]`` gallery indices, best first.
    """
    n = len(gallery)
    k_search = k if self_index is None else k + 1
    if k < 1 or k_search > n:
        raise ValueError(
            f"Cannot return k={k} neighbours from a gallery of {n} items"
            f"{' excluding the query itself' if self_index is not None else ''}."
        )
    if binary:
        _, ids = faiss.knn_hamming(np.ascontiguousarray(query), np.ascontiguousarray(gallery), k_search)
    else:
        ids = _float_topk(query, gallery, k_search)
    if self_index is None:
        return ids
    keep = ids != np.asarray(self_index)[:, None]
    # A query can fall outside its own top k+1 (an all-zero row ties with everything); then the
    # (k+1)-th neighbour is the one to drop, so every row keeps exactly k.
    keep[keep.all(axis=1), -1] = False
    return ids[keep].reshape(len(ids), k)


def _float_topk(query, gallery, k):
    n = len(gallery)
    # One extra column shows whether a group of equal scores crosses the cut.
    width = min(n, k + 1)
    scores, ids = faiss.knn(query, gallery, width, metric=faiss.METRIC_INNER_PRODUCT)
    if width > k:
        crossing = np.flatnonzero(scores[:, k - 1] == scores[:, k])
        scores, ids = scores[:, :k], ids[:, :k]
        if crossing.size:
            scores[crossing], ids[crossing] = _deeper_topk(query[crossing], gallery, k, len(query))
    _order_ties_by_index(scores, ids)
    return ids


def _deeper_topk(query, gallery, k, block_rows):
    """Top k for rows whose k-th score ties with the next one: search deeper until the tie group
    ends inside the returned list, then take the lowest indices among it."""
    n = len(gallery)
    scores = np.empty((len(query), k), np.float32)
    ids = np.empty((len(query), k), np.int64)
    pending, width = np.arange(len(query)), k + 1
    while pending.size:
        width = min(n, 2 * width)
        # Keep the deeper search within the memory of the original block.
        step = max(1, block_rows * (k + 1) // width)
        unresolved = []
        for start in range(0, pending.size, step):
            rows = pending[start : start + step]
            s, i = faiss.knn(query[rows], gallery, width, metric=faiss.METRIC_INNER_PRODUCT)
            done = (s[:, k - 1] > s[:, -1]) | (width == n)
            _order_ties_by_index(s, i)
            scores[rows[done]], ids[rows[done]] = s[done, :k], i[done, :k]
            unresolved.append(rows[~done])
        pending = np.concatenate(unresolved)
    return scores, ids


def _order_ties_by_index(scores, ids):
    """In place: within each row (sorted by decreasing score) orders equal scores by index."""
    rows = np.flatnonzero((scores[:, 1:] == scores[:, :-1]).any(axis=1))
    if rows.size:
        order = np.lexsort((ids[rows], -scores[rows]), axis=-1)
        scores[rows] = np.take_along_axis(scores[rows], order, axis=-1)
        ids[rows] = np.take_along_axis(ids[rows], order, axis=-1)
