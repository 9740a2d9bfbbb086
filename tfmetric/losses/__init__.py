"""Losses: the normalized softmax loss as a pure function and a thin keras.losses.Loss."""

from tfmetric.losses.normalized_softmax import (
    NormalizedSoftmaxLoss,
    cosine_logits,
    cross_entropy_from_cosine_logits,
    normalized_softmax_loss,
)

__all__ = ["NormalizedSoftmaxLoss", "cosine_logits", "cross_entropy_from_cosine_logits", "normalized_softmax_loss"]
