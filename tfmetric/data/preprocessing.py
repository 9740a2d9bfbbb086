"""Image preprocessing of the official code, in TensorFlow.

Train: decode -> resize to resize_size x resize_size (aspect ratio not kept) -> random crop
image_size -> random horizontal flip -> normalise. Eval: decode -> resize -> centre crop -> normalise.
The evaluation functions are the single definition reused by the SavedModel export, so serving and
evaluation cannot drift apart.

Training decodes JPEGs fused with the crop (``tf.io.decode_and_crop_jpeg``): the random
``image_size`` crop at offset (oy, ox) of the ``resize_size``-resized image is the window
[oy / s, (oy + image_size) / s) of the original (s = resize_size / H, per axis). Only that window,
widened by the support of the antialiasing filter (max(1, 1/s) pixels, plus one), is decoded, and
it is resampled with the same scale as the full resize and a translation that puts the crop's
pixel grid exactly where the unfused path samples it (``ScaleAndTranslate``, the kernel behind
``tf.image.resize(..., antialias=True)``). The result equals resize-then-crop up to float rounding
(max |difference| ~1e-3 on the 0-255 scale, measured in tests/tfmetric/data/test_preprocessing.py);
the only saving is decoding and resampling fewer pixels, so nothing the network sees changes.
"""

import numpy as np
import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# The input normalisation a backbone's weights expect.
NORMALIZATIONS = ("imagenet_mean_std", "caffe", "inception")


# Multiplications by float32 reciprocals, not divisions: grappler's constant folding rewrites x / c
# as x * (1 / c) inside tf.functions (the SavedModel, TF Serving) but not in eager code or tf.data
# map functions, and the one-ulp difference would make served embeddings differ from evaluation.
_INV_255 = np.float32(1.0 / 255.0)
_MEAN = np.asarray(IMAGENET_MEAN, np.float32)
_INV_STD = (1.0 / np.asarray(IMAGENET_STD, np.float64)).astype(np.float32)
_INV_127_5 = np.float32(1.0 / 127.5)


def normalize(images, normalization="imagenet_mean_std"):
    """uint8 or [0, 255] float RGB images -> the float32 input a backbone expects.

    Args:
      images: [..., H, W, 3] RGB, values in [0, 255].
      normalization: "imagenet_mean_std" (RGB in [0, 1], ImageNet mean/std: the official code),
        "caffe" (BGR, ImageNet mean subtracted, 0-255: keras.applications ResNet50 weights) or
        "inception" ([-1, 1]: TF-Slim checkpoints).
    """
    x = tf.cast(images, tf.float32)
    if normalization == "imagenet_mean_std":
        return (x * _INV_255 - _MEAN) * _INV_STD
    if normalization == "caffe":
        return x[..., ::-1] - CAFFE_BGR_MEAN
    if normalization == "inception":
        return x * _INV_127_5 - 1.0
    raise ValueError(f"Unknown normalization {normalization!r}. Allowed values: {', '.join(NORMALIZATIONS)}.")


def decode_image(image_bytes):
    """JPEG/PNG/GIF/BMP bytes -> uint8 [H, W, 3] (grayscale is expanded, alpha dropped)."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize(image, resize_size):
    """Resize both sides to resize_size (aspect ratio not kept), antialiased like PIL's bilinear."""
    return tf.image.resize(image, [resize_size, resize_size], method="bilinear", antialias=True)


def center_crop(image, image_size):
    """Centre crop of a [..., S, S, C] tensor; offsets round down like torchvision's CenterCrop."""
    height = tf.shape(image)[-3]
    left = tf.cast(tf.round(tf.cast(tf.shape(image)[-2] - image_size, tf.float32) / 2.0), tf.int32)
    top = tf.cast(tf.round(tf.cast(height - image_size, tf.float32) / 2.0), tf.int32)
    return image[..., top : top + image_size, left : left + image_size, :]


def eval_preprocess_image(image, image_size, resize_size, normalization="imagenet_mean_std"):
    """Decoded uint8 [H, W, 3] or [B, H, W, 3] -> normalised float32 [.., image_size, image_size, 3]."""
    x = resize(tf.cast(image, tf.float32), resize_size)
    x = center_crop(x, image_size)
    x = normalize(x, normalization)
    x.set_shape(x.shape[:-3].as_list() + [image_size, image_size, 3])
    return x


