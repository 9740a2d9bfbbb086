"""``assets.extra/tf_serving_warmup_requests``: one real PredictRequest per signature.

TF Serving replays this TFRecord file of serialized ``tensorflow.serving.PredictionLog`` messages
when it loads a version (``--enable_model_warmup``, on by default), so the first client request
does not pay for graph initialisation. The messages come from ``serving_protos`` (runtime
descriptors with TF Serving's field numbers), not from ``tensorflow-serving-api``.
"""

import os

import numpy as np
import tensorflow as tf

from tfmetric.export import serving_module, serving_protos

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def make_prediction_log(model_name, signature_name, inputs):
    """A PredictionLog whose predict_log.request calls ``signature_name`` with ``inputs``.

    Args:
      model_name: the servable name (the model's directory name under TF Serving's base path).
      signature_name: e.g. ``serving_default``.
      inputs: dict input name -> array-like (numpy array, list of bytes).
    """
    log = serving_protos.message_class("PredictionLog")()
    log.predict_log.request.CopyFrom(serving_protos.predict_request(model_name, signature_name, inputs))
    return log


def write_warmup_requests(path, model_name, requests):
    """Writes ``requests`` (list of (signature_name, inputs dict)) as a TFRecord of PredictionLogs."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests:
            writer.write(make_prediction_log(model_name, signature_name, inputs).SerializeToString())


def read_warmup_requests(path):
    """The requests of a warmup file: list of (model_name, signature_name, {input: numpy array})."""
    cls = serving_protos.message_class("PredictionLog")
    out = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        request = cls.FromString(record).predict_log.request
        inputs = {key: serving_protos.from_tensor_proto(value) for key, value in request.inputs.items()}
        out.append((request.model_spec.name, request.model_spec.signature_name, inputs))
    return out


def sample_image(image_size, seed=0):
    """A deterministic uint8 [image_size, image_size, 3] test card (gradients plus noise)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, image_size, dtype=np.float32)
    image = np.stack(
        [
            ramp[None, :].repeat(image_size, 0),
            ramp[:, None].repeat(image_size, 1),
            rng.uniform(0, 255, (image_size, image_size)),
        ],
        axis=-1,
    )
    return image.astype(np.uint8)


def default_requests(image_size):
    """One batch-of-one request per signature: a JPEG for the bytes signatures, pixels for images."""
    image = sample_image(image_size)
    jpeg = tf.io.encode_jpeg(image, quality=90).numpy()
    encoded = np.array([jpeg], dtype=object)
    return [
        (serving_module.DEFAULT_SIGNATURE, {serving_module.BYTES_INPUT: encoded}),
        (serving_module.BINARY_SIGNATURE, {serving_module.BYTES_INPUT: encoded}),
        (serving_module.IMAGES_SIGNATURE, {serving_module.IMAGES_INPUT: image[None]}),
    ]
