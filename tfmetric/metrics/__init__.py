"""Retrieval metrics (Recall@K, MAP@R, R-precision; float cosine and binary Hamming) and NMI."""

from tfmetric.metrics.knn import pack_bits
from tfmetric.metrics.nmi import nmi
from tfmetric.metrics.retrieval import retrieval_metrics

__all__ = ["nmi", "pack_bits", "retrieval_metrics"]
