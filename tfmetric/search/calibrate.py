"""Match thresholds: the cosine and Hamming cut-offs at which a neighbour counts as the same class.

On held-out labelled images (classes the index's catalog need not contain) every pair, or a
seeded sample of ``max_pairs`` pairs, is scored by cosine similarity of the float embeddings and
by Hamming distance of their sign bits. A pair is a true match when both images have the same
label. For each score the cut-off is the loosest one whose predicted matches (cosine >= t, or
Hamming <= h) reach the target precision, i.e. the one with the highest recall at that
precision; ties are never split (a cut-off predicts every pair of its score). The result is stored
under ``match`` in the index manifest, where ``tfmetric.serve`` reads it to mark each neighbour.

    python -m tfmetric.search calibrate --index indexes/products/3 --model saved_models/products/3 \\
        --dataset cars196 --split test --precision 0.9
"""

import datetime

import numpy as np

from tfmetric.data.sources import open_source
from tfmetric.export import evaluate_lib, model_card
from tfmetric.metrics.knn import pack_bits
from tfmetric.search import embedder as embedder_lib
from tfmetric.search import index as index_lib
from tfmetric.search.query import check_compatible

MAX_PAIRS = 2_000_000
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1).astype(np.uint16)
_CHUNK = 200_000


def sample_pairs(n, max_pairs=MAX_PAIRS, seed=0):
    """(i, j) int64 arrays: every pair i < j of ``n`` items, or ``max_pairs`` seeded distinct-item pairs."""
    if n < 2:
        raise ValueError(f"Calibration needs at least 2 labelled images. Received: {n}")
    if n * (n - 1) // 2 <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        return i.astype(np.int64), j.astype(np.int64)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, max_pairs)
    j = (i + rng.integers(1, n, max_pairs)) % n  # never i itself
    return i, j


def hamming_distances(a, b):
    """Hamming distance of rows of packed bits a[p] and b[p] (uint8 [p, B]) -> int [p]."""
    out = np.empty(len(a), np.int64)
    for s in range(0, len(a), _CHUNK):
        out[s : s + _CHUNK] = _POPCOUNT[np.bitwise_xor(a[s : s + _CHUNK], b[s : s + _CHUNK])].sum(1)
    return out


def threshold_for_precision(scores, same, precision, higher_is_closer=True):
    """The loosest cut-off whose predicted matches reach ``precision``.

    Args:
      scores: [p] pair scores; same: [p] bool, whether the pair shares a label.
      precision: target precision in (0, 1].
      higher_is_closer: True for cosine (predict ``score >= t``), False for Hamming (``score <= t``).

    Returns:
      dict ``threshold``, ``precision``, ``recall`` (of the true pairs), ``predicted`` (pairs).
    """
    if not 0 < precision <= 1:
        raise ValueError(f"precision must be in (0, 1]. Received: precision={precision}")
    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    positives = int(same.sum())
    if positives == 0:
        raise ValueError("No pair of the labelled images shares a label: nothing to calibrate on.")
    order = np.argsort(-scores if higher_is_closer else scores, kind="stable")
    sorted_scores, hits = scores[order], np.cumsum(same[order])
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])  # last pair of each tie group
    reached = hits[ends] / (ends + 1) >= precision - 1e-12
    if not reached.any():
        best = int(np.argmax(hits[ends] / (ends + 1)))
        end = ends[best]
        raise ValueError(
            f"No cut-off reaches precision {precision}: the best is {hits[end] / (end + 1):.4f} "
            f"at {sorted_scores[end]:g}; lower the target precision."
        )
    end = ends[np.flatnonzero(reached)[-1]]
    return {
        "threshold": float(sorted_scores[end]),
        "precision": float(hits[end] / (end + 1)),
        "recall": float(hits[end] / positives),
        "predicted": int(end + 1),
    }


