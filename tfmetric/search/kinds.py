"""The faiss index behind each ``--kind``, its parameters and their defaults: one table, ``KINDS``.

    kind         faiss index                                  score         memory per item
    flat         IndexFlatIP (exact)                          cosine        4 D bytes
    binary       IndexBinaryFlat (exact)                      Hamming       D / 8 bytes
    ivf          IndexIVFFlat, inner product, nlist lists     cosine        4 D bytes + 8 (ids)
    hnsw         IndexHNSWFlat, M links per node              cosine        4 D + ~8 M bytes
    binary-ivf   IndexBinaryIVF, nlist lists                  Hamming       D / 8 + 8 bytes
    binary-hnsw  IndexBinaryHNSW, M links per node            Hamming       D / 8 + ~8 M bytes

Defaults (``default_params``), chosen to build a 1M-item index in minutes on a few cores:

- IVF: ``nlist = round(sqrt(n))`` (at most ``n // 39``, so each list has the 39 training points
  k-means wants), trained on ``train_size = min(n, 64 * nlist)`` seeded samples (10 k-means
  iterations, faiss's default); ``nprobe = min(nlist, 32)`` lists searched per query, about 3 % of
  a 1M catalog. Raise nprobe for recall, lower it for speed.
- HNSW: ``M = 32``, ``ef_construction = 40`` (faiss's default), ``ef_search = 64`` (faiss's default
  16 loses recall at k = 10). Raise ef_search for recall.

Float vectors are L2-normalised, so every float kind ranks by cosine similarity; HNSW is built
with L2 distance (its graph heuristics assume a metric) and its scores are converted back with
``cos = 1 - d^2 / 2``. Binary kinds rank by Hamming distance of the packed sign bits.
"""

import dataclasses
import math
from collections.abc import Callable

import faiss
import numpy as np

FLAT, BINARY, IVF, HNSW, BINARY_IVF, BINARY_HNSW = "flat", "binary", "ivf", "hnsw", "binary-ivf", "binary-hnsw"
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH, IVF_NPROBE = 32, 40, 64, 32
MIN_POINTS_PER_LIST, TRAIN_POINTS_PER_LIST = 39, 64


def _ivf_defaults(n, nlist=None):
    nlist = nlist or max(1, min(round(math.sqrt(n)), n // MIN_POINTS_PER_LIST))
    return {"nlist": nlist, "nprobe": min(nlist, IVF_NPROBE), "train_size": min(n, TRAIN_POINTS_PER_LIST * nlist)}


def _hnsw_defaults(n, nlist=None):
    return {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}


def _set_nprobe(index, params):
    index.nprobe = params["nprobe"]


def _set_ef_search(index, params):
    index.hnsw.efSearch = params["ef_search"]


def _hnsw(index, params):
    index.hnsw.efConstruction = params["ef_construction"]
    return index


def _l2_to_cosine(scores, rows):
    """HNSW ranks unit vectors by squared L2 distance d^2 = 2 - 2 cos."""
    return np.where(rows >= 0, 1.0 - scores / 2.0, -np.inf).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class IndexKind:
    """What one ``--kind`` is; code looks the entry up instead of branching on names.

    Attributes:
      binary: indexes packed sign bits (uint8 [n, D/8], Hamming distance); else L2-normalised
        float32 [n, D] vectors (cosine similarity). A kind answers its own search mode (float or
        binary) and, with the arrays kept beside it, the others (tfmetric.search.modes).
      empty: (width, params) -> an empty faiss index; width is D for float kinds, the code bytes
        for binary ones.
      params: the parameters it accepts, ``defaults(n, nlist)`` their values for n items;
        ``configure(index, params)`` applies the search-time ones to a built or loaded index.
      holds_vectors: its faiss index hands its float vectors back (no copy kept beside it).
      to_score: (faiss distances, rows) -> the scores search reports, or None to keep faiss's.
    """

    binary: bool
    empty: Callable
    params: tuple[str, ...] = ()
    defaults: Callable = lambda n, nlist=None: {}
    configure: Callable = lambda index, params: None
    holds_vectors: bool = False
    to_score: Callable | None = None

    @property
    def metric(self):
        return "hamming" if self.binary else "cosine"

    def write(self, index, path):
        (faiss.write_index_binary if self.binary else faiss.write_index)(index, path)

    def read(self, path):
        return (faiss.read_index_binary if self.binary else faiss.read_index)(path)


_IVF = dict(params=("nlist", "nprobe", "train_size"), defaults=_ivf_defaults, configure=_set_nprobe)
_HNSW = dict(params=("m", "ef_construction", "ef_search"), defaults=_hnsw_defaults, configure=_set_ef_search)
KINDS = {
    FLAT: IndexKind(False, lambda d, p: faiss.IndexFlatIP(d), holds_vectors=True),
    BINARY: IndexKind(True, lambda b, p: faiss.IndexBinaryFlat(b * 8)),
    IVF: IndexKind(
        False, lambda d, p: faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, p["nlist"], faiss.METRIC_INNER_PRODUCT), **_IVF
    ),
    HNSW: IndexKind(
        False, lambda d, p: _hnsw(faiss.IndexHNSWFlat(d, p["m"], faiss.METRIC_L2), p), to_score=_l2_to_cosine, **_HNSW
    ),
    BINARY_IVF: IndexKind(
        True, lambda b, p: faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(b * 8), b * 8, p["nlist"]), **_IVF
    ),
    BINARY_HNSW: IndexKind(True, lambda b, p: _hnsw(faiss.IndexBinaryHNSW(b * 8, p["m"]), p), **_HNSW),
}
# Parameters each kind accepts; nprobe and ef_search are search-time ones (changeable after loading).
PARAMS = {name: kind.params for name, kind in KINDS.items()}


