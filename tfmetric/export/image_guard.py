"""Checks on untrusted encoded images inside the serving graph, before anything large is allocated.

A serving request carries raw bytes from an arbitrary client. Each image is checked, in this
order, with graph assertions (so the error is ``InvalidArgument`` and names the image's index in
the batch and the problem):

1. not empty;
2. JPEG or PNG, by magic bytes (anything else, GIF and BMP included, is rejected);
3. the frame size read from the header only: ``tf.io.extract_jpeg_shape`` for JPEG (a malformed
   header fails there with ``Invalid JPEG data``), the IHDR chunk for PNG;
4. ``height * width <= max_pixels``.

Only then is the image decoded, with the evaluation preprocessing
(``tfmetric.data.preprocessing.eval_preprocess``), so a decompression bomb never reaches the
decoder; corrupt data after a valid header still fails in the decoder with ``InvalidArgument``.
One bad image fails the whole batch: a request never gets embeddings for only some of its images.
Before any of this, ``check_batch`` rejects an empty batch, a scalar or rank-2 ``image_bytes`` and
``images`` that are not RGB, naming the input and the expected shape.
"""

import tensorflow as tf

from tfmetric.data import preprocessing
from tfmetric.data.image_header import DEFAULT_MAX_PIXELS, JPEG_MAGIC, MAGIC, MAGIC_BYTES, PNG_MAGIC

# Images decoded concurrently within one batch: at most this many, and no more than the decode
# budget allows. Decoding one image takes about max_pixels * 15 bytes (uint8 RGB plus the float32
# copy the resize works on), so one request's decoding never needs more than DECODE_BUDGET_BYTES
# (or one image's worth, when a single image at the limit is larger than the budget).
PARALLEL_DECODES = 8
DECODE_BUDGET_BYTES = 1 << 30
_BYTES_PER_PIXEL = 15
# The default pixel limit, derived from the model's resize_size: (16 * resize_size)^2 pixels, but
# never below 4096 x 4096 (a 12-16 MP phone photo must still be accepted) nor above the
# converter's DEFAULT_MAX_PIXELS. 16.8 MP at resize 256 where 50 MP used to be the default.
_MIN_DEFAULT_PIXELS = 4096 * 4096


def default_max_pixels(resize_size):
    """The serving pixel limit of a model resizing to ``resize_size`` (see above); overridable."""
    return int(min(DEFAULT_MAX_PIXELS, max(_MIN_DEFAULT_PIXELS, (16 * resize_size) ** 2)))