def match_thresholds(embeddings, labels, precision=0.9, max_pairs=MAX_PAIRS, seed=0):
    """Cosine and Hamming cut-offs at ``precision`` on the pairs of labelled float embeddings [n, D]."""
    embeddings = np.asarray(embeddings, np.float32)
    labels = np.asarray(labels)
    if embeddings.ndim != 2 or len(embeddings) != len(labels):
        raise ValueError(
            f"embeddings must be [n, D] with one label each. Received: embeddings "
            f"{embeddings.shape}, labels {labels.shape}"
        )
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    i, j = sample_pairs(len(unit), max_pairs, seed)
    same = labels[i] == labels[j]
    cosine = np.concatenate(
        [np.einsum("pd,pd->p", unit[i[s : s + _CHUNK]], unit[j[s : s + _CHUNK]]) for s in range(0, len(i), _CHUNK)]
    )
    bits = pack_bits(unit)
    return {
        "target_precision": float(precision),
        "pairs": int(len(i)),
        "positive_pairs": int(same.sum()),
        "images": int(len(unit)),
        "classes": int(len(np.unique(labels))),
        "cosine": threshold_for_precision(cosine, same, precision, higher_is_closer=True),
        "hamming": threshold_for_precision(
            hamming_distances(bits[i], bits[j]), same, precision, higher_is_closer=False
        ),
    }


def embed_split(model_dir, split, dataset=None, data_dir=None, batch_size=64):
    """(float32 [n, D], int64 [n]): a dataset split through the model's ``serving_default``."""
    card = model_card.read_model_card(model_dir)
    config = evaluate_lib.resolve_config(card, dataset, data_dir)
    source, module = open_source(config.data)
    if split not in module.SPLITS:
        raise ValueError(
            f"split must be one of {', '.join(module.SPLITS)} for dataset "
            f"{config.data.dataset}. Received: split={split!r}"
        )
    model = embedder_lib.SavedModelEmbedder(model_dir)
    embeddings, labels = [], []
    for image_bytes, y in source.raw_dataset(split).batch(batch_size):
        for result in model.embed(list(image_bytes.numpy())):
            if result.error:
                raise ValueError(
                    f"The model cannot embed an image of the split ({result.error}). Received: split={split}"
                )
            embeddings.append(result.embedding)
        labels.append(y.numpy())
    if not embeddings:
        raise ValueError(f"The split is empty. Received: split={split}, dataset={config.data.dataset}")
    return np.stack(embeddings), np.concatenate(labels), f"{config.data.dataset}/{split}"


def calibrate_index(index_dir, embeddings, labels, precision=0.9, max_pairs=MAX_PAIRS, seed=0, source=None):
    """Computes ``match_thresholds`` and stores them under ``match`` in the index manifest (atomically)."""
    manifest = index_lib.read_index_manifest(index_dir)
    if np.shape(embeddings)[-1] != int(manifest["dim"]):
        raise ValueError(
            f"The index holds {manifest['dim']}-dimensional embeddings; the labelled embeddings "
            f"are {np.shape(embeddings)[-1]}-dimensional. Received: index_dir={index_dir}"
        )
    match = match_thresholds(embeddings, labels, precision, max_pairs, seed)
    match.update(
        source=source, seed=int(seed), created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    )
    manifest["match"] = match
    index_lib.write_index_manifest(index_dir, manifest)
    return match


def calibrate_with_model(index_dir, model_dir, split, dataset=None, data_dir=None, **kwargs):
    """``calibrate_index`` on a split embedded by ``model_dir``, the model that embedded the catalog."""
    index = index_lib.load_index(index_dir)
    check_compatible(index, index_dir, embedder_lib.model_identity(model_dir))
    embeddings, labels, source = embed_split(model_dir, split, dataset, data_dir)
    return calibrate_index(index_dir, embeddings, labels, source=source, **kwargs)


def read_labelled(path):
    """(embeddings, labels) from an ``.npz`` with arrays ``embeddings`` [n, D] and ``labels`` [n]."""
    try:
        with np.load(path) as data:
            return np.asarray(data["embeddings"], np.float32), np.asarray(data["labels"])
    except FileNotFoundError:
        raise FileNotFoundError(f"No such file. Received: path={path}") from None
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"Not an .npz with arrays 'embeddings' and 'labels' ({e}). Received: path={path}") from None
