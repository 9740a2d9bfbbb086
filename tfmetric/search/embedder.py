"""An exported version's serving signature as a Python callable over encoded images, and its identity.

``SavedModelEmbedder`` loads ``saved_models/<name>/<version>`` (``tfmetric.export.loader``) and
calls a signature by name. It is the model of the catalog job's RunInference ``ModelHandler`` (one
per worker process) and embeds query images for ``tfmetric.search``. Beam's built-in TensorFlow
handlers load through Keras and fail on Keras 3 SavedModels (ARCHITECTURE.md, "Stack").

By the serving contract one undecodable image fails its whole batch with InvalidArgument; the
embedder then retries that batch image by image, so only the bad images fail and each failure
names its reason.

``model_identity`` says which model produced a set of embeddings: embeddings of two different
models are not comparable, and an index remembers the identity to refuse queries from another model.
"""

import copy
import os
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfmetric.export.loader import load_saved_model
from tfmetric.export.loader import signature as find_signature
from tfmetric.export.model_card import read_model_card
from tfmetric.export.serving_module import (
    BINARY_SIGNATURE,
    BITS_OUTPUT,
    BYTES_INPUT,
    DEFAULT_SIGNATURE,
    EMBEDDING_OUTPUT,
)
from tfmetric.metrics.knn import pack_bits

EMBED_SIGNATURES = (DEFAULT_SIGNATURE, BINARY_SIGNATURE)
# The failure reason of an image the serving graph rejects (see tfmetric.data.image_header.REASONS
# for the reasons found before the model).
MODEL_REJECTED = "model_rejected"


class EmbedResult(NamedTuple):
    """One image's outputs: ``embedding`` float32 [D] (None from ``serving_binary``), ``bits`` uint8
    [ceil(D/8)] packed MSB-first; or ``error`` (a one-line message) and both None."""

    embedding: np.ndarray | None
    bits: np.ndarray | None
    error: str | None = None


def _first_line(error):
    text = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class SavedModelEmbedder:
    """Calls ``signature`` of the SavedModel at ``model_dir`` on lists of encoded JPEG/PNG bytes.

    Args:
      model_dir: ``saved_models/<name>/<version>`` (any filesystem TensorFlow reads, e.g. gs://).
      signature: ``serving_default`` (float embeddings; the bits are packed here with
        ``numpy.packbits``, the layout of ``serving_binary``) or ``serving_binary`` (bits only).
    """

    def __init__(self, model_dir, signature=DEFAULT_SIGNATURE):
        if signature not in EMBED_SIGNATURES:
            raise ValueError(
                f"signature must be one of {', '.join(EMBED_SIGNATURES)}. Received: signature={signature!r}"
            )
        self.model_dir = model_dir
        self._loaded = load_saved_model(model_dir)  # keeps the variables alive
        self._bind(signature)

    def _bind(self, signature):
        self._fn = find_signature(self._loaded, signature, self.model_dir)
        self.signature = signature
        self.binary = signature == BINARY_SIGNATURE
        self._output = BITS_OUTPUT if self.binary else EMBEDDING_OUTPUT

    def with_signature(self, signature):
        """An embedder of another signature of the same loaded SavedModel (loaded once, shared)."""
        if signature not in EMBED_SIGNATURES:
            raise ValueError(
                f"signature must be one of {', '.join(EMBED_SIGNATURES)}. Received: signature={signature!r}"
            )
        other = copy.copy(self)
        other._bind(signature)
        return other

    @property
    def output_width(self):
        """D (floats) for ``serving_default``, ceil(D/8) (bytes) for ``serving_binary``."""
        return int(self._fn.structured_outputs[self._output].shape[-1])

    def _call(self, encoded):
        out = self._fn(**{BYTES_INPUT: tf.constant(encoded, tf.string)})[self._output].numpy()
        if self.binary:
            return [EmbedResult(None, row) for row in out]
        bits = pack_bits(out)
        return [EmbedResult(e, b) for e, b in zip(out, bits)]

    def embed(self, encoded):
        """list of encoded images -> list of EmbedResult, in order; never raises for a bad image."""
        encoded = list(encoded)
        if not encoded:
            return []
        try:
            return self._call(encoded)
        except tf.errors.InvalidArgumentError as batch_error:
            if len(encoded) == 1:
                return [EmbedResult(None, None, _first_line(batch_error))]
        return [result for item in encoded for result in self.embed([item])]

    def __call__(self, encoded):
        return self.embed(encoded)


def _checksum(model_dir):
    try:
        return str(tf.saved_model.experimental.read_fingerprint(model_dir).saved_model_checksum)
    except (ValueError, OSError, tf.errors.OpError):  # exported before fingerprints existed
        return None


def _absolute(path):
    return path if "://" in path else os.path.abspath(path)


def model_identity(model_dir, card=None):
    """What the embeddings of ``model_dir`` are comparable with.

    Returns a dict: ``path`` (absolute, or the URI), ``name`` and ``version`` (from
    ``<name>/<version>``), ``embedding_dim``, ``config_sha256`` and ``created`` (from the model
    card), ``saved_model_checksum`` (the SavedModel fingerprint, equal for copies of the same
    version wherever they live). ``card``: the model card when the caller has read it already
    (default: read here; a SavedModel without one is refused, see ``read_model_card``).
    """
    path = _absolute(model_dir.rstrip("/"))
    card = read_model_card(model_dir) if card is None else card
    base = os.path.basename(path)
    return {
        "path": path,
        "name": card.get("name") or os.path.basename(os.path.dirname(path)),
        "version": int(base) if base.isdigit() else None,
        "embedding_dim": int(card["embedding_dim"]),
        "config_sha256": card.get("config_sha256"),
        "created": card.get("created"),
        "saved_model_checksum": _checksum(model_dir),
    }


def describe(identity):
    """``name/version (path)`` for messages."""
    version = identity.get("version")
    return f"{identity.get('name')}/{version if version is not None else '?'} ({identity.get('path')})"


def same_model(a, b):
    """Whether two identities are the same model: equal fingerprints when both have one, else the
    same path and training config."""
    if a.get("saved_model_checksum") and b.get("saved_model_checksum"):
        return a["saved_model_checksum"] == b["saved_model_checksum"]
    return a.get("path") == b.get("path") and a.get("config_sha256") == b.get("config_sha256")
