"""Loading an exported version with ``tf.saved_model.load`` and finding its signatures by name.

The one loader of ``saved_models/<name>/<version>`` (``tfmetric.search.embedder`` for queries and
the catalog job, ``evaluate_lib`` for evaluation): a directory without ``saved_model.pb``, a
SavedModel whose files are cut short and a missing signature each get an error naming the
directory. Beam's built-in TensorFlow handlers load through Keras and fail on Keras 3 SavedModels
(ARCHITECTURE.md, "Stack"), hence ``tf.saved_model.load``.
"""

import os

import tensorflow as tf

SAVED_MODEL_FILE = "saved_model.pb"


def _first_line(error):
    return (str(getattr(error, "message", error)).splitlines() or [type(error).__name__])[0]


def load_saved_model(model_dir):
    """The loaded SavedModel at ``model_dir`` (any filesystem TensorFlow reads, e.g. gs://).

    Raises:
      FileNotFoundError: ``model_dir`` holds no ``saved_model.pb``.
      ValueError: the SavedModel's files are truncated or corrupt.
    """
    if not tf.io.gfile.exists(os.path.join(model_dir, SAVED_MODEL_FILE)):
        raise FileNotFoundError(
            f"model_dir has no {SAVED_MODEL_FILE}; pass an exported version, "
            f"saved_models/<name>/<version>. Received: model_dir={model_dir}"
        )
    try:
        return tf.saved_model.load(model_dir)
    except (
        tf.errors.DataLossError,
        tf.errors.OutOfRangeError,
        tf.errors.InvalidArgumentError,
        IndexError,
        OSError,
    ) as e:  # a truncated variables file: "Read less bytes than requested"
        raise ValueError(
            f"The SavedModel cannot be loaded ({_first_line(e)}); its files may be truncated: "
            f"export it again. Received: model_dir={model_dir}"
        ) from None


def signature(loaded, name, model_dir):
    """The concrete function of signature ``name`` of a loaded SavedModel; ValueError when it has none."""
    if name not in loaded.signatures:
        raise ValueError(
            f"The SavedModel has no {name!r} signature (has: {', '.join(loaded.signatures)}). "
            f"Received: model_dir={model_dir}"
        )
    return loaded.signatures[name]
