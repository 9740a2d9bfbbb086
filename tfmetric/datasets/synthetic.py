"""A seeded, procedurally generated stand-in for a product catalog (the embedded default dataset).

Each class ("product") is a composite of 2–4 coloured primitives (ellipse, rectangle, triangle,
star, ring) with class-specific colours, layout, sizes and one class-specific texture (stripes,
checks or dots with its own frequency and orientation). Every image renders the product under a
random rotation, scale and translation on a random flat or gradient background with a few
distractor shapes ("clutter") behind and in front of it, then random lighting and sensor noise.

The appearance of a class depends only on ``(seed, class id)`` and the pose/scene of its images
only on ``(seed, class id, images_per_class, image_size)``, so the test classes 100–199 are
genuinely unseen classes drawn from the same distribution as the training classes 0–99, and
rendering any subset of classes gives the same pixels as rendering them all.

Background, pose and clutter dominate the pixels, so raw-pixel retrieval is weak (cosine on
mean-centred pixels: test Recall@1 ≈ 0.08 at the defaults) while a small 4-block CNN trained with
normalized softmax for two minutes on a shared 2-core CPU reaches test Recall@1 ≈ 0.88. The
default size is 32x32 for that reason: 64x64 renders just as well but trains about 4x slower.

Rendering is vectorised over the images of a class with signed distance functions evaluated on
the pixel grid (anti-aliased over one pixel); all 4,800 default images take about a second.
"""

import dataclasses
import io
import math
from collections.abc import Iterable

import numpy as np

from tfmetric.datasets.base import ImageRecord

NAME = "synthetic"
SPLITS = ("train", "test")
TRAIN_SPLIT = "train"
QUERY_SPLIT = "test"
GALLERY_SPLIT = None
GENERATED = True
LOAD_OPTIONS = ()
INSTRUCTIONS = (
    "Nothing to download: the synthetic dataset is generated on the fly from a seed "
    "(tfmetric.datasets.synthetic.load(seed=0))."
)

NUM_CLASSES = 200
IMAGES_PER_CLASS = 24
IMAGE_SIZE = 32  # learnable in minutes on a CPU; 64 renders fine but trains ~4x slower
JPEG_QUALITY = 90
# Bump whenever the images load() produces change (knobs, rendering, encoding): TFRecords built by
# another version are rebuilt by tfmetric.data.prepare.ensure_tfrecords instead of being reused.
GENERATOR_VERSION = 2

_ELLIPSE, _RECTANGLE, _TRIANGLE, _STAR, _RING = range(5)
_STRIPES, _CHECKS, _DOTS = range(3)

