"""Where the relevant gallery items rank in each query's ranking, from one score block.

Float retrieval metrics need, per query, only the position of its first relevant item (Recall@K,
at whatever K) and which of its top ``R`` positions hold relevant items (R-precision, MAP@R). A
top-k search for K = 1000 keeps 1000 candidates per query; here each block of queries is scored
against the gallery once (one matrix product), the top ``R + 1`` of each row are kept by faiss's
heaps, and the first relevant item of a query whose top ``R`` holds none is located by counting:
the items ranked before gallery item ``j`` at score ``s`` are those scoring above ``s`` plus those
scoring exactly ``s`` with a lower gallery index (the ranking rule of ``tfmetric.metrics.knn``).
Nothing of size K is kept, and every figure is exact at any depth.
"""

import concurrent.futures
import os

import faiss
import numpy as np

# Positions at or beyond this stand for "not retrieved at any depth that matters".
NOT_RANKED = np.iinfo(np.int64).max
# Counting runs on chunks of this many rows in a small thread pool: numpy's comparisons release the
# GIL, and a chunk's scores stay in cache between its two passes.
_CHUNK_ROWS = 64
_POOL = concurrent.futures.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="ranks")


class ClassMembers:
    """Gallery indices grouped by class id, ascending within each class (a CSR layout)."""

    def __init__(self, gallery_class, num_classes):
        self.indices = np.argsort(gallery_class, kind="stable")
        self.counts = np.bincount(gallery_class, minlength=num_classes)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])

    def padded(self, classes):
        """``[b, w]`` gallery indices of each class in ``classes`` (``w`` its largest size) and
        the ``[b, w]`` mask of real entries; padding repeats a valid index."""
        counts = self.counts[classes]
        width = max(1, int(counts.max()))
        offsets = self.starts[classes][:, None] + np.arange(width)
        valid = np.arange(width) < counts[:, None]
        # A class absent from the gallery has no valid entry; any index pads it.
        indices = self.indices[np.where(valid, offsets, 0)]
        return indices, valid


def rank_relevant(query, gallery, query_class, gallery_class, members, r, self_index=None):
    """Where each query's relevant gallery items rank, from one matrix product.

    Args:
      query: float32 ``[b, d]`` L2-normalised query rows.
      gallery: float32 ``[m, d]`` L2-normalised gallery rows.
      query_class: int ``[b]`` class ids of the queries.
      gallery_class: int ``[m]`` class ids of the gallery items.
      members: ``ClassMembers`` of ``gallery_class``.
      r: int ``[b]`` number of relevant gallery items per query (its class's members, less the
        query itself in self-retrieval).
      self_index: optional int ``[b]``: each query's own gallery row, excluded from its ranking.

    Returns:
      ``(first_hit, relevant)``: int64 ``[b]`` position (0-based) of each query's first relevant
      item at any depth (``NOT_RANKED`` when ``R = 0``), and bool ``[b, max(R)]`` whether the item
      at each of the first ``max(R)`` positions is relevant (exact in the first ``R`` columns of
      each row, which is all R-precision and MAP@R read).
    """
    scores = query @ gallery.T
    rows = np.arange(len(query))
    if self_index is not None:
        # -inf ranks the query itself after every real score (and out of faiss's heaps).
        scores[rows, self_index] = -np.inf
    depth = max(1, int(r.max()))
    relevant = np.zeros((len(query), depth), bool)
    first_hit = np.full(len(query), NOT_RANKED, np.int64)
    if r.max() > 0:
        top_scores, top_ids = _top(scores, min(depth + 1, gallery.shape[0]))
        # The heap holds the exact top values; which members of a group of equal scores it kept
        # is arbitrary, so rows where such a group crosses position R are counted instead.
        at_r = np.minimum(r, top_scores.shape[1] - 1)
        crossing = (
            (r > 0) & (r < top_scores.shape[1]) & (top_scores[rows, np.maximum(r - 1, 0)] == top_scores[rows, at_r])
        )
        _order_ties_by_index(top_scores, top_ids)
        found = (top_ids[:, :depth] >= 0) & (gallery_class[np.maximum(top_ids[:, :depth], 0)] == query_class[:, None])
        relevant[:, : found.shape[1]] = found & (np.arange(found.shape[1]) < r[:, None])
        relevant[crossing] = False
        counted = np.flatnonzero(crossing)
        if counted.size:
            relevant[counted] = _relevant_by_counting(scores[counted], query_class[counted], members, r[counted], depth)
        in_top = relevant.any(axis=1)
        first_hit[in_top] = relevant[in_top].argmax(axis=1)
        # Queries with no relevant item in their top R: count where their best one ranks.
        rest = ~in_top & (r > 0)
        if rest.any():
            # Usually most of the block (an untrained model): then count on the block itself
            # rather than on a copy of its rows, and keep the answers of the rows that need them.
            subset = np.flatnonzero(rest) if 2 * np.count_nonzero(rest) < len(query) else rows
            block = scores if subset is rows else scores[subset]
            value, index = _best_relevant(block, query_class[subset], members)
            position = _position(block, value, index)
            keep = rest[subset]
            first_hit[subset[keep]] = position[keep]
    return first_hit, relevant


