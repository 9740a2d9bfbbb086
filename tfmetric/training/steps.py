"""The training step: forward/backward (optionally XLA-compiled) and the optimizer update, per replica.

The same code runs on one device and under ``tf.distribute`` strategies: the loss of a replica is
its examples' normalized softmax loss (``tfmetric.losses``) summed and divided by the *global*
batch size, so summing the replicas' losses gives the mean over the global batch, as one device
would compute it. With synchronized BatchNorm (statistics over the global batch) the forward pass
itself all-reduces across replicas, so it runs inside the step's tf.function rather than in a
nested (XLA-compilable) one.
"""

import keras
import tensorflow as tf

from tfmetric.losses import cross_entropy_from_cosine_logits
from tfmetric.models.embedding import walk_layers


def make_train_step(strategy, model, optimizer, variables, global_batch_size, jit_compile=False):
    """A ``tf.function(images, labels) -> mean loss`` running one step on every replica.

    Args:
      strategy: a tf.distribute.Strategy (the default strategy on one device).
      model: images -> cosine logits.
      optimizer: a Keras optimizer (possibly a LossScaleOptimizer) built for ``variables``.
      variables: the variables this phase trains (the warm-up trains only the new head).
      global_batch_size: images per step over all replicas.
      jit_compile: compile forward and backward with XLA. The optimizer update stays outside the
        compiled function because it all-reduces gradients across replicas.

    Raises:
      ValueError: ``jit_compile`` with synchronized BatchNorm over several replicas (XLA cannot
        compile the cross-replica all-reduce of a MirroredStrategy).
    """
    scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    cross_replica_forward = strategy.num_replicas_in_sync > 1 and any(
        isinstance(layer, keras.layers.BatchNormalization) and layer.synchronized for layer in walk_layers(model)
    )
    if cross_replica_forward and jit_compile:
        raise ValueError(
            "train.jit_compile cannot compile synchronized BatchNorm (its statistics "
            "are all-reduced across replicas inside the forward pass). Set "
            "train.jit_compile=false, or train.per_replica_batch=true for local "
            "BatchNorm statistics."
        )

    def loss_and_grads(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = cross_entropy_from_cosine_logits(labels, logits)  # Eq. 2, per example
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
            scaled = optimizer.scale_loss(loss) if scales_loss else loss
        return loss, tape.gradient(scaled, variables)

    if not cross_replica_forward:
        loss_and_grads = tf.function(loss_and_grads, jit_compile=jit_compile, reduce_retracing=True)

    def replica_step(images, labels):
        loss, grads = loss_and_grads(images, labels)
        optimizer.apply(grads, variables)
        return loss

    @tf.function
    def step(images, labels):
        per_replica = strategy.run(replica_step, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return step