# Difficulty knobs, tuned so that raw pixels stay weak (test Recall@1 < 0.1: translation and
# clutter defeat pixel matching) while a translation-equivariant CNN learns the classes: a small
# CNN reaches Recall@1 ≈ 0.8 in two CPU minutes, the demo's InceptionV1 ≈ 0.3 in four.
_MAX_ROTATION = 0.4  # radians either way (about 23 degrees)
_SCALE_RANGE = (0.7, 1.0)  # object units per half image
_MAX_SHIFT = 0.3  # object centre offset, fraction of the half image
_CLUTTER_BEHIND = (0, 2)  # distractor shapes behind the product, inclusive
_CLUTTER_FRONT_PROB = 0.3  # chance of one occluding distractor in front
_CLUTTER_RADIUS = (0.08, 0.25)  # distractor size, fraction of the half image
_NOISE_AMPLITUDE = 0.06  # uniform noise in [-a, a] per pixel and channel


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB for arrays in [0, 1]; returns (..., 3)."""
    h = np.asarray(h, np.float32) * 6.0
    s = np.asarray(s, np.float32)
    v = np.asarray(v, np.float32)
    i = np.floor(h).astype(np.int32) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)
    return np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0]


def _random_colour(rng, size=None):
    """Saturated-enough colours so products differ mostly in hue/value, not in greyness."""
    return _hsv_to_rgb(rng.uniform(0, 1, size), rng.uniform(0.35, 1.0, size), rng.uniform(0.25, 1.0, size))


def _class_params(seed: int, class_id: int) -> dict:
    """The appearance of one product; depends only on (seed, class_id)."""
    rng = np.random.default_rng([seed, class_id, 0])
    n = int(rng.integers(2, 5))
    # The first primitive is the body, centred and large; the others are attached parts.
    centre = np.concatenate([rng.uniform(-0.1, 0.1, (1, 2)), rng.uniform(-0.5, 0.5, (n - 1, 2))], 0)
    size = np.concatenate([rng.uniform(0.45, 0.65, 1), rng.uniform(0.18, 0.4, n - 1)])
    textured = rng.uniform(size=n) < 0.5
    textured[int(rng.integers(n))] = True
    return dict(
        kind=rng.integers(0, 5, n),
        centre=centre.astype(np.float32),
        size=size.astype(np.float32),
        aspect=rng.uniform(0.45, 1.0, n).astype(np.float32),
        angle=rng.uniform(0, 2 * math.pi, n).astype(np.float32),
        lobes=rng.integers(4, 8, n),
        colour=_random_colour(rng, n),
        colour2=_random_colour(rng, n),
        textured=textured,
        texture=int(rng.integers(0, 3)),
        frequency=float(rng.uniform(1.5, 3.5)),
        orientation=float(rng.uniform(0, math.pi)),
    )


def _rotate(u, v, angle):
    angle = np.asarray(angle, np.float32)  # a float64 angle would silently upcast every pixel
    c, s = np.cos(angle), np.sin(angle)
    return c * u + s * v, -s * u + c * v


def _cos_multiple(c, k: int):
    """cos(k * theta) from cos(theta) by the Chebyshev recurrence (no arctan2 per pixel)."""
    previous, current = np.ones_like(c), c
    for _ in range(k - 1):
        previous, current = current, 2.0 * c * current - previous
    return current


def _primitive_distance(kind: int, u, v, size, aspect, lobes):
    """Approximate signed distance (object units) to a primitive centred at the origin."""
    if kind == _ELLIPSE:
        return np.sqrt((u * aspect) ** 2 + v * v) - size * aspect
    if kind == _RECTANGLE:
        return np.maximum(np.abs(u) - size, np.abs(v) - size * aspect)
    if kind == _TRIANGLE:
        d = v - size * 0.5
        for t in (math.pi / 6, 5 * math.pi / 6):
            d = np.maximum(d, -(u * math.cos(t) + v * math.sin(t)) - size * 0.5)
        return d
    rho = np.sqrt(u * u + v * v)
    if kind == _STAR:
        cos_k = _cos_multiple(u / (rho + 1e-6), int(lobes))
        return (rho - size * (0.7 + 0.3 * cos_k)) * 0.6
    inner = size * (1.0 - 0.5 * aspect)  # ring
    return np.maximum(rho - size, inner - rho)


def _pattern(kind: int, u, v, frequency, orientation):
    """Texture in [0, 1] with soft edges; ``u, v`` are object coordinates."""
    a, b = _rotate(u, v, orientation)
    w = 2 * math.pi * frequency
    if kind == _STRIPES:
        s = np.sin(w * a)
    elif kind == _CHECKS:
        s = np.sin(w * a) * np.sin(w * b) * 2.0
    else:
        s = (np.cos(w * a) * np.cos(w * b) - 0.35) * 2.0
    return np.clip(0.5 + 2.0 * s, 0.0, 1.0)


def _composite(image, alpha, colour):
    """image <- image + alpha * (colour - image), in place.

    Channels-first ``[n, 3, H, W]`` with ``alpha`` ``[n, 1, H, W]`` keeps the innermost loop
    along contiguous pixels, about 3x faster than broadcasting a trailing channel axis.
    """
    image += alpha * (colour - image)


def _uniform(rng, low, high, n):
    return rng.uniform(low, high, (n, 1, 1, 1)).astype(np.float32)


def _colours(rng, n):
    return _random_colour(rng, n).reshape(n, 3, 1, 1)


def _blob(rng, canvas, margin, present):
    """Composites one random distractor shape per image into ``canvas`` (masked by ``present``).

    The outline blends the L1, L2 and L-infinity norms (diamond .. ellipse .. rectangle) with
    per-image weights, so the shapes are uncorrelated with the product class; half of them are
    striped or checked with a random frequency and orientation. Each shape is evaluated only on
    a ``2 * margin`` square window around it (about a quarter of the frame at the defaults),
    copied out of and back into the padded canvas.
    """
    n, _, padded, _ = canvas.shape
    size, window = padded - 2 * margin, 2 * margin
    pixel = 2.0 / size
    cx, cy = rng.uniform(-1, 1, (2, n))
    # Top-left corner of each window in canvas pixels; the shape's centre is at the window centre.
    left = np.floor((cx + 1) / pixel).astype(np.int64)
    top = np.floor((cy + 1) / pixel).astype(np.int64)
    steps = np.arange(window, dtype=np.float32)
    x = ((left[:, None] - margin + steps + 0.5) * pixel - 1 - cx[:, None]).astype(np.float32)
    y = ((top[:, None] - margin + steps + 0.5) * pixel - 1 - cy[:, None]).astype(np.float32)
    x, y = x[:, None, None, :], y[:, None, :, None]

    radius, aspect = _uniform(rng, *_CLUTTER_RADIUS, n), _uniform(rng, 0.4, 1.0, n)
    u, v = _rotate(x, y, _uniform(rng, 0, 2 * math.pi, n))
    v = v / aspect
    au, av = np.abs(u), np.abs(v)
    weights = rng.dirichlet((0.3, 0.3, 0.3), n).astype(np.float32).reshape(n, 3, 1, 1, 1)
    rho = weights[:, 0] * (au + av) * 0.75 + weights[:, 1] * np.sqrt(u * u + v * v) + weights[:, 2] * np.maximum(au, av)
    alpha = np.clip(0.5 - (rho - radius) * (aspect / pixel), 0.0, 1.0) * present.reshape(n, 1, 1, 1)
    colour, colour2 = _colours(rng, n), _colours(rng, n)
    w = 2 * math.pi * _uniform(rng, 1.0, 2.5, n) / radius  # 1-2.5 periods per radius
    a, b = _rotate(u, v, _uniform(rng, 0, math.pi, n))
    checks = (rng.uniform(size=(n, 1, 1, 1)) < 0.5).astype(np.float32)
    textured = (rng.uniform(size=(n, 1, 1, 1)) < 0.5).astype(np.float32)
    s = np.sin(w * a) * (checks * 2.0 * np.sin(w * b) + (1.0 - checks))
    p = np.clip(0.5 + 2.0 * s, 0.0, 1.0) * textured

    # Per-image slicing beats one fancy-indexed gather/scatter here (about 2x at the defaults).
    region = np.stack([canvas[i, :, top[i] : top[i] + window, left[i] : left[i] + window] for i in range(n)])
    _composite(region, alpha, colour + p * (colour2 - colour))
    for i in range(n):
        canvas[i, :, top[i] : top[i] + window, left[i] : left[i] + window] = region[i]


def render_class(
    class_id: int, *, seed: int = 0, images_per_class: int = IMAGES_PER_CLASS, image_size: int = IMAGE_SIZE
) -> np.ndarray:
    """All images of one class as uint8 ``[images_per_class, image_size, image_size, 3]``."""
    params = _class_params(seed, class_id)
    rng = np.random.default_rng([seed, class_id, 1])
    n, h = images_per_class, image_size
    grid = (np.arange(h, dtype=np.float32) + 0.5) / h * 2 - 1
    x, y = grid[None, None, None, :], grid[None, None, :, None]  # [1, 1, 1, W], [1, 1, H, 1]
    pixel = 2.0 / h
    # Distractors are drawn on a canvas padded by half their window so windows never clip. A
    # distractor reaches at most 4/3 of its radius along its own axes (the L1 term), so sqrt(2)
    # times that in image axes, plus one anti-aliasing pixel.
    margin = int(math.ceil(_CLUTTER_RADIUS[1] * 4 / 3 * math.sqrt(2) * h / 2)) + 1
    canvas = np.zeros((n, 3, h + 2 * margin, h + 2 * margin), np.float32)
    image = canvas[:, :, margin : margin + h, margin : margin + h]  # a view

    # Background: a flat colour, for 60% of the images blended towards a second one.
    c0, c1 = _colours(rng, n), _colours(rng, n)
    direction = _uniform(rng, 0, 2 * math.pi, n)
    ramp = np.clip(0.5 + 0.5 * (np.cos(direction) * x + np.sin(direction) * y), 0.0, 1.0)
    ramp = ramp * (rng.uniform(size=(n, 1, 1, 1)) < 0.6).astype(np.float32)
    image[...] = c0 + ramp * (c1 - c0)

    counts = rng.integers(_CLUTTER_BEHIND[0], _CLUTTER_BEHIND[1] + 1, n)
    for slot in range(_CLUTTER_BEHIND[1]):
        _blob(rng, canvas, margin, (counts > slot).astype(np.float32))

    # The product under a random similarity transform (object coordinates u, v).
    angle = _uniform(rng, -_MAX_ROTATION, _MAX_ROTATION, n)
    scale = _uniform(rng, *_SCALE_RANGE, n)
    shift_x = _uniform(rng, -_MAX_SHIFT, _MAX_SHIFT, n)
    shift_y = _uniform(rng, -_MAX_SHIFT, _MAX_SHIFT, n)
    u, v = _rotate((x - shift_x) / scale, (y - shift_y) / scale, angle)
    inverse_pixel = scale / pixel
    texture = _pattern(params["texture"], u, v, params["frequency"], params["orientation"])
    for i in range(len(params["kind"])):
        pu, pv = _rotate(u - params["centre"][i, 0], v - params["centre"][i, 1], params["angle"][i])
        d = _primitive_distance(
            int(params["kind"][i]), pu, pv, params["size"][i], params["aspect"][i], params["lobes"][i]
        )
        alpha = np.clip(0.5 - d * inverse_pixel, 0.0, 1.0)
        colour = params["colour"][i].reshape(1, 3, 1, 1)
        if params["textured"][i]:
            colour = colour + texture * (params["colour2"][i].reshape(1, 3, 1, 1) - colour)
        _composite(image, alpha, colour)

    _blob(rng, canvas, margin, (rng.uniform(size=n) < _CLUTTER_FRONT_PROB).astype(np.float32))

    # Lighting (gain and colour cast) and sensor noise (uniform, from raw random bytes: fast).
    gain = rng.uniform(0.7, 1.25, (n, 1, 1, 1)) * rng.uniform(0.9, 1.1, (n, 3, 1, 1))
    image = image * gain.astype(np.float32)
    noise = np.frombuffer(rng.bytes(image.size), np.int8).reshape(image.shape)
    image += noise * np.float32(_NOISE_AMPLITUDE / 128.0)
    image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(image.transpose(0, 2, 3, 1))


def generate(
    class_ids: Iterable[int], *, seed: int = 0, images_per_class: int = IMAGES_PER_CLASS, image_size: int = IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Uncompressed images of the given classes: (uint8 [N, H, W, 3], int64 class ids [N])."""
    class_ids = [int(c) for c in class_ids]
    images = [render_class(c, seed=seed, images_per_class=images_per_class, image_size=image_size) for c in class_ids]
    labels = np.repeat(np.asarray(class_ids, np.int64), images_per_class)
    if not images:
        return np.zeros((0, image_size, image_size, 3), np.uint8), labels
    return np.concatenate(images, 0), labels


