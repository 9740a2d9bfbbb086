"""Normalized softmax loss (Zhai & Wu 2019, Sec. 3.1, Eq. 2).

The class weights ("proxies") and the embeddings are both L2-normalised, so each logit is a cosine
similarity; dividing by a temperature < 1 sharpens the softmax (the paper uses 0.05). There is no bias.
"""

import keras
import tensorflow as tf


def cosine_logits(embeddings, proxies, temperature=0.05):
    """cos(embedding_i, proxy_c) / temperature, shape [batch, num_classes], computed in float32.

    Args:
      embeddings: [batch, dim] tensor, any float dtype, need not be normalised.
      proxies: [num_classes, dim] tensor, need not be normalised.
      temperature: positive float.
    """
    if temperature <= 0:
        raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature}")
    embeddings = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=-1)
    proxies = tf.math.l2_normalize(tf.cast(proxies, tf.float32), axis=-1)
    return tf.matmul(embeddings, proxies, transpose_b=True) / temperature


def cross_entropy_from_cosine_logits(labels, logits):
    """Per-example softmax cross-entropy of cosine logits (a ``CosineProxy`` output), in float32.

    The loss of Eq. 2 before averaging: the training step sums it over a replica's examples and
    divides by the global batch size; ``normalized_softmax_loss`` takes the mean.

    Args:
      labels: [batch] integer class ids in [0, num_classes).
      logits: [batch, num_classes] cosine logits (already divided by the temperature), any float dtype.

    Returns:
      [batch] float32 losses.
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, tf.float32))


def normalized_softmax_loss(labels, embeddings, proxies, temperature=0.05):
    """Mean softmax cross-entropy of the cosine logits: the paper's training objective.

    Args:
      labels: [batch] integer class ids in [0, num_classes).
      embeddings: [batch, dim] float tensor (L2-normalised inside).
      proxies: [num_classes, dim] float tensor (L2-normalised inside).
      temperature: positive float; 0.05 in the paper.

    Returns:
      Scalar float32 mean loss over the batch.
    """
    return tf.reduce_mean(cross_entropy_from_cosine_logits(labels, cosine_logits(embeddings, proxies, temperature)))


@keras.saving.register_keras_serializable(package="tfmetric")
class NormalizedSoftmaxLoss(keras.losses.Loss):
    """Keras wiring of the normalized softmax loss for ``model.compile``.

    The model's output must be the cosine logits of a ``tfmetric.layers.CosineProxy`` layer (which
    already holds the temperature), so this is softmax cross-entropy on those logits, computed in
    float32 even under mixed precision.
    """

    def __init__(self, name="normalized_softmax_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return cross_entropy_from_cosine_logits(y_true, y_pred)
