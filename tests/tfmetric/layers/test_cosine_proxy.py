import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmetric.data.balanced_batches import class_balanced_batches
from tfmetric.layers import CosineProxy
from tfmetric.losses import NormalizedSoftmaxLoss


def test_logits_are_cosines_over_temperature():
    layer = CosineProxy(6, temperature=0.1)
    x = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    logits = np.asarray(layer(x))
    w = np.asarray(layer.proxies)
    expected = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T / 0.1
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert logits.dtype == np.float32


def test_proxies_initialised_uniform_in_official_range():
    keras.utils.set_random_seed(0)
    layer = CosineProxy(500, temperature=0.05)
    layer.build((None, 64))
    w = np.asarray(layer.proxies)
    assert w.shape == (500, 64)
    bound = 1.0 / math.sqrt(64)
    assert w.min() >= -bound and w.max() <= bound
    assert w.min() < -0.9 * bound and w.max() > 0.9 * bound  # actually spans the range
    assert len(layer.trainable_weights) == 1  # no bias


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 3, "temperature": 0}, "temperature"),
        ({"num_classes": 3, "temperature": -1.0}, "temperature"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CosineProxy(**kwargs)


def test_get_config_round_trip():
    layer = CosineProxy(7, temperature=0.2, name="p")
    clone = CosineProxy.from_config(layer.get_config())
    assert (clone.num_classes, clone.temperature, clone.name) == (7, 0.2, "p")


def test_saved_keras_model_reloads_with_identical_outputs(tmp_path):
    inputs = keras.Input((5,))
    x = keras.layers.Dense(8, use_bias=False)(inputs)
    model = keras.Model(inputs, CosineProxy(3, temperature=0.05)(x))
    data = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    path = str(tmp_path / "m.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(model(data)), np.asarray(reloaded(data)))


def test_plain_keras_compile_fit_learns_separable_classes():
    # The README's "bring your own backbone" usage: CosineProxy + the loss with compile/fit.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16)) * 3
    labels = rng.integers(0, 4, size=256)
    x = (centers[labels] + rng.normal(size=(256, 16))).astype(np.float32)
    inputs = keras.Input((16,))
    emb = keras.layers.UnitNormalization()(keras.layers.Dense(8, use_bias=False)(inputs))
    model = keras.Model(inputs, CosineProxy(4, temperature=0.05)(emb))
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=NormalizedSoftmaxLoss(),
        metrics=["sparse_categorical_accuracy"],
    )
    before = model.evaluate(x, labels, verbose=0)[0]
    # Class-balanced batches of in-memory arrays, as the README shows: 2 classes x 16 images.
    idx = class_balanced_batches(labels, batch_size=32, images_per_class=16, num_batches=8, seed=0)
    assert all(len(np.unique(labels[b])) == 2 for b in idx)
    train_ds = tf.data.Dataset.from_tensor_slices((x[idx.ravel()], labels[idx.ravel()])).batch(32)
    hist = model.fit(train_ds, epochs=5, shuffle=False, verbose=0)
    assert hist.history["loss"][-1] < 0.5 * before
    assert hist.history["sparse_categorical_accuracy"][-1] > 0.95
