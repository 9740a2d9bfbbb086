"""scikit-learn's real 8x8 handwritten digits as a tiny zero-shot retrieval sanity check.

The 1,797 images of ``sklearn.datasets.load_digits`` (shipped with scikit-learn, nothing to
download) are upsampled to 32x32 RGB PNGs. Digits 0–4 form ``train`` (labels 0..4) and digits
5–9 ``test`` (labels 0..4, class names "5".."9"), so test digits are never seen in training.
Raw pixels already retrieve the test digits almost perfectly (Recall@1 ≈ 0.99): the dataset
checks that the machinery works end to end, not that a model learns anything hard.

Upsampling is nearest-neighbour by default (each 8x8 pixel becomes a 4x4 block: the exact
original values, no interpolation invented); ``resample="bilinear"`` gives smooth strokes.
Intensities 0..16 map linearly to 0..255 (ink bright on black, as in scikit-learn), replicated
to three equal channels.
"""

import dataclasses
import io

import numpy as np

from tfmetric.datasets.base import ImageRecord

NAME = "digits"
SPLITS = ("train", "test")
TRAIN_SPLIT = "train"
QUERY_SPLIT = "test"
GALLERY_SPLIT = None
GENERATED = True
LOAD_OPTIONS = ()
INSTRUCTIONS = (
    "Nothing to download: the digits ship with scikit-learn "
    "(sklearn.datasets.load_digits); install scikit-learn if it is missing."
)

NUM_IMAGES = 1797
IMAGE_SIZE = 32
# Bump whenever the images load() produces change; see synthetic.GENERATOR_VERSION.
GENERATOR_VERSION = 1
TRAIN_DIGITS = (0, 1, 2, 3, 4)
TEST_DIGITS = (5, 6, 7, 8, 9)
_RESAMPLING = ("nearest", "bilinear")


def _upsample(images: np.ndarray, image_size: int, resample: str) -> np.ndarray:
    """uint8 [N, 8, 8] -> uint8 [N, image_size, image_size, 3]."""
    from PIL import Image  # local import keeps the module import cheap

    if resample == "nearest" and image_size % images.shape[1] == 0:
        factor = image_size // images.shape[1]
        grey = images.repeat(factor, axis=1).repeat(factor, axis=2)
    else:
        method = Image.Resampling.NEAREST if resample == "nearest" else Image.Resampling.BILINEAR
        grey = np.stack([np.asarray(Image.fromarray(im).resize((image_size, image_size), method)) for im in images])
    return np.repeat(grey[..., None], 3, axis=-1)


def _encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _digits():
    """(uint8 [N, 8, 8] images scaled to 0..255, int64 targets [N]) from scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is a pinned requirement
        raise ImportError(f"The digits dataset needs scikit-learn. {INSTRUCTIONS}") from e
    bunch = load_digits()
    raw = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return raw, bunch.target.astype(np.int64)


def _check(image_size, resample):
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8. Received: image_size={image_size}")
    if resample not in _RESAMPLING:
        raise ValueError(f"resample must be one of {', '.join(_RESAMPLING)}. Received: resample={resample!r}")


def list_images(raw_dir=None) -> dict[str, list[ImageRecord]]:
    """The records ``load`` returns without their bytes (``data=None``): what a converter lists
    before its workers encode each class with ``generate_class``."""
    del raw_dir
    _, targets = _digits()
    return {
        split: [
            ImageRecord(image_id=f"{NAME}/c{digit}/i{index:04d}.png", label=label, class_name=str(digit), split=split)
            for label, digit in enumerate(digits)
            for index in np.flatnonzero(targets == digit)
        ]
        for split, digits in (("train", TRAIN_DIGITS), ("test", TEST_DIGITS))
    }


def generate_class(class_name: str, *, image_size: int = IMAGE_SIZE, resample: str = "nearest") -> list[bytes]:
    """The PNG bytes of one digit's images, in the order of its ``list_images`` records."""
    _check(image_size, resample)
    raw, targets = _digits()
    images = _upsample(raw[targets == int(class_name)], image_size, resample)
    return [_encode_png(image) for image in images]


def load(raw_dir=None, *, image_size: int = IMAGE_SIZE, resample: str = "nearest") -> dict[str, list[ImageRecord]]:
    """The digits as PNG-encoded ImageRecords; ``raw_dir`` is ignored.

    Args:
      raw_dir: ignored; present for the common dataset-module signature.
      image_size: output height and width in pixels, >= 8.
      resample: ``"nearest"`` (default) or ``"bilinear"`` upsampling from 8x8.

    Image ids are ``digits/c<digit>/i<index>.png`` with the index into scikit-learn's array, so
    they are stable across calls and unique.
    """
    _check(image_size, resample)
    records = list_images(raw_dir)
    for listed in records.values():
        for digit in sorted({r.class_name for r in listed}):
            positions = [i for i, r in enumerate(listed) if r.class_name == digit]
            encoded = generate_class(digit, image_size=image_size, resample=resample)
            for i, data in zip(positions, encoded):
                listed[i] = dataclasses.replace(listed[i], data=data)
    return records
