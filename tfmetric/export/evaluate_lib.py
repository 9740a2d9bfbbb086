"""evaluate_saved_model: the test split through an exported version, scored like training scores it.

Images go in as their original encoded bytes, so the whole serving graph (header checks, decoding,
preprocessing, model, bit packing) is what gets evaluated. Metrics come from
``tfmetric.metrics.evaluation.score`` with the run's EvalConfig (from ``model_card.json``), in
batches of the run's ``eval_batch_size``: for the same weights the numbers equal the ones training
reported.
"""

import dataclasses
import os

from tfmetric import config as config_lib
from tfmetric.data.sources import open_source
from tfmetric.export import loader, model_card
from tfmetric.export.binarize import unpack_sign_bits
from tfmetric.export.serving_module import (
    BINARY_SIGNATURE,
    BITS_OUTPUT,
    BYTES_INPUT,
    DEFAULT_SIGNATURE,
    EMBEDDING_OUTPUT,
)
from tfmetric.metrics import evaluation


def encoded_eval_splits(data_config, batch_size):
    """(dataset module, {split: dataset of (image_bytes [B], labels [B]) batches}) to evaluate.

    The one place this module reads data: the query (and gallery) split of the source training
    evaluates (``open_source``: the dataset's TFRecords, built first if missing), in the same file
    order, as the original encoded bytes.
    """
    source, module = open_source(data_config)
    splits = [s for s in (module.QUERY_SPLIT, module.GALLERY_SPLIT) if s]
    return module, {s: source.raw_dataset(s).batch(batch_size) for s in splits}


def resolve_config(card, dataset=None, data_dir=None, raw_dir=None):
    """The ExperimentConfig to evaluate with: the run's (from the card), or the preset of another
    ``dataset``."""
    if dataset in (None, card["config"]["data"]["dataset"]):
        config = config_lib.ExperimentConfig.from_dict(card["config"])
    else:
        config = config_lib.preset(dataset)
    overrides = [
        f"{field}={value}"
        for field, value in (("data.data_dir", data_dir), ("data.raw_dir", raw_dir))
        if value is not None
    ]
    return config_lib.apply_overrides(config, overrides)


def signature_embedder(signature, output):
    """A bytes signature as an ``embedding_fn`` for ``tfmetric.metrics.evaluation.embed``."""

    def embed(image_bytes):
        return signature(**{BYTES_INPUT: image_bytes})[output]

    return embed


def evaluate_saved_model(model_dir, dataset=None, data_dir=None, raw_dir=None, binary=False, batch_size=None):
    """Metrics of the SavedModel version ``model_dir`` on the dataset's held-out classes.

    Args:
      model_dir: ``saved_models/<name>/<version>``.
      dataset: dataset name; default the one in the model card.
      data_dir, raw_dir: where the dataset lives (defaults as in training).
      binary: embed through ``serving_binary`` and report the Hamming metrics of its bits
        (``binary/recall@K``, ``binary/map@r``, ``binary/r_precision``); otherwise embed through
        ``serving_default`` and report everything training reports (float, binary of the float
        embeddings' signs and NMI, as the run's EvalConfig says).
      batch_size: images per request; default the run's ``eval_batch_size``.

    Returns:
      (metrics dict of python floats, the ExperimentConfig used).
    """
    if not os.path.isdir(model_dir):
        raise NotADirectoryError(
            f"model_dir is not a directory; pass saved_models/<name>/<version>. Received: model_dir={model_dir}"
        )
    card = model_card.read_model_card(model_dir)
    config = resolve_config(card, dataset, data_dir, raw_dir)
    name, output = (BINARY_SIGNATURE, BITS_OUTPUT) if binary else (DEFAULT_SIGNATURE, EMBEDDING_OUTPUT)
    function = loader.signature(loader.load_saved_model(model_dir), name, model_dir)
    module, splits = encoded_eval_splits(config.data, batch_size or config.data.eval_batch_size)
    # embed() returns float32; the uint8 bit codes survive that exactly and are cast back below.
    embed_fn = signature_embedder(function, output)
    embedded = {split: evaluation.embed(embed_fn, dataset) for split, dataset in splits.items()}
    query, qlabels = embedded[module.QUERY_SPLIT]
    gallery, glabels = embedded.get(module.GALLERY_SPLIT, (None, None))
    if not binary:
        return evaluation.score(query, qlabels, gallery, glabels, config.eval), config
    dim = int(card["embedding_dim"])
    # +-1 vectors with the served bits: score's binary branch packs exactly these bits again.
    query = unpack_sign_bits(query, dim)
    gallery = None if gallery is None else unpack_sign_bits(gallery, dim)
    eval_config = dataclasses.replace(config.eval, binary=True, nmi=False)
    scores = evaluation.score(query, qlabels, gallery, glabels, eval_config)
    return {k: v for k, v in scores.items() if k.startswith("binary/")}, config