def check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}. Received: kind={kind!r}")
    return kind


def get_kind(kind):
    """The registry entry of ``kind`` (ValueError naming the allowed kinds otherwise)."""
    return KINDS[check_kind(kind)]


def is_binary(kind):
    return get_kind(kind).binary


def metric(kind):
    return get_kind(kind).metric


def default_params(kind, n, nlist=None):
    """The parameters ``kind`` uses for a catalog of ``n`` items (see the module docstring); the
    IVF defaults follow ``nlist`` when it is given."""
    return get_kind(kind).defaults(n, nlist)


def _check(kind, name, value):
    if name not in PARAMS[kind]:
        takes = ", ".join(PARAMS[kind]) or "no parameters"
        raise ValueError(
            f"{name} does not apply to kind {kind} (it takes: {takes}). Received: {name}={value}, kind={kind!r}"
        )
    if int(value) < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value}")
    return int(value)


def resolve_params(kind, n, **overrides):
    """Defaults for ``kind`` and ``n`` with the non-None ``overrides``; unknown or bad ones raise."""
    check_kind(kind)
    overrides = {name: _check(kind, name, value) for name, value in overrides.items() if value is not None}
    params = {**default_params(kind, n, overrides.get("nlist")), **overrides}
    if "nlist" in params:
        if params["nlist"] > n:
            raise ValueError(f"nlist exceeds the {n} items to index. Received: nlist={params['nlist']}")
        params["nprobe"] = min(params["nprobe"], params["nlist"])
        params["train_size"] = max(params["nlist"], min(params["train_size"], n))
    return params


def with_search_params(kind, params, nprobe=None, ef_search=None):
    """``params`` of a built index with new search-time parameters (None keeps the current one)."""
    params = dict(params)
    for name, value in (("nprobe", nprobe), ("ef_search", ef_search)):
        if value is not None:
            params[name] = _check(kind, name, value)
    if "nlist" in params:
        params["nprobe"] = min(params["nprobe"], params["nlist"])
    return params


def create(kind, data, params, seed=0):
    """A filled faiss index of ``kind`` over ``data`` (float32 L2-normalised [n, D], or uint8 codes
    [n, B] for binary kinds), trained first where the kind needs it."""
    data = np.ascontiguousarray(data)
    index = get_kind(kind).empty(data.shape[1], params)
    if not index.is_trained:
        # The quantizer's k-means is seeded by faiss itself; the sample is seeded here.
        rows = np.sort(np.random.default_rng(seed).choice(len(data), params["train_size"], replace=False))
        index.train(np.ascontiguousarray(data[rows]))
    index.add(data)
    configure(index, kind, params)
    return index


def configure(index, kind, params):
    """Applies the search-time parameters (nprobe, ef_search) to a built or loaded index."""
    get_kind(kind).configure(index, params)
    return index


def search(index, kind, queries, k):
    """(scores, rows), each [m, k]: cosine similarity (float kinds, best first) or Hamming distance
    (binary kinds); rows are positions in the catalog, -1 where an ANN index found fewer than k."""
    queries = np.ascontiguousarray(queries)
    scores, rows = index.search(queries, k)
    to_score = get_kind(kind).to_score
    return (to_score(scores, rows) if to_score else scores), rows


def write(index, kind, path):
    get_kind(kind).write(index, path)


def read(kind, path):
    try:
        return get_kind(kind).read(path)
    except RuntimeError as e:  # faiss names the C++ function, not the file, for a truncated index
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise ValueError(
            f"{path} cannot be read as a faiss index ({lines[-1].strip() if lines else e!r}); it may "
            f"be truncated: rebuild it with python -m tfmetric.search build."
        ) from None
