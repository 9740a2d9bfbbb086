"""NMI: perfect clusterings score 1, clusterings unrelated to the labels score about 0."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from tfmetric import metrics
from tfmetric.metrics.nmi import kmeans_assignments


@pytest.fixture(autouse=True)
def one_thread():
    # k-means of a few hundred points: OpenMP's spinning threads cost more than they save.
    with threadpool_limits(1):
        yield


def test_perfectly_separated_clusters_give_one():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 30)
    # Class directions far apart and tight clusters around them (NMI sees the normalised rows).
    centres = np.eye(8, 16, dtype=np.float32) * 10
    x = centres[labels] + rng.normal(0, 0.05, (len(labels), 16)).astype(np.float32)
    assert metrics.nmi(x, labels) == 1.0
    # Cluster ids are arbitrary: permuted or string labels score the same.
    assert metrics.nmi(x, np.array(list("abcdefgh"))[labels]) == 1.0


def test_random_labels_give_about_zero():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    score = metrics.nmi(x, rng.integers(0, 5, 2000))
    assert 0.0 <= score < 0.02


def test_deterministic_for_a_seed():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    labels = rng.integers(0, 10, 300)
    assert metrics.nmi(x, labels, seed=3) == metrics.nmi(x, labels, seed=3)


def naive_nmi(a, b):
    """NMI with arithmetic-mean normalisation, from the definition (float64 loops)."""
    n = len(a)
    joint = {}
    for x, y in zip(a, b):
        joint[(x, y)] = joint.get((x, y), 0) + 1
    pa = {x: np.mean(np.asarray(a) == x) for x in set(a)}
    pb = {y: np.mean(np.asarray(b) == y) for y in set(b)}
    mi = sum(c / n * np.log(c / n / (pa[x] * pb[y])) for (x, y), c in joint.items())
    h = lambda p: -sum(v * np.log(v) for v in p.values())  # noqa: E731
    return mi / ((h(pa) + h(pb)) / 2)


def test_naive_reference_on_a_hand_computed_case():
    # H(L) = ln 2, H(C) = 0.5623, I = 0.2158: NMI = 0.2158 / 0.6277 = 0.3437.
    assert naive_nmi([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(0.34371, abs=1e-4)


def test_equals_the_naive_nmi_of_the_official_kmeans_clusters():
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(6), 40)
    x = rng.normal(0, 1, (6, 8))[labels] + rng.normal(0, 0.8, (240, 8))
    norm = x / np.linalg.norm(x, axis=1, keepdims=True)
    clusters = kmeans_assignments(norm, 6, seed=0)
    assert metrics.nmi(x, labels) == pytest.approx(naive_nmi(labels.tolist(), clusters.tolist()), abs=1e-9)


def test_kmeans_recovers_separated_blobs_and_redos_pick_the_best_objective():
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(12), 20)
    x = (rng.normal(0, 10, (12, 4))[labels] + rng.normal(0, 0.1, (240, 4))).astype(np.float32)
    clusters = kmeans_assignments(x, 12)
    assert len({(a, b) for a, b in zip(labels, clusters)}) == 12  # a relabelling of the classes

    def objective(assignment):
        return sum(((x[assignment == c] - x[assignment == c].mean(0)) ** 2).sum() for c in set(assignment))

    single = [objective(kmeans_assignments(x[:, :], 12, seed=s)) for s in range(3)]
    assert objective(clusters) <= min(single) + 1e-3  # separated blobs: every seed finds the optimum


@pytest.mark.parametrize(
    "embeddings, labels, argument",
    [
        (np.ones((4, 2)), [0, 1, 2], "labels"),
        (np.ones(4), [0, 1, 2, 3], "embeddings"),
        (np.full((4, 2), np.inf), [0, 1, 2, 3], "embeddings"),
    ],
)
def test_bad_input_names_the_argument(embeddings, labels, argument):
    with pytest.raises(ValueError, match=argument):
        metrics.nmi(embeddings, labels)
