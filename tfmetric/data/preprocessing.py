"""Image preprocessing of the official code, in TensorFlow.

Train: decode -> resize to resize_size x resize_size (aspect ratio not kept) -> random crop
image_size -> random horizontal flip -> normalise. Eval: decode -> resize -> centre crop -> normalise.
The evaluation functions are the single definition reused by the SavedModel export, so serving and
evaluation cannot drift apart.
"""
import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
# The input normalisation a backbone's weights expect.
NORMALIZATIONS = ("imagenet_mean_std", "caffe", "inception")


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
        return (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    if normalization == "caffe":
        return x[..., ::-1] - CAFFE_BGR_MEAN
    if normalization == "inception":
        return x / 127.5 - 1.0
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
    return image[..., top:top + image_size, left:left + image_size, :]


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


def train_preprocess(image_bytes, seed, image_size, resize_size, normalization="imagenet_mean_std"):
    """Encoded bytes -> augmented training input: resize, random crop, random horizontal flip.

    Args:
      image_bytes: scalar string tensor.
      seed: int32/int64 [2] tensor; stateless randomness makes the pipeline deterministic even with
        parallel map.
    """
    x = resize(tf.cast(decode_image(image_bytes), tf.float32), resize_size)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    x = tf.image.stateless_random_crop(x, [image_size, image_size, 3], seed=seeds[0])
    x = tf.image.stateless_random_flip_left_right(x, seed=seeds[1])
    return normalize(x, normalization)
