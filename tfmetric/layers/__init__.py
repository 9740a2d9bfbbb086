"""Keras layers of the method; all serializable (registered under the ``tfmetric`` package)."""

from tfmetric.layers.cosine_proxy import CosineProxy

__all__ = ["CosineProxy"]
