"""``model_card.json``: what an exported version is, how it was trained and how well it retrieves.

Written at the root of the version directory, beside ``saved_model.pb`` (TF Serving ignores it),
by every export (``tfmetric.export``); every consumer requires it. ``python -m tfmetric.evaluate``
reads the training config back from it.
"""

import datetime
import hashlib
import json
import os

import keras
import tensorflow as tf

from tfmetric.export.binarize import packed_width
from tfmetric.export.serving_module import signature_table
from tfmetric.json_file import Artifact

MODEL_CARD = "model_card.json"
CARD_VERSION = 1
MODEL_CARD_FILE = Artifact(
    "model card", MODEL_CARD, "card_version", CARD_VERSION, hint="Export the model again with this tfmetric."
)


def config_hash(config):
    """sha256 of the canonical JSON of an ExperimentConfig: equal configs give equal hashes."""
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_model_card(config, name, dim, normalization, max_pixels, metrics=None, source=None):
    """The card of a model trained with ``config``; ``metrics`` are its test metrics (or None)."""
    m, d = config.model, config.data
    return {
        "card_version": CARD_VERSION,
        "name": name,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dataset": d.dataset,
        "backbone": m.backbone,
        "weights": m.weights,
        "embedding_dim": dim,
        "embedding_bytes": packed_width(dim),
        "temperature": m.temperature,
        "layer_norm": m.layer_norm,
        "preprocessing": {
            "formats": ["jpeg", "png"],
            "max_pixels": int(max_pixels),
            "resize": f"{d.resize_size}x{d.resize_size}, bilinear, antialiased, aspect ratio not kept",
            "crop": f"center {d.image_size}x{d.image_size}",
            "resize_size": d.resize_size,
            "image_size": d.image_size,
            "normalization": normalization,
        },
        "binarization": (
            "bit j = embedding[j] > 0, packed MSB-first like numpy.packbits(x > 0, axis=-1); "
            "the last byte is zero-padded when embedding_dim % 8 != 0"
        ),
        "signatures": {
            sig: {
                "inputs": {k: {"dtype": t, "shape": list(s)} for k, (t, s) in ins.items()},
                "outputs": {k: {"dtype": t, "shape": list(s)} for k, (t, s) in outs.items()},
            }
            for sig, (ins, outs) in signature_table(dim).items()
        },
        "config_sha256": config_hash(config),
        "config": config.to_dict(),
        "test_metrics": metrics,
        "source": os.path.abspath(source) if source else None,
        "software": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }


def write_model_card(directory, card):
    return MODEL_CARD_FILE.write(directory, card)


def read_model_card(model_dir):
    """``model_card.json`` of an exported version (any filesystem).

    Raises:
      FileNotFoundError: ``model_dir`` holds no SavedModel, or one without a card (not exported by
        tfmetric.export).
    """
    if not MODEL_CARD_FILE.exists(model_dir):
        if not tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
            raise FileNotFoundError(
                f"{model_dir}: no saved_model.pb there; pass an exported version, saved_models/<name>/<version>."
            )
        raise FileNotFoundError(
            f"{model_dir}: the SavedModel has no {MODEL_CARD}, so it was not exported by "
            f"tfmetric.export (which always writes one); export the model with "
            f"python -m tfmetric.export."
        )
    return MODEL_CARD_FILE.read(model_dir)


def card_max_pixels(card):
    """The pixel limit the model's serving graph enforces."""
    return int(card["preprocessing"]["max_pixels"])
