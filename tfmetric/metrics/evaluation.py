"""Evaluation on held-out classes: embed a split, score retrieval (float cosine, binary Hamming), print.

The project's one evaluation: the trainer scores its model with it, ``tfmetric.export.evaluate_lib``
an exported SavedModel's signatures (so both report the same numbers for the same weights), and
every command prints scores with ``format_scores``.
"""

import numpy as np
import tensorflow as tf

from tfmetric.metrics.nmi import nmi
from tfmetric.metrics.retrieval import retrieval_metrics
from tfmetric.progress import Progress


def embed(embedding_fn, dataset, label="embedding", total=None, verbose=0):
    """Runs ``embedding_fn`` over ``(images, labels)`` batches -> (float32 [n, d], int64 [n]).

    With ``verbose`` (see ``tfmetric.progress``), a long pass reports ``label``: done/``total``.
    """
    embeddings, labels = [], []
    progress, done = Progress(label, total, verbose), 0
    for images, y in dataset:
        embeddings.append(np.asarray(embedding_fn(images), np.float32))
        labels.append(np.asarray(y))
        done += len(labels[-1])
        progress.update(done)
    progress.close(done)
    if not embeddings:
        raise ValueError("Cannot evaluate an empty split.")
    return np.concatenate(embeddings), np.concatenate(labels).astype(np.int64)


def compiled_embedder(embedding_model):
    """A traced inference function (no retracing per batch, BatchNorm in inference mode)."""

    @tf.function(reduce_retracing=True)
    def fn(images):
        return embedding_model(images, training=False)

    return fn


def score(query, query_labels, gallery=None, gallery_labels=None, eval_config=None, prefix=""):
    """Float metrics (and binary and NMI when configured) as a flat dict of python floats.

    Keys: ``recall@K``, ``map@r``, ``r_precision``, ``nmi`` for float embeddings and the same with a
    ``binary/`` prefix for sign bits ranked by Hamming distance.
    """
    ks = tuple(eval_config.recall_ks)
    out = {}
    for binary in (False, True) if eval_config.binary else (False,):
        result = retrieval_metrics(query, query_labels, gallery, gallery_labels, ks=ks, binary=binary)
        tag = "binary/" if binary else ""
        out.update({f"{prefix}{tag}{k}": float(v) for k, v in result.items()})
    if eval_config.nmi:
        pool = query if gallery is None else np.concatenate([query, gallery])
        pool_labels = query_labels if gallery is None else np.concatenate([query_labels, gallery_labels])
        out[f"{prefix}nmi"] = float(nmi(pool, pool_labels))
    return out


def format_scores(scores, ks, indent="  "):
    """The lines every command prints for ``score``'s dict: float, then binary when present.

    ``  float : R@1 0.5000  R@2 0.7500  MAP@R 0.2500  NMI 0.6000`` (NMI when scored), then the
    same for the ``binary/`` keys; a kind whose ``recall@<ks[0]>`` is absent is left out.
    """
    lines = []
    for tag, label in (("", "float "), ("binary/", "binary")):
        if f"{tag}recall@{ks[0]}" in scores:
            line = "  ".join(f"R@{k} {scores[f'{tag}recall@{k}']:.4f}" for k in ks)
            line += f"  MAP@R {scores[f'{tag}map@r']:.4f}"
            if f"{tag}nmi" in scores:
                line += f"  NMI {scores[f'{tag}nmi']:.4f}"
            lines.append(f"{indent}{label}: {line}")
    return "\n".join(lines)


def flatten_pixels(images):
    """The raw-pixel "embedding": the network's input (preprocessed image) flattened, L2-normalised.

    Ranking these by cosine similarity is the raw-pixel retrieval baseline the demo prints.
    """
    flat = tf.reshape(tf.cast(images, tf.float32), [tf.shape(images)[0], -1])
    return tf.math.l2_normalize(flat, axis=1)
