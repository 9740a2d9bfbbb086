"""Retrieval metrics against a naive full-matrix reference and hand-worked cases.

The reference ranks every gallery item by (distance, gallery index), the tie rule the package
documents, and removes the query itself by index in self-retrieval. Float data that must be
compared exactly uses rows with four entries of +-1 (norm 2), so every cosine is a multiple of 1/4
computed without rounding by faiss and numpy alike; that also makes ties everywhere.
"""

import faiss
import numpy as np
import pytest

from tfmetric import metrics
from tfmetric.metrics import retrieval

KS = (1, 2, 4, 8, 16)


@pytest.fixture(autouse=True)
def one_faiss_thread():
    # Searches here take microseconds; on a shared CPU, OpenMP's spinning threads cost seconds.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def naive_metrics(query, query_labels, gallery=None, gallery_labels=None, ks=KS, binary=False, check_near_ties=False):
    query = np.asarray(query, np.float64)
    self_retrieval = gallery is None
    if self_retrieval:
        gallery, gallery_labels = query, query_labels
    gallery = np.asarray(gallery, np.float64)
    if binary:
        dist = (query[:, None, :] > 0) != (gallery[None, :, :] > 0)
        dist = dist.sum(axis=-1)
    else:

        def unit(x):
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)

        dist = -unit(query) @ unit(gallery).T

    hits = dict.fromkeys(ks, 0)
    r_precisions, average_precisions = [], []
    for i in range(len(query)):
        order = sorted(range(len(gallery)), key=lambda j: (dist[i, j], j))
        if self_retrieval:
            order.remove(i)
        rel = [gallery_labels[j] == query_labels[i] for j in order]
        if check_near_ties:
            # Items of different relevance closer than float32 rounding could swap in faiss.
            gaps = np.diff(dist[i, order])
            changes = np.array(rel[1:]) != np.array(rel[:-1])
            assert not np.any(changes & (gaps < 1e-5)), "near-tie in test data; change the seed"
        for k in ks:
            hits[k] += any(rel[:k])
        r = sum(rel)
        if r:
            r_precisions.append(sum(rel[:r]) / r)
            found, ap = 0, 0.0
            for position in range(r):
                if rel[position]:
                    found += 1
                    ap += found / (position + 1)
            average_precisions.append(ap / r)
    result = {f"recall@{k}": hits[k] / len(query) for k in ks}
    result["map@r"] = np.mean(average_precisions) if average_precisions else np.nan
    result["r_precision"] = np.mean(r_precisions) if r_precisions else np.nan
    return result


