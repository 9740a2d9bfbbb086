"""The serving graph: evaluation preprocessing + embedding model + sign binarization, three signatures.

    serving_default  image_bytes string [batch]          -> embedding      float32 [batch, D]
    serving_binary   image_bytes string [batch]          -> embedding_bits uint8   [batch, ceil(D/8)]
    serving_images   images      uint8  [batch, H, W, 3] -> embedding, embedding_bits

Built on ``keras.export.ExportArchive``, which tracks the variables its endpoints capture as plain
``tf.Variable``s, each once (``variables/`` is the size of the weights): the result loads with
``tf.saved_model.load`` and also with the TF1 loader that
``saved_model_cli run`` and TF Serving use (a ``tf.Module`` holding the Keras 3 model as an
attribute does not: its variables are missing from the TF1 restore op).
"""

import keras
import tensorflow as tf

from tfmetric.export import image_guard
from tfmetric.export.binarize import pack_sign_bits, packed_width

DEFAULT_SIGNATURE = "serving_default"
BINARY_SIGNATURE = "serving_binary"
IMAGES_SIGNATURE = "serving_images"
SIGNATURES = (DEFAULT_SIGNATURE, BINARY_SIGNATURE, IMAGES_SIGNATURE)
BYTES_INPUT = "image_bytes"
IMAGES_INPUT = "images"
EMBEDDING_OUTPUT = "embedding"
BITS_OUTPUT = "embedding_bits"


def signature_table(dim):
    """name -> (inputs, outputs), each a dict name -> (dtype name, shape with -1 for dynamic)."""
    bytes_in = {BYTES_INPUT: ("string", (-1,))}
    embedding = {EMBEDDING_OUTPUT: ("float32", (-1, dim))}
    bits = {BITS_OUTPUT: ("uint8", (-1, packed_width(dim)))}
    return {
        DEFAULT_SIGNATURE: (bytes_in, embedding),
        BINARY_SIGNATURE: (bytes_in, bits),
        IMAGES_SIGNATURE: ({IMAGES_INPUT: ("uint8", (-1, -1, -1, 3))}, {**embedding, **bits}),
    }


def build_serving_archive(embedding_model, image_size, resize_size, normalization, max_pixels=None):
    """A ``keras.export.ExportArchive`` with the three serving signatures of ``embedding_model``.

    Args:
      embedding_model: Keras model, normalised float32 ``[batch, image_size, image_size, 3]`` ->
        ``[batch, D]`` embeddings; it runs with ``training=False`` (BatchNorm moving statistics).
      image_size, resize_size, normalization: the evaluation preprocessing of the training config
        (``tfmetric.data.preprocessing.eval_preprocess``).
      max_pixels: encoded images whose header declares more pixels are rejected before decoding;
        default ``image_guard.default_max_pixels(resize_size)``.
    """
    if max_pixels is None:
        max_pixels = image_guard.default_max_pixels(resize_size)
    if embedding_model.output_shape[-1] is None:
        raise ValueError("The embedding model needs a static output dimension.")
    expected = (None, image_size, image_size, 3)
    if tuple(embedding_model.input_shape) not in (expected, (None, None, None, 3)):
        raise ValueError(
            f"The embedding model takes inputs of shape {embedding_model.input_shape}, but the "
            f"config's image_size is {image_size}: expected {expected}."
        )
    if max_pixels < image_size * image_size:
        raise ValueError(
            f"max_pixels must be at least image_size**2 = {image_size * image_size}. Received: max_pixels={max_pixels}"
        )

    def embed(images):
        return tf.cast(embedding_model(images, training=False), tf.float32)

    def embed_bytes(image_bytes):
        image_bytes = image_guard.check_batch(image_bytes, BYTES_INPUT, 1)
        return embed(
            image_guard.guarded_eval_preprocess(image_bytes, image_size, resize_size, normalization, max_pixels)
        )

    def serving_default(image_bytes):
        return {EMBEDDING_OUTPUT: embed_bytes(image_bytes)}

    def serving_binary(image_bytes):
        return {BITS_OUTPUT: pack_sign_bits(embed_bytes(image_bytes))}

    def serving_images(images):
        images = image_guard.check_batch(images, IMAGES_INPUT, 4, 3)
        embedding = embed(
            image_guard.guarded_eval_preprocess_images(images, image_size, resize_size, normalization, max_pixels)
        )
        return {EMBEDDING_OUTPUT: embedding, BITS_OUTPUT: pack_sign_bits(embedding)}

    bytes_spec = [tf.TensorSpec([None], tf.string, name=BYTES_INPUT)]
    # Not ``archive.track(embedding_model)``: that saves every Keras variable a second time beside
    # the plain tf.Variables the endpoints capture (``_all_variables``), doubling ``variables/``.
    archive = keras.export.ExportArchive()
    archive.add_endpoint(DEFAULT_SIGNATURE, serving_default, input_signature=bytes_spec)
    archive.add_endpoint(BINARY_SIGNATURE, serving_binary, input_signature=bytes_spec)
    archive.add_endpoint(
        IMAGES_SIGNATURE,
        serving_images,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=IMAGES_INPUT)],
    )
    return archive
