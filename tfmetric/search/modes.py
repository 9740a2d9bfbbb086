"""The three ways to search one index: exact float cosine, Hamming on the sign bits, and both.

    float    cosine similarity of L2-normalised embeddings (the index itself for float kinds)
    binary   Hamming distance of the packed sign bits (the index itself for binary kinds)
    rescore  a Hamming shortlist of ``rescore_factor * k`` items, re-ranked by exact cosine on the
             float embeddings: the bits' speed (D / 8 bytes a row scanned) with close to float ranking

A float index keeps the catalog's bits beside it and a binary index keeps the float embeddings
when the catalog had them (``tfmetric.search.index``, ``bits.npy`` / ``embeddings.npy``), so the
default ``python -m tfmetric.search build`` (kind flat) answers all three modes. The exact
searches that a kind does not hold itself run on an exact faiss index built at load from those
arrays; scores are cosine (float, rescore) or Hamming distance (binary).

    searcher = ModeSearcher(load_index("indexes/products/3"))
    searcher.neighbours(embedding, bits, k=10, mode="rescore")
"""

import faiss
import numpy as np

from tfmetric.search import index as index_lib
from tfmetric.search import kinds

FLOAT, BINARY, RESCORE = "float", "binary", "rescore"
MODES = (FLOAT, BINARY, RESCORE)
RESCORE_FACTOR = 10  # shortlist r x k: at r = 10 recall@10 against float search is about 0.99 (benchmarks/serve.py)
SCORE_METRIC = {FLOAT: "cosine", BINARY: "hamming", RESCORE: "cosine"}


def check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}. Received: mode={mode!r}")
    return mode


def flat_vectors(index):
    """The float32 [n, D] rows a faiss IndexFlat holds, without a copy (valid while ``index`` lives)."""
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


class ModeSearcher:
    """Float, binary and rescore search over one CatalogIndex.

    Args:
      index: a CatalogIndex (``load_index`` or ``build_index``).
      rescore_factor: the shortlist of ``rescore`` is ``rescore_factor * k`` items.
    """

    def __init__(self, index, rescore_factor=RESCORE_FACTOR):
        if int(rescore_factor) < 1:
            raise ValueError(f"rescore_factor must be >= 1. Received: rescore_factor={rescore_factor}")
        self.index, self.rescore_factor = index, int(rescore_factor)
        bits, embeddings = index.arrays.get(index_lib.BITS), index.arrays.get(index_lib.EMBEDDINGS)
        self._vectors = embeddings
        if kinds.get_kind(index.kind).holds_vectors:
            self._vectors = flat_vectors(index.index)
        self._binary = index.index if index.binary else None
        if self._binary is None and bits is not None:
            self._binary = faiss.IndexBinaryFlat(bits.shape[1] * 8)
            self._binary.add(np.ascontiguousarray(bits))
        self._float = None if index.binary else index.index
        if self._float is None and embeddings is not None:
            self._float = faiss.IndexFlatIP(index.dim)
            self._float.add(np.ascontiguousarray(embeddings, np.float32))
        self.modes = tuple(
            m
            for m, ok in (
                (FLOAT, self._float is not None),
                (BINARY, self._binary is not None),
                (RESCORE, self._binary is not None and self._vectors is not None),
            )
            if ok
        )
        self._kind = {
            FLOAT: index.kind if not index.binary else kinds.FLAT,
            BINARY: index.kind if index.binary else kinds.BINARY,
        }

    def search(self, embedding, bits, k, mode):
        """(scores [m], rows [m]) of one query, best first; ``embedding`` float [D] (None for
        ``binary``), ``bits`` uint8 [B] (None for ``float``)."""
        check_mode(mode)
        if mode not in self.modes:
            raise ValueError(
                f"mode {mode!r} needs {'float embeddings' if mode != BINARY else 'sign bits'} "
                f"that index kind {self.index.kind} does not hold (it answers: {', '.join(self.modes)})."
            )
        if int(k) < 1:
            raise ValueError(f"k must be >= 1. Received: k={k}")
        k = min(int(k), self.index.count)
        if mode == FLOAT:
            query = np.array(np.reshape(embedding, (1, -1)), np.float32)
            faiss.normalize_L2(query)
            scores, rows = kinds.search(self._float, self._kind[FLOAT], query, k)
        else:
            codes = np.ascontiguousarray(np.reshape(bits, (1, -1)), np.uint8)
            shortlist = k if mode == BINARY else min(self.index.count, self.rescore_factor * k)
            scores, rows = kinds.search(self._binary, self._kind[BINARY], codes, shortlist)
        scores, rows = scores[0], rows[0]
        keep = rows >= 0
        scores, rows = scores[keep], rows[keep]
        if mode == RESCORE:
            query = np.asarray(embedding, np.float32)
            query = query / max(float(np.linalg.norm(query)), 1e-12)
            rows = np.sort(rows)
            cosine = np.asarray(self._vectors[rows], np.float32) @ query
            order = np.argsort(-cosine, kind="stable")[:k]  # equal cosines by catalog row, as faiss orders them
            scores, rows = cosine[order], rows[order]
        return scores, rows

    def neighbours(self, embedding, bits, k, mode):
        """``Neighbour(rank, id, score, source)`` of one query, best first."""
        scores, rows = self.search(embedding, bits, k, mode)
        cast = int if mode == BINARY else float
        return [
            index_lib.Neighbour(rank + 1, self.index.ids[row], cast(score), self.index.sources[row])
            for rank, (score, row) in enumerate(zip(scores, rows))
        ]