def split_classes(num_classes: int = NUM_CLASSES) -> dict[str, range]:
    """Global class ids of each split: the first half trains, the second half is held out."""
    half = num_classes // 2
    return {"train": range(0, half), "test": range(half, num_classes)}


def _encode_jpeg(image: np.ndarray) -> bytes:
    from PIL import Image  # local import keeps the module import cheap

    buffer = io.BytesIO()
    # 4:4:4 chroma: small coloured parts would bleed into each other with 4:2:0 at 32x32.
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buffer.getvalue()


def _check(seed, num_classes, images_per_class, image_size):
    if seed < 0:
        raise ValueError(f"seed must be >= 0. Received: seed={seed}")
    if num_classes < 2 or num_classes % 2:
        raise ValueError(f"num_classes must be an even number >= 2. Received: num_classes={num_classes}")
    if images_per_class < 2:
        raise ValueError(f"images_per_class must be >= 2. Received: images_per_class={images_per_class}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16. Received: image_size={image_size}")


def list_images(
    raw_dir=None, *, num_classes: int = NUM_CLASSES, images_per_class: int = IMAGES_PER_CLASS
) -> dict[str, list[ImageRecord]]:
    """The records ``load`` returns without their bytes (``data=None``): what a converter lists
    before its workers render each class with ``generate_class``."""
    del raw_dir
    _check(0, num_classes, images_per_class, IMAGE_SIZE)
    width = max(4, len(str(num_classes - 1)))
    return {
        split: [
            ImageRecord(
                image_id=f"{NAME}/c{class_id:0{width}d}/i{i:03d}.jpg",
                label=label,
                class_name=str(class_id),
                split=split,
            )
            for label, class_id in enumerate(class_ids)
            for i in range(images_per_class)
        ]
        for split, class_ids in split_classes(num_classes).items()
    }


