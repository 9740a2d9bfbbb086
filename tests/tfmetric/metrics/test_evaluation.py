"""The one evaluation: embed batches, score float / binary / NMI, and the one score formatter."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from tfmetric.config import EvalConfig
from tfmetric.metrics import evaluation, retrieval_metrics


def test_embed_concatenates_batches_in_order():
    batches = [(np.full((2, 3), i, np.float64), np.array([i, i])) for i in range(3)]
    embeddings, labels = evaluation.embed(lambda x: x * 2, batches)
    assert embeddings.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(embeddings[:, 0], [0, 0, 2, 2, 4, 4])
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="empty split"):
        evaluation.embed(lambda x: x, [])


def test_score_is_retrieval_metrics_float_then_binary_plus_nmi():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 5)
    embeddings = rng.normal(size=(20, 8)) + 3 * np.eye(8)[labels]
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    with threadpool_limits(1):
        scores = evaluation.score(embeddings, labels, eval_config=EvalConfig(recall_ks=(1, 2)))
    float_ref = retrieval_metrics(embeddings, labels, ks=(1, 2))
    binary_ref = retrieval_metrics(embeddings, labels, ks=(1, 2), binary=True)
    assert {k: scores[k] for k in float_ref} == pytest.approx({k: float(v) for k, v in float_ref.items()})
    assert {k: scores[f"binary/{k}"] for k in binary_ref} == pytest.approx({k: float(v) for k, v in binary_ref.items()})
    assert 0.0 <= scores["nmi"] <= 1.0
    only_float = evaluation.score(embeddings, labels, eval_config=EvalConfig(recall_ks=(1,), binary=False, nmi=False))
    assert set(only_float) == set(retrieval_metrics(embeddings, labels, ks=(1,)))


def test_format_scores_prints_float_then_binary():
    scores = {
        "recall@1": 0.5,
        "recall@2": 0.75,
        "map@r": 0.25,
        "nmi": 0.6,
        "binary/recall@1": 0.4,
        "binary/recall@2": 0.6,
        "binary/map@r": 0.2,
    }
    assert evaluation.format_scores(scores, (1, 2)) == (
        "  float : R@1 0.5000  R@2 0.7500  MAP@R 0.2500  NMI 0.6000\n  binary: R@1 0.4000  R@2 0.6000  MAP@R 0.2000"
    )
    binary_only = {k: v for k, v in scores.items() if k.startswith("binary/")}
    assert evaluation.format_scores(binary_only, (1, 2), indent="") == "binary: R@1 0.4000  R@2 0.6000  MAP@R 0.2000"
