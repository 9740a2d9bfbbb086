"""Preprocessing against an independent numpy/PIL reference, and the fused JPEG crop against the
unfused path it replaces."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfmetric.data import preprocessing as pp

LEVEL = 1.0 / 255.0 / min(pp.IMAGENET_STD)  # one 0-255 grey level, after imagenet_mean_std


def photo(height, width, seed=0, fmt="PNG", mode="RGB", **save):
    """An encoded image with gradients, stripes and noise (something resampling can get wrong)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([np.sin(xx / 9.0 + seed) * 90 + 128, np.cos(yy / 13.0) * 90 + 128, (xx * 3 + yy) % 256], -1)
    pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(out, fmt, **save)
    return out.getvalue()


def pil_reference(data, image_size, resize_size, offset=None, flip=False):
    """torchvision's pipeline: PIL bilinear resize (aspect not kept), crop, flip, ImageNet mean/std."""
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((resize_size, resize_size), Image.BILINEAR)
    x = np.asarray(image, np.float32)
    top, left = offset if offset is not None else [int(round((resize_size - image_size) / 2.0))] * 2
    x = x[top : top + image_size, left : left + image_size]
    if flip:
        x = x[:, ::-1]
    return (x / 255.0 - np.array(pp.IMAGENET_MEAN)) / np.array(pp.IMAGENET_STD)


SIZES = [(375, 500, 224, 256), (60, 90, 64, 72), (300, 200, 32, 36)]


@pytest.mark.parametrize("height,width,image_size,resize_size", SIZES)
def test_eval_preprocess_equals_pil_reference(height, width, image_size, resize_size):
    data = photo(height, width)
    got = pp.eval_preprocess(tf.constant(data), image_size, resize_size).numpy()
    diff = np.abs(got - pil_reference(data, image_size, resize_size))
    assert got.shape == (image_size, image_size, 3)
    assert diff.max() <= 1.0 * LEVEL and diff.mean() <= 0.4 * LEVEL  # PIL rounds to uint8 per pass


@pytest.mark.parametrize("height,width,image_size,resize_size", SIZES)
def test_train_preprocess_equals_pil_reference_at_the_same_crop(height, width, image_size, resize_size):
    data = photo(height, width, seed=1)
    for s in range(3):
        seed = tf.constant([s, 7], tf.int64)
        offset, flip = [x.numpy() for x in pp.train_crop_params(seed, image_size, resize_size)]
        got = pp.train_preprocess(tf.constant(data), seed, image_size, resize_size).numpy()
        diff = np.abs(got - pil_reference(data, image_size, resize_size, offset, flip))
        assert diff.max() <= 1.0 * LEVEL and diff.mean() <= 0.4 * LEVEL


def test_crop_params_cover_the_range_and_are_deterministic():
    params = [pp.train_crop_params(tf.constant([s, 0], tf.int64), 224, 256) for s in range(200)]
    offsets = np.array([o.numpy() for o, _ in params])
    flips = np.array([f.numpy() for _, f in params])
    assert offsets.min() == 0 and offsets.max() == 32 and 60 < flips.sum() < 140
    again = pp.train_crop_params(tf.constant([5, 0], tf.int64), 224, 256)
    assert np.array_equal(again[0].numpy(), offsets[5]) and bool(again[1]) == flips[5]


JPEGS = {
    "4:2:0 downscale": dict(size=(375, 500), save=dict(quality=90)),
    "4:4:4 downscale": dict(size=(500, 333), save=dict(quality=95, subsampling=0)),
    "large": dict(size=(1024, 768), save=dict(quality=85)),
    "upscale": dict(size=(150, 200), save=dict(quality=90)),
    "tiny": dict(size=(8, 8), save=dict(quality=90)),
    "grayscale": dict(size=(300, 400), mode="L", save=dict(quality=90)),
}


@pytest.mark.parametrize("name", sorted(JPEGS))
def test_fused_jpeg_crop_equals_resize_then_crop(name):
    """Decoding only the crop's window (plus the filter's support) and resampling it with the
    full resize's scale and a translation gives the unfused result up to float rounding."""
    spec = JPEGS[name]
    data = tf.constant(photo(*spec["size"], seed=2, fmt="JPEG", mode=spec.get("mode", "RGB"), **spec["save"]))
    image = pp.decode_image(data)
    worst = 0.0
    for offset in ([0, 0], [32, 32], [13, 7], [31, 0], [0, 29]):
        offset = tf.constant(offset)
        fused = pp.decode_resize_and_crop(data, offset, 224, 256).numpy()
        unfused = pp.resize_and_crop(image, offset, 224, 256).numpy()
        worst = max(worst, np.abs(fused - unfused).max())
    assert worst <= 0.01  # 0-255 scale; measured ~1e-3 (float32 accumulation order)


def test_non_jpeg_takes_the_same_window_path():
    data = tf.constant(photo(120, 90, fmt="PNG"))
    offset = tf.constant([5, 3])
    np.testing.assert_allclose(
        pp.decode_resize_and_crop(data, offset, 64, 72).numpy(),
        pp.resize_and_crop(pp.decode_image(data), offset, 64, 72).numpy(),
        atol=0.01,
    )


def test_train_preprocess_in_a_parallel_dataset_is_deterministic():
    data = tf.constant([photo(40, 50, seed=s, fmt="JPEG") for s in range(8)])

    def run():
        ds = tf.data.Dataset.from_tensor_slices((data, tf.range(8, dtype=tf.int64)))
        ds = ds.map(
            lambda b, i: pp.train_preprocess(b, tf.stack([tf.constant(1, tf.int64), i]), 32, 36),
            num_parallel_calls=4,
            deterministic=True,
        )
        return np.stack(list(ds.as_numpy_iterator()))

    np.testing.assert_array_equal(run(), run())


def test_normalizations():
    pixel = tf.constant([[[255, 128, 0]]], tf.uint8)
    np.testing.assert_allclose(
        pp.normalize(pixel, "imagenet_mean_std")[0, 0],
        (np.array([1.0, 128 / 255, 0.0]) - pp.IMAGENET_MEAN) / pp.IMAGENET_STD,
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        pp.normalize(pixel, "caffe")[0, 0], np.array([0.0, 128, 255]) - pp.CAFFE_BGR_MEAN, rtol=1e-6
    )  # BGR
    np.testing.assert_allclose(pp.normalize(pixel, "inception")[0, 0], [1.0, 128 / 127.5 - 1, -1.0], atol=1e-6)
    with pytest.raises(ValueError, match="Allowed values: imagenet_mean_std, caffe, inception"):
        pp.normalize(pixel, "torch")


def test_grayscale_and_batched_eval():
    gray = tf.constant(photo(40, 40, mode="L"))
    assert pp.decode_image(gray).shape[-1] == 3
    batch = tf.stack([pp.decode_image(gray)] * 2)
    out = pp.eval_preprocess_image(batch, 32, 36)
    assert out.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(out[0], pp.eval_preprocess(gray, 32, 36), atol=1e-5)