def eval_preprocess(image_bytes, image_size, resize_size, normalization="imagenet_mean_std"):
    """Encoded bytes -> the evaluation input of the network (also used inside the SavedModel)."""
    return eval_preprocess_image(decode_image(image_bytes), image_size, resize_size, normalization)


def train_crop_params(seed, image_size, resize_size):
    """The random augmentation of one image: (crop offset int32 [2] as (top, left), flip bool).

    Offsets are uniform over [0, resize_size - image_size] like torchvision's RandomCrop; the flip
    has probability 1/2. ``seed`` is an int [2] tensor (stateless randomness).
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    offset = tf.random.stateless_uniform([2], seeds[0], minval=0, maxval=resize_size - image_size + 1, dtype=tf.int32)
    flip = tf.random.stateless_uniform([], seeds[1]) < 0.5
    return offset, flip


def resize_and_crop(image, offset, image_size, resize_size):
    """Decoded [H, W, 3] -> float32 crop [image_size, image_size, 3] of the resized image at offset.

    The unfused reference: resize the whole image, then slice.
    """
    x = resize(tf.cast(image, tf.float32), resize_size)
    return x[offset[0] : offset[0] + image_size, offset[1] : offset[1] + image_size, :]


def _crop_window(size, offset, image_size, resize_size):
    """Rows (or columns) of the original needed for one axis of the crop: (start, length, scale)."""
    scale = resize_size / tf.cast(size, tf.float32)
    support = tf.maximum(1.0, 1.0 / scale) + 1.0  # antialiasing filter radius, plus rounding slack
    offset = tf.cast(offset, tf.float32)
    start = tf.maximum(0, tf.cast(tf.floor(offset / scale - support), tf.int32))
    stop = tf.minimum(size, tf.cast(tf.math.ceil((offset + image_size) / scale + support), tf.int32))
    return start, stop - start, scale


def _resample_window(window, starts, scales, offset, image_size):
    """Resamples a decoded window of the original onto the crop's pixel grid (see module doc)."""
    translation = tf.cast(starts, tf.float32) * scales - tf.cast(offset, tf.float32)
    out = tf.raw_ops.ScaleAndTranslate(
        images=tf.cast(window, tf.float32)[None],
        size=[image_size, image_size],
        scale=scales,
        translation=translation,
        kernel_type="triangle",
        antialias=True,
    )
    return out[0]


def decode_resize_and_crop(image_bytes, offset, image_size, resize_size):
    """Encoded bytes -> the same crop as ``resize_and_crop(decode_image(...))``, decoding less.

    JPEGs decode only the window the crop needs; other formats are decoded whole and sliced.
    """

    def crop(shape, decode_window):
        y0, h, sy = _crop_window(shape[0], offset[0], image_size, resize_size)
        x0, w, sx = _crop_window(shape[1], offset[1], image_size, resize_size)
        window = decode_window(tf.stack([y0, x0, h, w]))
        return _resample_window(window, tf.stack([y0, x0]), tf.stack([sy, sx]), offset, image_size)

    def jpeg():
        return crop(
            tf.io.extract_jpeg_shape(image_bytes), lambda box: tf.io.decode_and_crop_jpeg(image_bytes, box, channels=3)
        )

    def other():
        image = decode_image(image_bytes)
        return crop(tf.shape(image), lambda box: image[box[0] : box[0] + box[2], box[1] : box[1] + box[3]])

    x = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)
    x.set_shape([image_size, image_size, 3])
    return x


def train_preprocess(image_bytes, seed, image_size, resize_size, normalization="imagenet_mean_std"):
    """Encoded bytes -> augmented training input: resize, random crop, random horizontal flip.

    Args:
      image_bytes: scalar string tensor.
      seed: int32/int64 [2] tensor; stateless randomness makes the pipeline deterministic even with
        parallel map.
    """
    offset, flip = train_crop_params(seed, image_size, resize_size)
    x = decode_resize_and_crop(image_bytes, offset, image_size, resize_size)
    x = tf.cond(flip, lambda: x[:, ::-1, :], lambda: x)
    return normalize(x, normalization)