def generate_class(
    class_name: str, *, seed: int = 0, images_per_class: int = IMAGES_PER_CLASS, image_size: int = IMAGE_SIZE
) -> list[bytes]:
    """The JPEG bytes of one class's images, in the order of its ``list_images`` records."""
    images = render_class(int(class_name), seed=seed, images_per_class=images_per_class, image_size=image_size)
    return [_encode_jpeg(image) for image in images]


def load(
    raw_dir=None,
    *,
    seed: int = 0,
    num_classes: int = NUM_CLASSES,
    images_per_class: int = IMAGES_PER_CLASS,
    image_size: int = IMAGE_SIZE,
) -> dict[str, list[ImageRecord]]:
    """Generate the dataset; ``raw_dir`` is ignored (nothing is read from or written to disk).

    Args:
      raw_dir: ignored; present for the common dataset-module signature.
      seed: the catalog; the same seed gives byte-identical JPEGs.
      num_classes: total classes, even and >= 2; the first half is ``train``, the rest ``test``.
      images_per_class: images rendered per class, >= 2 (self-retrieval needs a second image).
      image_size: height and width in pixels, >= 16.
    """
    _check(seed, num_classes, images_per_class, image_size)
    records = list_images(raw_dir, num_classes=num_classes, images_per_class=images_per_class)
    for listed in records.values():
        for start in range(0, len(listed), images_per_class):
            encoded = generate_class(
                listed[start].class_name, seed=seed, images_per_class=images_per_class, image_size=image_size
            )
            for i, data in enumerate(encoded):
                listed[start + i] = dataclasses.replace(listed[start + i], data=data)
    return records