def _top(scores, k):
    """Exact top-k values per row of ``scores`` with ids (faiss's C++ heaps, multithreaded)."""
    values = np.empty((len(scores), k), np.float32)
    ids = np.empty((len(scores), k), np.int64)
    heaps = faiss.float_minheap_array_t()
    heaps.nh, heaps.k = len(scores), k
    heaps.val, heaps.ids = faiss.swig_ptr(values), faiss.swig_ptr(ids)
    heaps.heapify()
    scores = np.ascontiguousarray(scores, np.float32)
    heaps.addn(scores.shape[1], faiss.swig_ptr(scores), 0, 0, len(scores))
    heaps.reorder()
    return values, ids


def _candidates(scores, query_class, members):
    """Each query's class members sorted best first (ties by index), with their scores."""
    candidates, valid = members.padded(query_class)
    values = np.where(valid, np.take_along_axis(scores, candidates, axis=1), -np.inf)
    # Candidates are ascending and the sort is stable, so equal scores stay in index order; the
    # query itself (-inf) and the padding sort last.
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(candidates, order, axis=1)


def _best_relevant(scores, query_class, members):
    values, candidates = _candidates(scores, query_class, members)
    return values[:, 0], candidates[:, 0]


def _relevant_by_counting(scores, query_class, members, r, depth):
    """``relevant`` rows as in ``rank_relevant`` by counting each relevant item's position."""
    values, candidates = _candidates(scores, query_class, members)
    relevant = np.zeros((len(scores), depth), bool)
    previous = np.full(len(scores), -1, np.int64)
    for i in range(min(depth, candidates.shape[1])):
        # Positions strictly increase along a row: item i can be in the top R only if item i - 1
        # sits above position R - 1.
        active = np.flatnonzero((i < r) & (previous < r - 1))
        if not active.size:
            break
        position = _position(scores[active], values[active, i], candidates[active, i])
        inside = position < r[active]
        relevant[active[inside], position[inside]] = True
        previous[:] = NOT_RANKED
        previous[active] = position
    return relevant


def _position(scores, value, index):
    """Number of items ranked before gallery item ``index`` at score ``value``, per row."""
    if len(scores) <= _CHUNK_ROWS:
        return _position_of_chunk(scores, value, index)
    starts = range(0, len(scores), _CHUNK_ROWS)
    chunks = _POOL.map(
        lambda s: _position_of_chunk(
            scores[s : s + _CHUNK_ROWS], value[s : s + _CHUNK_ROWS], index[s : s + _CHUNK_ROWS]
        ),
        starts,
    )
    return np.concatenate(list(chunks))


def _position_of_chunk(scores, value, index):
    above = np.count_nonzero(scores > value[:, None], axis=1)
    equal = np.count_nonzero(scores == value[:, None], axis=1)
    # The item itself is one of the equal ones; only rows with other equal items need the index.
    tied = np.flatnonzero(equal > 1)
    if tied.size:
        earlier = np.arange(scores.shape[1]) < index[tied, None]
        above[tied] += np.count_nonzero((scores[tied] == value[tied, None]) & earlier, axis=1)
    return above


def _order_ties_by_index(scores, ids):
    """In place: within each row (sorted by decreasing score) orders equal scores by index."""
    rows = np.flatnonzero((scores[:, 1:] == scores[:, :-1]).any(axis=1))
    if rows.size:
        order = np.lexsort((ids[rows], -scores[rows]), axis=-1)
        scores[rows] = np.take_along_axis(scores[rows], order, axis=-1)
        ids[rows] = np.take_along_axis(ids[rows], order, axis=-1)
