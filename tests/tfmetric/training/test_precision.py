"""Mixed precision (float16 with loss scaling, bfloat16) and XLA-compiled training steps."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmetric.config import TrainConfig
from tfmetric.models.embedding import build_embedding_model, build_training_model
from tfmetric.training.precision import dtype_policy, global_batch_size, make_strategy, sync_batch_norm
from tfmetric.training.run_state import RunState
from tfmetric.training.steps import make_train_step


def _batch(n=8, size=32, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, size, size, 3)).astype("float32"),
        np.repeat(np.arange(classes), n // classes).astype("int64"),
    )


def _conv_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _conv_layers(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            yield layer


@pytest.mark.parametrize("policy, compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_mixed_precision_backbone_with_float32_head_loss_and_variables(policy, compute):
    keras.utils.set_random_seed(0)
    with dtype_policy(policy):
        embedding = build_embedding_model("inception_v1", 16, image_size=32)
        model = build_training_model(embedding, num_classes=4)
    assert keras.config.dtype_policy().name == "float32"  # restored after building
    convs = list(_conv_layers(embedding))
    assert convs and all(c.compute_dtype == compute and c.variable_dtype == "float32" for c in convs)
    assert embedding.get_layer("embedding").compute_dtype == "float32"
    assert model.get_layer("cosine_proxy").compute_dtype == "float32"

    images, labels = _batch()
    assert embedding(images).dtype == tf.float32 and model(images).dtype == tf.float32
    train = TrainConfig(precision=policy, optimizer="sgd", lr=0.01)
    optimizer = RunState._optimizer(train, train.lr, "optimizer")
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    optimizer.build(model.trainable_variables)
    step = make_train_step(tf.distribute.get_strategy(), model, optimizer, model.trainable_variables, 8)
    before = [v.numpy() for v in model.trainable_variables]
    # float16: dynamic loss scaling starts at 2**15 and skips the steps whose float16 gradients
    # overflow, halving the scale each time, then trains.
    losses = [float(step(images, labels)) for _ in range(12)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    if policy == "mixed_float16":
        assert float(optimizer.dynamic_scale.numpy()) < 2.0**15
    after = model.trainable_variables
    assert all(v.dtype == "float32" for v in after)
    assert all(np.isfinite(v.numpy()).all() for v in after)
    assert max(float(np.abs(a - v.numpy()).max()) for a, v in zip(before, after)) > 0


def test_unknown_strategy_names_the_allowed_values():  # precisions: validated with the config
    with pytest.raises(ValueError, match="train.distribute: unknown strategy 'tpu'. Allowed values: auto"):
        make_strategy("tpu")
    assert make_strategy("none") is tf.distribute.get_strategy()


def test_xla_compiled_step_matches_the_plain_step():
    def build():
        embedding = keras.Sequential(
            [
                keras.Input((32, 32, 3)),
                keras.layers.Conv2D(8, 3, strides=2),
                keras.layers.ReLU(),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.LayerNormalization(center=False, scale=False),
                keras.layers.Dense(6, use_bias=False),
                keras.layers.UnitNormalization(),
            ]
        )
        model = build_training_model(embedding, num_classes=4)
        optimizer = RunState._optimizer(TrainConfig(optimizer="sgd"), 0.05, "optimizer")
        optimizer.build(model.trainable_variables)
        return model, optimizer

    keras.utils.set_random_seed(0)
    plain_model, plain_opt = build()
    xla_model, xla_opt = build()
    initial = plain_model.get_weights()
    xla_model.set_weights(initial)
    strategy = tf.distribute.get_strategy()
    plain = make_train_step(strategy, plain_model, plain_opt, plain_model.trainable_variables, 8)
    xla = make_train_step(strategy, xla_model, xla_opt, xla_model.trainable_variables, 8, jit_compile=True)
    for seed in range(3):
        images, labels = _batch(seed=seed)
        np.testing.assert_allclose(float(xla(images, labels)), float(plain(images, labels)), rtol=1e-5)
    for a, b in zip(xla_model.get_weights(), plain_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)  # float32 reassociation
    assert max(float(np.abs(a - b).max()) for a, b in zip(plain_model.get_weights(), initial)) > 1e-3


def test_global_batch_is_the_configured_batch_split_evenly():
    assert global_batch_size(75, 1) == 75 and global_batch_size(75, 3) == 75 and global_batch_size(75, 5) == 75
    assert global_batch_size(75, 4, per_replica_batch=True) == 300
    with pytest.raises(
        ValueError,
        match=r"data.batch_size \(75\) is the global batch and cannot be split "
        r"evenly across 2 replicas.*train.per_replica_batch=true",
    ):
        global_batch_size(75, 2)
    assert sync_batch_norm(2) and not sync_batch_norm(1) and not sync_batch_norm(4, per_replica_batch=True)