def exact_tie_data(rng, n, dim=16, num_classes=None, zero_rows=0, duplicates=0):
    x = np.zeros((n, dim), np.float32)
    for row in x:
        row[rng.choice(dim, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    # Exact duplicates under other labels and all-zero rows tie with many items at once.
    source = rng.choice(n, duplicates, replace=False)
    x[rng.choice(n, duplicates, replace=False)] = x[source]
    x[rng.choice(n, zero_rows, replace=False)] = 0.0
    labels = rng.integers(0, num_classes or n // 3, n)
    return x, labels


def assert_same(result, expected):
    assert list(result) == list(expected)
    for key, value in expected.items():
        assert isinstance(result[key], float)
        assert result[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key


@pytest.mark.parametrize("block_size", [1, 7, 1024])
@pytest.mark.parametrize("binary", [False, True])
def test_self_retrieval_matches_reference_with_ties(binary, block_size):
    rng = np.random.default_rng(1)
    x, labels = exact_tie_data(rng, 150, zero_rows=3, duplicates=10)
    if binary:
        x = rng.standard_normal((150, 12)).astype(np.float32)  # 12 bits: 13 distances, padded codes
    result = metrics.retrieval_metrics(x, labels, ks=KS, binary=binary, block_size=block_size)
    assert_same(result, naive_metrics(x, labels, binary=binary))


@pytest.mark.parametrize("block_size", [5, 1024])
@pytest.mark.parametrize("binary", [False, True])
def test_query_gallery_matches_reference_with_ties(binary, block_size):
    rng = np.random.default_rng(2)
    x, labels = exact_tie_data(rng, 200, num_classes=70, zero_rows=2, duplicates=20)
    if binary:
        x = rng.standard_normal((200, 20)).astype(np.float32)
    # Some query classes are missing from the gallery (R = 0).
    query, query_labels, gallery, gallery_labels = x[:60], labels[:60], x[60:], labels[60:]
    result = metrics.retrieval_metrics(
        query, query_labels, gallery, gallery_labels, ks=KS, binary=binary, block_size=block_size
    )
    assert_same(result, naive_metrics(query, query_labels, gallery, gallery_labels, binary=binary))


@pytest.mark.parametrize("binary", [False, True])
def test_classes_larger_than_max_k_match_reference(binary):
    # R of 20-50 with ks up to 2: map@r and r_precision need neighbours beyond max(ks).
    rng = np.random.default_rng(7)
    x, labels = exact_tie_data(rng, 120, num_classes=4, duplicates=5)
    if binary:
        x = rng.standard_normal((120, 10)).astype(np.float32)
    result = metrics.retrieval_metrics(x, labels, ks=(1, 2), binary=binary, block_size=32)
    assert_same(result, naive_metrics(x, labels, ks=(1, 2), binary=binary))


@pytest.mark.parametrize("gallery_mode", [False, True])
def test_gaussian_float_matches_reference(gallery_mode):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((120, 16)).astype(np.float32) * rng.uniform(0.5, 3.0, (120, 1))
    labels = rng.integers(0, 30, 120)
    x[100:110], labels[100:110] = x[:10], labels[:10]  # duplicates within their class
    args = (x[:40], labels[:40], x[40:], labels[40:]) if gallery_mode else (x, labels)
    result = metrics.retrieval_metrics(*args, ks=(1, 3, 10, 50), block_size=16)
    assert_same(result, naive_metrics(*args, ks=(1, 3, 10, 50), check_near_ties=True))


def test_block_size_does_not_change_results():
    rng = np.random.default_rng(4)
    x, labels = exact_tie_data(rng, 90, num_classes=12, duplicates=8)
    whole = metrics.retrieval_metrics(x, labels, ks=(1, 5, 30), block_size=90)
    for block_size in (1, 2, 13, 89):
        assert metrics.retrieval_metrics(x, labels, ks=(1, 5, 30), block_size=block_size) == whole


def test_hand_worked_query_gallery():
    gallery = np.array([[1, 0.1], [1, 0.2], [1, 0.3], [1, 0.4], [0, 1]], np.float32)
    gallery_labels = np.array([1, 0, 1, 0, 0])
    query = np.array([[1, 0], [0, 1], [1, 1], [1, 0.05]], np.float32)
    query_labels = np.array([0, 1, 7, 1])
    # Rankings (cosine): q0, q3 -> g0..g4; q1 -> g4..g0. Relevance in rank order:
    # q0 (R=3): 0 1 0 1 1 -> first hit 2, R-prec 1/3, AP@R (1/2)/3
    # q1 (R=2): 0 0 1 0 1 -> first hit 3, R-prec 0,   AP@R 0
    # q2 (R=0): no label-7 item: a miss for recall, left out of map@r and r_precision
    # q3 (R=2): 1 0 1 0 0 -> first hit 1, R-prec 1/2, AP@R (1/1)/2
    result = metrics.retrieval_metrics(query, query_labels, gallery, gallery_labels, ks=(1, 2, 4))
    assert result == pytest.approx(
        {
            "recall@1": 1 / 4,
            "recall@2": 2 / 4,
            "recall@4": 3 / 4,
            "map@r": (1 / 6 + 0 + 1 / 2) / 3,
            "r_precision": (1 / 3 + 0 + 1 / 2) / 3,
        }
    )


def test_hand_worked_self_retrieval_with_duplicates_ties_and_singleton():
    x = np.array([[1, 0], [1, 0], [1, 1], [0, 1], [-1, 0]], np.float32)
    labels = np.array(["a", "a", "b", "b", "c"])
    # x0 and x1 are duplicates: each is the other's first neighbour (self excluded by index only).
    # x2 ties at cosine 0.707 with x0, x1, x3: index order puts its relevant x3 third.
    # x3: x2 first; x4 is a singleton (R = 0).
    result = metrics.retrieval_metrics(x, labels, ks=(1, 2, 3))
    assert result == pytest.approx(
        {"recall@1": 3 / 5, "recall@2": 3 / 5, "recall@3": 4 / 5, "map@r": 3 / 4, "r_precision": 3 / 4}
    )


@pytest.mark.parametrize("binary", [False, True])
def test_ties_are_broken_by_gallery_index(binary):
    if binary:  # bits 10: Hamming distance 1 to both 00 and 11
        query, gallery = [[1.0, -1.0]], [[-1.0, -1.0], [1.0, 1.0]]
    else:  # cosine 0 to both
        query, gallery = [[1.0, 0.0]], [[0.0, 1.0], [0.0, -1.0]]
    query, gallery = np.array(query, np.float32), np.array(gallery, np.float32)
    first_relevant = metrics.retrieval_metrics(query, [0], gallery, [0, 1], ks=(1,), binary=binary)
    second_relevant = metrics.retrieval_metrics(query, [0], gallery, [1, 0], ks=(1,), binary=binary)
    assert first_relevant["recall@1"] == 1.0
    assert second_relevant["recall@1"] == 0.0
    assert second_relevant["map@r"] == 0.0


@pytest.mark.parametrize("binary", [False, True])
def test_tie_group_crossing_the_cut_keeps_lowest_indices(binary):
    # 300 gallery items at the same score; only one is relevant. faiss's float search alone may
    # keep any members of a tie group that crosses the k-th position.
    gallery = np.tile(np.array([[0.0, 1.0]], np.float32), (300, 1))
    query = np.array([[1.0, 0.0]] * 30, np.float32)
    for relevant_at, expected in ((0, (1.0, 1.0, 1.0)), (150, (0.0, 0.0, 1.0)), (299, (0.0, 0.0, 0.0))):
        labels = np.ones(300, int)
        labels[relevant_at] = 0
        result = metrics.retrieval_metrics(
            query, np.zeros(30, int), gallery, labels, ks=(1, 150, 151), binary=binary, block_size=8
        )
        assert (result["recall@1"], result["recall@150"], result["recall@151"]) == expected


def test_no_query_with_relevant_items_gives_nan_r_metrics():
    x = np.eye(4, dtype=np.float32)
    result = metrics.retrieval_metrics(x, [0, 1, 2, 3], ks=(1, 3))
    assert result["recall@1"] == result["recall@3"] == 0.0
    assert np.isnan(result["map@r"]) and np.isnan(result["r_precision"])


def test_binary_blocks_search_only_as_deep_as_their_own_r(monkeypatch):
    # One class of 60 images and 100 singletons: only the block holding the big class goes deep.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((160, 8)).astype(np.float32)
    labels = np.concatenate([np.zeros(60, int), np.arange(1, 101)])
    depths, search = [], retrieval.knn.search
    monkeypatch.setattr(retrieval.knn, "search", lambda q, g, k, **kw: depths.append(k) or search(q, g, k, **kw))
    metrics.retrieval_metrics(x, labels, ks=(1, 4), binary=True, block_size=40)
    assert depths == [4, 4, 59, 59]


def test_float_keeps_r_plus_one_candidates_whatever_k(monkeypatch):
    # Float mode counts positions instead of keeping max(ks) candidates: the heaps hold R + 1
    # per query (R = 0 for singletons, 59 in the big class), and no top-k search runs at all.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((160, 8)).astype(np.float32)
    labels = np.concatenate([np.zeros(60, int), np.arange(1, 101)])
    depths, top = [], retrieval.ranks._top
    monkeypatch.setattr(retrieval.ranks, "_top", lambda scores, k: depths.append(k) or top(scores, k))
    monkeypatch.setattr(retrieval.knn, "search", None)
    result = metrics.retrieval_metrics(x, labels, ks=(1, 4, 150), block_size=40)
    assert depths == [60, 60]  # the two blocks of singletons keep nothing
    assert_same(result, naive_metrics(x, labels, ks=(1, 4, 150)))


def test_float_counts_tie_groups_crossing_position_r():
    # Every gallery item scores the same: the heap may keep any of them, so each query's top R
    # is found by counting, ties by gallery index (relevant items at 0, 5 and 9 of 10).
    gallery = np.ones((10, 2), np.float32)
    labels = np.ones(10, int)
    labels[[0, 5, 9]] = 0
    query = np.ones((4, 2), np.float32)
    result = metrics.retrieval_metrics(query, np.zeros(4, int), gallery, labels, ks=(1, 5, 6, 10))
    assert (result["recall@1"], result["recall@5"], result["recall@10"]) == (1.0, 1.0, 1.0)
    assert result["r_precision"] == pytest.approx(1 / 3)
    assert result["map@r"] == pytest.approx(1 / 3)
    assert_same(result, naive_metrics(query, np.zeros(4, int), gallery, labels, ks=(1, 5, 6, 10)))


def test_pack_bits_equals_numpy_packbits():
    rng = np.random.default_rng(6)
    for dim in (1, 7, 8, 9, 16, 33, 512):
        x = rng.standard_normal((5, dim)).astype(np.float32)
        x[0, 0] = 0.0  # zero is not positive: bit 0
        bits = metrics.pack_bits(x)
        assert bits.dtype == np.uint8 and bits.shape == (5, -(-dim // 8))
        np.testing.assert_array_equal(bits, np.packbits(x > 0, axis=-1))
    np.testing.assert_array_equal(metrics.pack_bits([1.0, -1.0, 1.0]), [0b10100000])


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(query_labels=[0, 1]), "query_labels"),
        (dict(gallery=np.ones((4, 3), np.float32)), "gallery_labels"),
        (dict(gallery_labels=[0, 1, 2, 3]), "gallery"),
        (dict(gallery=np.ones((4, 3), np.float32), gallery_labels=[0, 1]), "gallery_labels"),
        (dict(gallery=np.ones((4, 2), np.float32), gallery_labels=[0, 1, 2, 3]), "gallery"),
        (dict(ks=(1, 5)), "ks"),  # self-retrieval: 5 queries leave 4 neighbours
        (dict(gallery=np.ones((4, 3), np.float32), gallery_labels=[0, 1, 2, 3], ks=(5,)), "ks"),
        (dict(ks=()), "ks"),
        (dict(ks=(0, 1)), "ks"),
        (dict(block_size=0), "block_size"),
        (dict(query=np.ones(5, np.float32)), "query"),
        (dict(query=np.full((5, 3), np.nan, np.float32)), "query"),
        (dict(query=np.ones((5, 1), np.uint8), binary=True), "query"),
    ],
)
def test_bad_input_names_the_argument(kwargs, argument):
    args = dict(query=np.ones((5, 3), np.float32), query_labels=[0, 0, 1, 1, 2], ks=(1,))
    args.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        metrics.retrieval_metrics(**args)