def parallel_decodes(max_pixels):
    """Concurrent decodes within a batch so that decoding stays within DECODE_BUDGET_BYTES."""
    return int(max(1, min(PARALLEL_DECODES, DECODE_BUDGET_BYTES // (max_pixels * _BYTES_PER_PIXEL))))


def _text(part):
    part = tf.convert_to_tensor(part)
    return part if part.dtype == tf.string else tf.strings.as_string(part)


def _check(condition, *parts):
    """An assertion (InvalidArgument when false) whose message is the concatenation of ``parts``."""
    return tf.debugging.Assert(condition, [tf.strings.join([_text(p) for p in parts])])


def _format_name(head):
    """The format the first bytes say (``image_header.MAGIC``, first match wins), for error messages."""
    padded = tf.strings.join([head, tf.constant(b"\x00" * MAGIC_BYTES)])  # substr must not pass the end
    name = tf.constant("unknown")
    for fmt, parts in reversed(MAGIC):
        match = tf.reduce_all(
            [tf.equal(tf.strings.substr(padded, offset, len(magic)), magic) for offset, magic in parts]
        )
        name = tf.where(match, fmt, name)
    return name


def _png_size(head):
    """(height, width, ok) from the IHDR chunk of a PNG's first 24 bytes (zero-padded if short)."""
    padded = tf.strings.join([head, tf.constant(b"\x00" * 24)])
    ok = tf.logical_and(tf.strings.length(head) >= 24, tf.equal(tf.strings.substr(padded, 12, 4), b"IHDR"))
    width_height = tf.io.decode_raw(tf.strings.substr(padded, 16, 8), tf.int32, little_endian=False)
    return tf.cast(width_height[1], tf.int64), tf.cast(width_height[0], tf.int64), ok


def header_size(image_bytes, index=0):
    """(height, width) int64 of one JPEG/PNG read from its header, after the format checks.

    Args:
      image_bytes: scalar string tensor.
      index: position in the batch, used in error messages.
    """
    where = tf.strings.join(["image ", tf.strings.as_string(index), " of the batch: "])
    head = tf.strings.substr(image_bytes, 0, 24)
    is_jpeg = tf.equal(tf.strings.substr(head, 0, len(JPEG_MAGIC)), JPEG_MAGIC)
    is_png = tf.equal(tf.strings.substr(head, 0, len(PNG_MAGIC)), PNG_MAGIC)
    not_empty = _check(tf.strings.length(image_bytes) > 0, where, "empty image bytes")
    with tf.control_dependencies([not_empty]):
        known = _check(
            tf.logical_or(is_jpeg, is_png),
            where,
            "unsupported image format (",
            _format_name(head),
            "); send JPEG or PNG bytes",
        )
    with tf.control_dependencies([known]):

        def jpeg():
            shape = tf.cast(tf.io.extract_jpeg_shape(image_bytes), tf.int64)
            return shape[0], shape[1]

        def png():
            height, width, ok = _png_size(head)
            valid = _check(
                tf.logical_and(ok, tf.logical_and(height > 0, width > 0)), where, "corrupt or truncated PNG header"
            )
            with tf.control_dependencies([valid]):
                return tf.identity(height), tf.identity(width)

        return tf.cond(is_jpeg, jpeg, png)


def check_batch(batch, name, rank, channels=None):
    """``batch`` after InvalidArgument checks of its rank, its size (>= 1) and its last dimension.

    A serving client may send any shape; these name the input and what it should be instead of
    failing later in a slice or a broadcast deep inside the graph.
    """
    layout = "[batch]" if rank == 1 else f"[batch, height, width, {channels}]"
    # The signature declares the rank, so tf.rank would be a constant; a client can still feed
    # another rank. The runtime shape, padded with -1s, tells: exactly ``rank`` sizes, then -1.
    padded = tf.concat([tf.shape(batch, out_type=tf.int64), tf.fill([rank + 1], tf.constant(-1, tf.int64))], 0)
    received = tf.reduce_sum(tf.cast(padded >= 0, tf.int64))
    ok = _check(
        tf.logical_and(tf.reduce_all(padded[:rank] >= 0), tf.equal(padded[rank], -1)),
        name,
        " must have shape ",
        layout,
        "; received rank ",
        received,
        ". Send a list even for one image",
    )
    with tf.control_dependencies([ok]):
        shape = tf.identity(padded[:rank])
        checks = [_check(shape[0] > 0, name, ": empty batch; send at least one image")]
        if channels is not None:
            checks.append(
                _check(
                    tf.equal(shape[-1], channels),
                    name,
                    " must have ",
                    channels,
                    " channels (RGB); received ",
                    shape[-1],
                )
            )
    with tf.control_dependencies(checks):
        return tf.identity(batch)


def check_pixels(height, width, max_pixels, index=0):
    """An assertion that ``height * width <= max_pixels``; the message gives the declared size."""
    pixels = height * width
    return _check(
        pixels <= max_pixels,
        "image ",
        tf.cast(index, tf.int64),
        " of the batch: declares ",
        width,
        "x",
        height,
        " = ",
        pixels,
        " pixels, more than the limit of ",
        tf.constant(max_pixels, tf.int64),
        " (max_pixels)",
    )


def guarded_eval_preprocess(image_bytes, image_size, resize_size, normalization, max_pixels=DEFAULT_MAX_PIXELS):
    """string ``[batch]`` -> float32 ``[batch, image_size, image_size, 3]``, checked then preprocessed.

    The preprocessing is ``tfmetric.data.preprocessing.eval_preprocess``, image by image, exactly
    as evaluation applies it.
    """
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)

    def one(args):
        data, index = args
        height, width = header_size(data, index)
        with tf.control_dependencies([check_pixels(height, width, max_pixels, index)]):
            data = tf.identity(data)
        return preprocessing.eval_preprocess(data, image_size, resize_size, normalization)

    indices = tf.range(tf.shape(image_bytes, out_type=tf.int64)[0])
    return tf.map_fn(
        one,
        (image_bytes, indices),
        parallel_iterations=parallel_decodes(max_pixels),
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
    )


def guarded_eval_preprocess_images(images, image_size, resize_size, normalization, max_pixels=DEFAULT_MAX_PIXELS):
    """uint8 ``[batch, H, W, 3]`` -> the evaluation input; H * W is checked against max_pixels too."""
    images = tf.convert_to_tensor(images, tf.uint8)
    shape = tf.shape(images, out_type=tf.int64)
    pixels = shape[1] * shape[2]
    ok = _check(
        pixels <= max_pixels,
        "images of ",
        shape[2],
        "x",
        shape[1],
        " = ",
        pixels,
        " pixels exceed the limit of ",
        tf.constant(max_pixels, tf.int64),
        " (max_pixels)",
    )
    with tf.control_dependencies([ok]):
        images = tf.identity(images)
    return preprocessing.eval_preprocess_image(images, image_size, resize_size, normalization)
