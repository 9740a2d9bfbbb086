"""The training step's loss is the library's normalized softmax loss, averaged over the global batch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.tfmetric.losses.test_normalized_softmax import naive_loss
from tfmetric.layers import CosineProxy
from tfmetric.training.steps import make_train_step


def test_step_returns_the_naive_loss_before_its_update_divided_by_the_global_batch():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(6, 5)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2], np.int64)
    embed = keras.layers.Dense(4)
    head = CosineProxy(3, temperature=0.1)
    model = keras.Sequential([keras.Input((5,)), embed, head])
    embeddings = embed(images).numpy()
    expected = naive_loss(labels, embeddings, head.proxies.numpy(), 0.1)
    optimizer = keras.optimizers.SGD(0.0)  # no update: both steps see the same weights
    optimizer.build(model.trainable_variables)
    strategy = tf.distribute.get_strategy()
    step = make_train_step(strategy, model, optimizer, model.trainable_variables, global_batch_size=6)
    assert float(step(images, labels)) == pytest.approx(expected, rel=1e-5)
    # A replica's share: its examples' summed loss over the global batch (here twice the local one).
    half = make_train_step(strategy, model, optimizer, model.trainable_variables, global_batch_size=12)
    assert float(half(images, labels)) == pytest.approx(expected / 2, rel=1e-5)
