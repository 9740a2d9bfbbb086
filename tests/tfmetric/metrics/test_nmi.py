"""NMI: perfect clusterings score 1, clusterings unrelated to the labels score about 0."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from tfmetric import metrics


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


@pytest.mark.parametrize("embeddings, labels, argument", [
    (np.ones((4, 2)), [0, 1, 2], "labels"),
    (np.ones(4), [0, 1, 2, 3], "embeddings"),
    (np.full((4, 2), np.inf), [0, 1, 2, 3], "embeddings"),
])
def test_bad_input_names_the_argument(embeddings, labels, argument):
    with pytest.raises(ValueError, match=argument):
        metrics.nmi(embeddings, labels)
