"""evaluate_saved_model: the test split through an exported version, scored like training scores it.

Images go in as their original encoded bytes, so the whole serving graph (header checks, decoding,
preprocessing, model, bit packing) is what gets evaluated. Metrics come from
``tfmetric.training.evaluation.score`` with the run's EvalConfig (from ``model_card.json``), in
batches of the run's ``eval_batch_size``: for the same weights the numbers equal the ones training
reported.
"""
import dataclasses
import os

import tensorflow as tf

from tfmetric import config as config_lib
from tfmetric.data.sources import open_source
from tfmetric.export import model_card
from tfmetric.export.binarize import unpack_sign_bits
from tfmetric.export.serving_module import (BINARY_SIGNATURE, BITS_OUTPUT, BYTES_INPUT, DEFAULT_SIGNATURE,
                                            EMBEDDING_OUTPUT)
from tfmetric.training import evaluation


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
    """The ExperimentConfig to evaluate with: the run's (from the card) or the dataset's preset."""
    card_config = card and card.get("config")
    if card_config and dataset in (None, card_config["data"]["dataset"]):
        config = config_lib.ExperimentConfig.from_dict(card_config)
    elif dataset:
        config = config_lib.preset(dataset)
    else:
        raise ValueError("dataset is required: the SavedModel has no model_card.json naming its dataset. "
                         "Received: dataset=None")
    overrides = [f"{field}={value}" for field, value in (("data.data_dir", data_dir), ("data.raw_dir", raw_dir))
                 if value is not None]
    return config_lib.apply_overrides(config, overrides)


def signature_embedder(signature, output):
    """A bytes signature as an ``embedding_fn`` for ``tfmetric.training.evaluation.embed``."""
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
        raise NotADirectoryError(f"model_dir is not a directory; pass saved_models/<name>/<version>. "
                                 f"Received: model_dir={model_dir}")
    card = model_card.read_model_card(model_dir)
    config = resolve_config(card, dataset, data_dir, raw_dir)
    try:
        loaded = tf.saved_model.load(model_dir)
    except OSError as e:
        raise FileNotFoundError(f"model_dir is not a SavedModel directory ({e}). "
                                f"Received: model_dir={model_dir}") from None
    name, output = (BINARY_SIGNATURE, BITS_OUTPUT) if binary else (DEFAULT_SIGNATURE, EMBEDDING_OUTPUT)
    if name not in loaded.signatures:
        raise ValueError(f"The SavedModel has no {name!r} signature (has: {', '.join(loaded.signatures)}). "
                         f"Received: model_dir={model_dir}")
    module, splits = encoded_eval_splits(config.data, batch_size or config.data.eval_batch_size)
    # embed() returns float32; the uint8 bit codes survive that exactly and are cast back below.
    embed_fn = signature_embedder(loaded.signatures[name], output)
    embedded = {split: evaluation.embed(embed_fn, dataset) for split, dataset in splits.items()}
    query, qlabels = embedded[module.QUERY_SPLIT]
    gallery, glabels = embedded.get(module.GALLERY_SPLIT, (None, None))
    if not binary:
        return evaluation.score(query, qlabels, gallery, glabels, config.eval), config
    dim = int(card["embedding_dim"]) if card else query.shape[-1] * 8
    # +-1 vectors with the served bits: score's binary branch packs exactly these bits again.
    query = unpack_sign_bits(query, dim)
    gallery = None if gallery is None else unpack_sign_bits(gallery, dim)
    eval_config = dataclasses.replace(config.eval, binary=True, nmi=False)
    scores = evaluation.score(query, qlabels, gallery, glabels, eval_config)
    return {k: v for k, v in scores.items() if k.startswith("binary/")}, config


def format_metrics(metrics, ks):
    """The lines ``python -m tfmetric.train`` prints for its test metrics."""
    lines = []
    for tag, label in (("", "float "), ("binary/", "binary")):
        if f"{tag}recall@{ks[0]}" in metrics:
            line = "  ".join(f"R@{k} {metrics[f'{tag}recall@{k}']:.4f}" for k in ks)
            line += f"  MAP@R {metrics[f'{tag}map@r']:.4f}"
            if f"{tag}nmi" in metrics:
                line += f"  NMI {metrics[f'{tag}nmi']:.4f}"
            lines.append(f"  {label}: {line}")
    return "\n".join(lines)
