"""export_saved_model / export_from_workdir: a trained embedding model -> a TF Serving version.

saved_models/<name>/<version>/
  saved_model.pb, variables/          three signatures (see serving_module.py), tag "serve"
  assets.extra/tf_serving_warmup_requests
  model_card.json                     dataset, backbone, dim, preprocessing, config hash, metrics
"""

import os

import keras

from tfmetric import config as config_lib
from tfmetric.export import image_guard, model_card, warmup, writer
from tfmetric.export.serving_module import build_serving_archive
from tfmetric.json_file import read_json
from tfmetric.models.backbones import backbone_preprocessing

DEFAULT_OUTPUT_DIR = "saved_models"


def export_saved_model(
    embedding_model, config, output_dir=DEFAULT_OUTPUT_DIR, name=None, metrics=None, *, max_pixels=None, source=None
):
    """Writes the next version of ``<output_dir>/<name>`` atomically and returns its directory.

    Args:
      embedding_model: Keras model, preprocessed images -> L2-normalised embeddings.
      config: the ExperimentConfig it was trained with (preprocessing, model card).
      output_dir: TF Serving's base path; the model lives in ``<output_dir>/<name>/<version>``.
      name: model name; default ``config.data.dataset``.
      metrics: the run's test metrics, copied into the model card.
      max_pixels: encoded images declaring more pixels are rejected with InvalidArgument; default
        derived from the model's resize_size (``image_guard.default_max_pixels``).
      source: the training workdir, recorded in the model card.
    """
    name = writer.check_model_name(name or config.data.dataset)
    d = config.data
    if max_pixels is None:
        max_pixels = image_guard.default_max_pixels(d.resize_size)
    normalization = backbone_preprocessing(config.model.backbone, config.model.weights)
    dim = int(embedding_model.output_shape[-1])
    archive = build_serving_archive(embedding_model, d.image_size, d.resize_size, normalization, max_pixels)
    card = model_card.build_model_card(config, name, dim, normalization, max_pixels, metrics, source)

    def write(tmp):
        archive.write_out(tmp, verbose=False)
        warmup.write_warmup_requests(os.path.join(tmp, warmup.WARMUP_FILE), name, warmup.default_requests(d.image_size))
        model_card.write_model_card(tmp, card)

    return writer.write_version(os.path.join(output_dir, name), write)


def _require(workdir, name):
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: workdir must be a finished training run "
            f"(train_and_evaluate writes {name} at its end). Received: workdir={workdir}"
        )
    return path


def export_from_workdir(workdir, output_dir=DEFAULT_OUTPUT_DIR, name=None, *, max_pixels=None):
    """Exports ``<workdir>/embedding_model.keras`` with the run's config.json and test metrics."""
    if not os.path.isdir(workdir):
        raise NotADirectoryError(f"workdir is not a directory. Received: workdir={workdir}")
    config = config_lib.ExperimentConfig.from_dict(read_json(_require(workdir, "config.json")))
    model_path = _require(workdir, "embedding_model.keras")
    metrics = None
    metrics_path = os.path.join(workdir, "metrics.json")
    if os.path.exists(metrics_path):
        metrics = read_json(metrics_path).get("test")
    import tfmetric.layers  # noqa: F401  registers the custom layers for deserialisation

    try:
        embedding_model = keras.models.load_model(model_path, compile=False)
    except (ValueError, OSError) as e:  # Keras calls a corrupt archive "File not found"
        raise ValueError(
            f"{model_path} exists but is not a readable .keras model "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); it may be truncated: "
            f"rerun the training in {workdir} or export another run."
        ) from None
    return export_saved_model(embedding_model, config, output_dir, name, metrics, max_pixels=max_pixels, source=workdir)
