"""Normalized mutual information between k-means clusters of the embeddings and the class labels,
computed as the official evaluation script does.

The official code (github.com/azgo14/classification_metric_learning, ``evaluation/nmi.py``,
``test_nmi_faiss``) clusters the embeddings with ``faiss.Clustering`` into as many clusters as
there are distinct labels, with ``niter = 300``, ``nredo = 10`` (ten runs from random
initialisations, the one of lowest k-means objective kept) and ``seed = 0``, assigns each
embedding to its nearest centroid (L2) and scores the assignment with scikit-learn's
``normalized_mutual_info_score`` (arithmetic-mean normalisation). This module does the same on
the CPU (``faiss.IndexFlatL2`` instead of the GPU index; same algorithm). Embeddings are
L2-normalised first, as the official featurizer's outputs are.
"""

import numbers

import faiss
import numpy as np

from tfmetric.metrics import knn

KMEANS_ITERATIONS = 300  # the official script's faiss.Clustering settings
KMEANS_REDOS = 10


def kmeans_assignments(embeddings, num_clusters, seed=0):
    """int64 [n]: the nearest centroid of each row after faiss k-means with the official settings."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    d = x.shape[1]
    clustering = faiss.Clustering(d, int(num_clusters))
    clustering.niter, clustering.nredo, clustering.seed = KMEANS_ITERATIONS, KMEANS_REDOS, int(seed)
    clustering.verbose = False
    clustering.min_points_per_centroid = 1  # only silences faiss's "too few points" warning
    index = faiss.IndexFlatL2(d)
    clustering.train(x, index)
    _, nearest = index.search(x, 1)
    return nearest[:, 0].astype(np.int64)


def nmi(embeddings, labels, seed=0):
    """NMI of k-means clusters (as many clusters as distinct labels) against ``labels``.

    The clustering metric reported next to Recall@K in the paper (Zhai & Wu, BMVC 2019, tables
    of NMI), computed as the official script does (module doc). Cost grows with
    ``n * num_classes * d * 300 * 10``: seconds for CUB or Cars, long for SOP's 11k classes.

    Args:
      embeddings: ``[n, d]`` real-valued embeddings (numpy array or eager tensor).
      labels: ``[n]`` class labels of any comparable dtype.
      seed: the k-means seed (the official script uses 0); deterministic for a given seed.

    Returns:
      python float in [0, 1].
    """
    x = np.asarray(embeddings)
    labels = np.asarray(labels)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"embeddings must be a non-empty 2-D array [num_items, dim]. Received: embeddings with shape {x.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(x):
        raise ValueError(
            f"labels must be 1-D with one label per row of embeddings ({len(x)}). "
            f"Received: labels with shape {labels.shape}"
        )
    if not np.isfinite(x).all():
        raise ValueError("embeddings contains NaN or infinite values.")
    if not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer. Received: seed={seed}")

    # Imported here: scikit-learn takes about a second to import and only NMI needs it.
    from sklearn.metrics import normalized_mutual_info_score

    clusters = kmeans_assignments(knn.l2_normalize(x), len(np.unique(labels)), seed)
    # Clipped: identical partitions can come out as 1.0000000000000002.
    return float(np.clip(normalized_mutual_info_score(labels, clusters), 0.0, 1.0))
