"""Normalized mutual information between k-means clusters of the embeddings and the class labels."""
import numbers

import numpy as np

from tfmetric.metrics import knn


def nmi(embeddings, labels, seed=0):
    """NMI of k-means clusters (as many clusters as distinct labels) against ``labels``.

    The clustering metric reported next to Recall@K in the deep metric learning literature (e.g.
    Zhai & Wu, BMVC 2019). Embeddings are L2-normalised first, the geometry the cosine
    ranking uses. Clustering is scikit-learn's ``KMeans`` with k-means++ initialisation (one run,
    its default convergence test), scored with ``normalized_mutual_info_score`` (arithmetic-mean
    normalisation), as in most public evaluation code. faiss k-means was not used: its random
    initialisation often merges well-separated classes when there are few of them.
    Cost grows with ``n * num_classes * d``: seconds for CUB or Cars, many minutes for SOP's 11k
    classes.

    Args:
      embeddings: ``[n, d]`` real-valued embeddings (numpy array or eager tensor).
      labels: ``[n]`` class labels of any comparable dtype.
      seed: k-means initialisation seed; the result is deterministic for a given seed.

    Returns:
      python float in [0, 1].
    """
    x = np.asarray(embeddings)
    labels = np.asarray(labels)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"embeddings must be a non-empty 2-D array [num_items, dim]. "
                         f"Received: embeddings with shape {x.shape}")
    if labels.ndim != 1 or len(labels) != len(x):
        raise ValueError(f"labels must be 1-D with one label per row of embeddings ({len(x)}). "
                         f"Received: labels with shape {labels.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contains NaN or infinite values.")
    if not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer. Received: seed={seed}")

    # Imported here: scikit-learn takes about a second to import and only NMI needs it.
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    num_clusters = len(np.unique(labels))
    kmeans = KMeans(n_clusters=num_clusters, init="k-means++", n_init=1, random_state=int(seed))
    clusters = kmeans.fit_predict(knn.l2_normalize(x))
    # Clipped: identical partitions can come out as 1.0000000000000002.
    return float(np.clip(normalized_mutual_info_score(labels, clusters), 0.0, 1.0))
