"""SavedModel export for TF Serving: float and sign-binarized embedding signatures.

    from tfmetric.export import export_from_workdir
    path = export_from_workdir("runs/cars196/20260101-120000")   # saved_models/cars196/<version>

``serving_module`` defines the signatures, ``image_guard`` the checks on untrusted bytes,
``binarize`` the bit packing, ``writer`` versioning and the atomic rename, ``warmup`` TF Serving's
warmup requests, ``model_card`` the card, ``export_lib`` the two export functions and
``evaluate_lib`` the evaluation of an exported version. Names are imported lazily so that
``python -m tfmetric.export --help`` (and the CLI's logging setup) run before TensorFlow loads.
"""

from tfmetric.lazy_exports import lazy_exports

_EXPORTS = {
    "export_saved_model": "export_lib",
    "export_from_workdir": "export_lib",
    "DEFAULT_OUTPUT_DIR": "export_lib",
    "pack_sign_bits": "binarize",
    "packed_width": "binarize",
    "unpack_sign_bits": "binarize",
    "MODEL_CARD": "model_card",
    "read_model_card": "model_card",
    "build_serving_archive": "serving_module",
    "SIGNATURES": "serving_module",
    "DEFAULT_SIGNATURE": "serving_module",
    "BINARY_SIGNATURE": "serving_module",
    "IMAGES_SIGNATURE": "serving_module",
    "BYTES_INPUT": "serving_module",
    "IMAGES_INPUT": "serving_module",
    "EMBEDDING_OUTPUT": "serving_module",
    "BITS_OUTPUT": "serving_module",
    "evaluate_saved_model": "evaluate_lib",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
