import numpy as np
import pytest
import tensorflow as tf

from tfmetric.losses import (
    NormalizedSoftmaxLoss,
    cosine_logits,
    cross_entropy_from_cosine_logits,
    normalized_softmax_loss,
)


def naive_loss(labels, embeddings, proxies, temperature):
    """Loop-by-loop reference in float64."""
    total = 0.0
    for i, y in enumerate(labels):
        e = embeddings[i].astype(np.float64)
        e = e / np.sqrt((e * e).sum())
        logits = []
        for w in proxies.astype(np.float64):
            logits.append((e * w).sum() / np.sqrt((w * w).sum()) / temperature)
        logits = np.array(logits)
        m = logits.max()
        total += -(logits[y] - m - np.log(np.exp(logits - m).sum()))
    return total / len(labels)


@pytest.mark.parametrize("temperature", [0.05, 0.5, 1.0])
def test_matches_naive_reference_on_unnormalised_inputs(temperature):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(12, 7)).astype(np.float32) * rng.uniform(0.1, 10, size=(12, 1)).astype(np.float32)
    prox = rng.normal(size=(5, 7)).astype(np.float32) * 3.0
    labels = rng.integers(0, 5, size=12)
    got = float(normalized_softmax_loss(labels, emb, prox, temperature))
    assert got == pytest.approx(naive_loss(labels, emb, prox, temperature), rel=1e-5)


def test_float16_inputs_are_computed_in_float32():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(8, 16)).astype(np.float16)
    prox = rng.normal(size=(4, 16)).astype(np.float16)
    labels = rng.integers(0, 4, size=8)
    got = normalized_softmax_loss(labels, emb, prox, 0.05)
    assert got.dtype == tf.float32
    # Reference on the float16 values (exactly representable in float64).
    assert float(got) == pytest.approx(naive_loss(labels, emb, prox, 0.05), rel=1e-4)


def test_analytic_perfect_and_all_wrong_batches():
    # Embeddings equal to their orthonormal proxy: cos = 1 for the right class, 0 for the others.
    dim, classes, t = 4, 4, 0.5
    prox = np.eye(classes, dim, dtype=np.float32)
    labels = np.arange(classes)
    perfect = np.log(1 + (classes - 1) * np.exp(-1 / t))
    assert float(normalized_softmax_loss(labels, prox, prox, t)) == pytest.approx(perfect, rel=1e-5)
    # Every embedding sits on the proxy of the next class: cos = 0 for the label, 1 for one other.
    wrong = np.log(np.exp(1 / t) + classes - 1) - 0.0
    got = float(normalized_softmax_loss(labels, np.roll(prox, 1, axis=0), prox, t))
    assert got == pytest.approx(wrong, rel=1e-5)


def test_cosine_logits_bounded_by_inverse_temperature():
    rng = np.random.default_rng(2)
    logits = cosine_logits(rng.normal(size=(6, 3)), rng.normal(size=(9, 3)), 0.1).numpy()
    assert logits.shape == (6, 9)
    assert np.all(np.abs(logits) <= 10.0 + 1e-4)


def test_keras_loss_on_cosine_logits_equals_function():
    rng = np.random.default_rng(3)
    emb, prox = rng.normal(size=(5, 8)), rng.normal(size=(3, 8))
    labels = rng.integers(0, 3, size=5)
    logits = cosine_logits(emb, prox, 0.05)
    assert float(NormalizedSoftmaxLoss()(labels, logits)) == pytest.approx(
        float(normalized_softmax_loss(labels, emb, prox, 0.05)), rel=1e-6
    )


def test_per_example_cross_entropy_matches_naive_reference_row_by_row():
    rng = np.random.default_rng(4)
    emb, prox = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=6)
    got = cross_entropy_from_cosine_logits(labels, cosine_logits(emb, prox, 0.1).numpy().astype(np.float16))
    assert got.dtype == tf.float32 and got.shape == (6,)
    expected = [naive_loss(labels[i : i + 1], emb[i : i + 1], prox, 0.1) for i in range(6)]
    assert got.numpy() == pytest.approx(expected, rel=2e-3)  # float16 logits: 3 significant digits


@pytest.mark.parametrize("bad", [0.0, -0.1])
def test_rejects_non_positive_temperature(bad):
    with pytest.raises(ValueError, match="temperature"):
        normalized_softmax_loss([0], np.ones((1, 2)), np.ones((1, 2)), bad)
