"""query_index: one image -> its nearest catalog items, through the SavedModel that embedded the catalog.

Before anything is embedded the index's manifest is compared with the query model's card and
fingerprint: embeddings of a different model (or dimension) are not comparable, so a mismatch is
an error, not a list of meaningless neighbours.
"""
import os
from typing import List, NamedTuple

import tensorflow as tf

from tfmetric.data import image_header
from tfmetric.export import model_card
from tfmetric.search import embedder as embedder_lib
from tfmetric.search import image_source
from tfmetric.search import index as index_lib


class QueryResult(NamedTuple):
    image: str                              # the query's path
    encoded: bytes                          # the bytes the model embedded
    neighbours: List[index_lib.Neighbour]   # best first
    index: index_lib.CatalogIndex


def read_query_image(path, max_pixels=image_header.DEFAULT_MAX_PIXELS):
    """The encoded bytes to embed for the image at ``path`` (other formats re-encoded to JPEG)."""
    try:
        data = image_source.read_image_bytes(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--image {e}") from None
    except ValueError as e:
        raise ValueError(f"--image {e}") from None
    try:
        return image_header.inspect_image(data, max_pixels).encoded
    except image_header.ImageError as e:
        raise ValueError(f"--image {path}: not a usable image ({e.reason}: {e.detail}).") from None


def check_compatible(index, index_dir, identity):
    """Raises ValueError when the model ``identity`` did not produce the index's embeddings."""
    built_with = index.model
    dim = identity["embedding_dim"]
    if int(dim) != index.dim:
        raise ValueError(f"--model {embedder_lib.describe(identity)} gives {dim}-dimensional embeddings, but "
                         f"--index {index_dir} holds {index.dim}-dimensional ones of "
                         f"{embedder_lib.describe(built_with)}; query with that model or rebuild the index.")
    if built_with and not embedder_lib.same_model(built_with, identity):
        raise ValueError(f"--index {index_dir} was built from embeddings of {embedder_lib.describe(built_with)}, "
                         f"but --model is {embedder_lib.describe(identity)}, a different model (other "
                         f"SavedModel fingerprint); embeddings of different models are not comparable. Query "
                         f"with the index's model, or embed the catalog with this one and rebuild the index.")


def query_index(index_dir, model_dir, image, k=10, binary=False, nprobe=None, ef_search=None):
    """The ``k`` nearest catalog items of the image at ``image``.

    Args:
      index_dir: a directory written by ``build_index``.
      model_dir: ``saved_models/<name>/<version>``, the model that embedded the catalog.
      image: path or URI of a JPEG/PNG (other formats PIL reads are re-encoded to JPEG).
      k: neighbours to return (at most the catalog size).
      binary: require a binary index (Hamming search over ``serving_binary`` bits). A binary index
        is always searched with bits, with or without this flag.
      nprobe, ef_search: search-time overrides for IVF / HNSW kinds.
    """
    if k < 1:
        raise ValueError(f"--k must be a positive integer. Received: {k}")
    index = index_lib.load_index(index_dir, nprobe=nprobe, ef_search=ef_search)
    if binary and not index.binary:
        raise ValueError(f"--binary: --index {index_dir} is a float index (kind {index.kind}); build a binary "
                         f"one with --kind binary, binary-ivf or binary-hnsw.")
    if not tf.io.gfile.isdir(model_dir):
        raise NotADirectoryError(f"--model {model_dir}: not a directory; pass saved_models/<name>/<version>.")
    card = model_card.read_model_card(model_dir)
    identity = embedder_lib.model_identity(model_dir, card=card)
    check_compatible(index, index_dir, identity)
    encoded = read_query_image(image, model_card.card_max_pixels(card))

    signature = embedder_lib.BINARY_SIGNATURE if index.binary else embedder_lib.DEFAULT_SIGNATURE
    model = embedder_lib.SavedModelEmbedder(model_dir, signature)
    (result,) = model.embed([encoded])
    if result.error:
        raise ValueError(f"--image {image}: the model cannot decode it ({result.error}).")
    query = result.bits if index.binary else result.embedding
    return QueryResult(os.fspath(image), encoded, index.neighbours(query, k), index)
