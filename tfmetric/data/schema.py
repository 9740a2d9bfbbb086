"""The ``tf.train.Example`` schema of the class-grouped TFRecord shards.

Feature names follow the TF Model Garden convention (see ARCHITECTURE.md, "Data contracts"):

  image/encoded      bytes   original file bytes (JPEG or PNG; other formats re-encoded to JPEG)
  image/format       bytes   ``jpeg`` or ``png``
  image/height       int64   from the image header
  image/width        int64
  image/class/label  int64   contiguous 0..C-1 within the split
  image/class/name   bytes   the dataset's original class id
  image/id           bytes   stable unique id, e.g. the path relative to the raw dir

``SCHEMA_VERSION`` is written into every manifest; bump it when a feature changes meaning.
"""

import tensorflow as tf

from tfmetric.data import example_encoder

SCHEMA_VERSION = 1

ENCODED = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
LABEL = "image/class/label"
CLASS_NAME = "image/class/name"
IMAGE_ID = "image/id"

FORMATS = ("jpeg", "png")

FEATURE_SPEC = {
    ENCODED: tf.io.FixedLenFeature([], tf.string),
    FORMAT: tf.io.FixedLenFeature([], tf.string),
    HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    WIDTH: tf.io.FixedLenFeature([], tf.int64),
    LABEL: tf.io.FixedLenFeature([], tf.int64),
    CLASS_NAME: tf.io.FixedLenFeature([], tf.string),
    IMAGE_ID: tf.io.FixedLenFeature([], tf.string),
}


def _bytes(value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _check(image_format: str, height: int, width: int, label: int) -> None:
    if image_format not in FORMATS:
        raise ValueError(f"image_format must be one of {FORMATS}. Received: image_format={image_format!r}")
    if min(height, width) <= 0:
        raise ValueError(f"height and width must be positive. Received: height={height}, width={width}")
    if label < 0:
        raise ValueError(f"label must be >= 0. Received: label={label}")


def make_example(
    encoded: bytes, image_format: str, height: int, width: int, label: int, class_name: str, image_id: str
) -> tf.train.Example:
    """One record of the schema.

    Raises:
      ValueError: ``image_format`` is not ``jpeg``/``png``, or a size or label is negative.
    """
    _check(image_format, height, width, label)
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                ENCODED: _bytes(encoded),
                FORMAT: _bytes(image_format),
                HEIGHT: _int64(height),
                WIDTH: _int64(width),
                LABEL: _int64(label),
                CLASS_NAME: _bytes(class_name),
                IMAGE_ID: _bytes(image_id),
            }
        )
    )


def serialize_example(
    encoded: bytes, image_format: str, height: int, width: int, label: int, class_name: str, image_id: str
) -> bytes:
    """``make_example(...).SerializeToString(deterministic=True)``: the feature map in sorted key
    order, so that shards are byte-identical on a re-run whichever worker writes them (protobuf
    map order otherwise depends on the process's hash seed).

    Encoded by ``example_encoder`` without building the proto (the same bytes, several times
    faster: the converter calls this once per image).

    Raises:
      ValueError: as ``make_example``.
    """
    _check(image_format, height, width, label)
    return example_encoder.encode_example(
        {
            ENCODED: encoded,
            FORMAT: image_format,
            HEIGHT: int(height),
            WIDTH: int(width),
            LABEL: int(label),
            CLASS_NAME: class_name,
            IMAGE_ID: image_id,
        }
    )


def relabel(serialized: bytes, label: int) -> bytes:
    """The serialized record ``serialized`` with its label replaced by ``label``, every other feature
    as it was (and serialized as ``serialize_example`` does).

    Raises:
      ValueError: ``label`` is negative.
    """
    feature = tf.train.Example.FromString(serialized).features.feature

    def value(name):
        kind = feature[name].WhichOneof("kind")
        return getattr(feature[name], kind).value[0]

    return serialize_example(
        value(ENCODED),
        value(FORMAT).decode("utf-8"),
        value(HEIGHT),
        value(WIDTH),
        label,
        value(CLASS_NAME),
        value(IMAGE_ID),
    )


def parse_example(serialized):
    """Feature dict of one serialized Example (scalar string) or a batch of them (vector).

    Usable directly in ``tf.data.TFRecordDataset(paths).map(parse_example)``.
    """
    serialized = tf.convert_to_tensor(serialized, tf.string)
    if serialized.shape.rank == 0:
        return tf.io.parse_single_example(serialized, FEATURE_SPEC)
    return tf.io.parse_example(serialized, FEATURE_SPEC)
