"""query_index: one image -> its nearest catalog items, through the SavedModel that embedded the catalog.

Before anything is embedded the index's manifest is compared with the query model's card and
fingerprint: embeddings of a different model (or dimension) are not comparable, so a mismatch is
an error, not a list of meaningless neighbours.
"""

import os
from typing import NamedTuple

import tensorflow as tf

from tfmetric.data import image_header
from tfmetric.export import model_card
from tfmetric.search import embedder as embedder_lib
from tfmetric.search import image_source
from tfmetric.search import index as index_lib


class QueryResult(NamedTuple):
    image: str  # the query's path
    encoded: bytes  # the bytes the model embedded
    neighbours: list[index_lib.Neighbour]  # best first
    index: index_lib.CatalogIndex


def read_query_image(path, max_pixels=image_header.DEFAULT_MAX_PIXELS):
    """The encoded bytes to embed for the image at ``path`` (other formats re-encoded to JPEG)."""
    try:
        data = image_source.read_image_bytes(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"No such image file. Received: image={path}") from None
    except ValueError as e:
        raise ValueError(f"The image cannot be read ({e}). Received: image={path}") from None
    try:
        return image_header.inspect_image(data, max_pixels).encoded
    except image_header.ImageError as e:
        raise ValueError(f"Not a usable image ({e.reason}: {e.detail}). Received: image={path}") from None


def check_compatible(index, index_dir, identity):
    """Raises ValueError when the model ``identity`` did not produce the index's embeddings."""
    built_with = index.model
    dim = identity["embedding_dim"]
    if int(dim) != index.dim:
        raise ValueError(
            f"The model {embedder_lib.describe(identity)} gives {dim}-dimensional embeddings, but "
            f"the index holds {index.dim}-dimensional ones of {embedder_lib.describe(built_with)}; "
            f"query with that model or rebuild the index. "
            f"Received: model_dir={identity.get('path')}, index_dir={index_dir}"
        )
    if built_with and not embedder_lib.same_model(built_with, identity):
        raise ValueError(
            f"The index was built from embeddings of {embedder_lib.describe(built_with)}, "
            f"but the model is {embedder_lib.describe(identity)}, a different model (other "
            f"SavedModel fingerprint); embeddings of different models are not comparable. Query "
            f"with the index's model, or embed the catalog with this one and rebuild the index. "
            f"Received: model_dir={identity.get('path')}, index_dir={index_dir}"
        )


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
        raise ValueError(f"k must be a positive integer. Received: k={k}")
    index = index_lib.load_index(index_dir, nprobe=nprobe, ef_search=ef_search)
    if binary and not index.binary:
        raise ValueError(
            f"binary search needs a binary index, and index_dir holds a float one (kind "
            f"{index.kind}); build one of kind binary, binary-ivf or binary-hnsw. "
            f"Received: binary=True, index_dir={index_dir}"
        )
    if not tf.io.gfile.isdir(model_dir):
        raise NotADirectoryError(
            f"model_dir is not a directory; pass saved_models/<name>/<version>. Received: model_dir={model_dir}"
        )
    card = model_card.read_model_card(model_dir)
    identity = embedder_lib.model_identity(model_dir, card=card)
    check_compatible(index, index_dir, identity)
    encoded = read_query_image(image, model_card.card_max_pixels(card))

    signature = embedder_lib.BINARY_SIGNATURE if index.binary else embedder_lib.DEFAULT_SIGNATURE
    model = embedder_lib.SavedModelEmbedder(model_dir, signature)
    (result,) = model.embed([encoded])
    if result.error:
        raise ValueError(f"The model cannot decode the image ({result.error}). Received: image={image}")
    query = result.bits if index.binary else result.embedding
    return QueryResult(os.fspath(image), encoded, index.neighbours(query, k), index)
