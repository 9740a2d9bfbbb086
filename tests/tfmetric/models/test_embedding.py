"""The embedding head's projection starts as the official bias-free nn.Linear does."""

import math

import keras
import numpy as np
import pytest

from tfmetric.models.embedding import build_embedding_model, configure_batch_norm, torch_linear_initializer


def test_projection_init_is_torch_linear_uniform():
    keras.utils.set_random_seed(0)
    model = build_embedding_model("inception_v1", embedding_dim=512, image_size=32)
    kernel = model.get_layer("embedding_projection").kernel.numpy()
    assert kernel.shape == (1024, 512) and not model.get_layer("embedding_projection").use_bias
    bound = 1 / math.sqrt(1024)  # fan_in = the backbone's pool5 width
    values = kernel.ravel()
    assert np.abs(values).max() <= bound
    # U(-b, b): the extremes are reached, mean 0 and variance b^2 / 3 (glorot-uniform would give
    # sqrt(6 / (1024 + 512)) = 2.0 b as its bound and 4/3 b^2 as its variance).
    assert np.abs(values).max() > 0.999 * bound
    n = values.size
    assert abs(values.mean()) < 4 * bound / math.sqrt(3 * n)
    assert values.var() == pytest.approx(bound**2 / 3, rel=4 * math.sqrt(0.8 / n))
    # Uniform: every tenth of [-b, b] holds a tenth of the weights (chi-square, 9 dof, p ~ 1e-4).
    counts, _ = np.histogram(values, bins=10, range=(-bound, bound))
    chi2 = ((counts - n / 10) ** 2 / (n / 10)).sum()
    assert chi2 < 33.7


def test_no_projection_at_the_backbone_width():
    model = build_embedding_model("inception_v1", embedding_dim=1024, image_size=32)
    assert "embedding_projection" not in [layer.name for layer in model.layers]


def test_initializer_rejects_bad_fan_in():
    with pytest.raises(ValueError, match="fan_in=0"):
        torch_linear_initializer(0)


def test_configure_batch_norm_reaches_nested_models():
    inner = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.BatchNormalization()])
    outer = keras.Sequential([keras.Input((4, 4, 2)), inner, keras.layers.BatchNormalization()])
    configure_batch_norm(outer, 0.9, synchronized=True)
    layers = [inner.layers[0], outer.layers[1]]
    assert [(layer.momentum, layer.synchronized) for layer in layers] == [(0.9, True)] * 2
