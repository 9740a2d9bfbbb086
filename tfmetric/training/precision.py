"""Mixed precision and the distribution strategy a config asks for."""

import contextlib
import json
import os

import keras
import tensorflow as tf

from tfmetric.config import STRATEGIES


@contextlib.contextmanager
def dtype_policy(name):
    """Sets the global Keras dtype policy while models are built, then restores the previous one.

    Under a mixed policy the backbone computes in float16/bfloat16 while the embedding L2
    normalisation, the CosineProxy layer and the loss stay float32 (their layers are built with
    ``dtype="float32"``). ``name`` is a key of ``tfmetric.optimizers.PRECISIONS``, validated with
    the config.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_strategy(name="auto"):
    """The tf.distribute strategy for ``train.distribute``.

    "auto": MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster, MirroredStrategy over
    all visible GPUs when there are several, else the default (one device) strategy.
    "mirrored": one replica per visible GPU; on a machine without GPUs, one per logical CPU device
    (one unless ``tf.config.set_logical_device_configuration`` split the CPU, as the tests do).
    """
    if name not in STRATEGIES:
        raise ValueError(f"train.distribute: unknown strategy {name!r}. Allowed values: {', '.join(STRATEGIES)}.")
    if name == "auto":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        if sum(len(v) for v in cluster.values()) > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "none"
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()


def global_batch_size(batch_size, replicas, per_replica_batch=False):
    """Images per training step over all replicas.

    Args:
      batch_size: ``data.batch_size``.
      replicas: ``strategy.num_replicas_in_sync``.
      per_replica_batch: ``train.per_replica_batch``: every replica takes ``batch_size`` images.
        False (the official recipe): ``batch_size`` is the global batch, split evenly.

    Raises:
      ValueError: the global batch cannot be split evenly across the replicas.
    """
    if per_replica_batch:
        return batch_size * replicas
    if batch_size % replicas:
        raise ValueError(
            f"data.batch_size ({batch_size}) is the global batch and cannot be split evenly across "
            f"{replicas} replicas. Use a number of replicas that divides it, set data.batch_size "
            f"to a multiple of {replicas} (the recipe changes), or set train.per_replica_batch=true "
            f"to give every replica data.batch_size images with local BatchNorm statistics."
        )
    return batch_size


def sync_batch_norm(replicas, per_replica_batch=False):
    """Whether BatchNorm must use statistics over the global batch (several replicas, split batch)."""
    return replicas > 1 and not per_replica_batch
