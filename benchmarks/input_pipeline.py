"""Images/s of the training input pipeline beside what a training step consumes and a PIL loader.

The pipeline is ``TFRecordSource.train_dataset``: class-grouped TFRecord shards -> streaming
class-balanced sampler -> JPEG decode fused with the random 224 crop of the 256x256 resize ->
flip -> ImageNet mean/std -> batches of 75, decoding on every core (AUTOTUNE). Beside it:

- the consumption rate of one training step (forward, backward, SGD update) of InceptionV1 and
  ResNet50 at batch 75 x 224 x 224 (random init; a few steps after one warm-up), which the
  pipeline must outrun, and
- a plain single-process PIL loader doing the same work (decode, bilinear resize to 256x256,
  random crop 224, flip, normalise, stack) from the same encoded bytes held in memory.

Images are generated photo-like JPEGs of 500x375 / 375x500 (the typical size of CUB, Cars, SOP),
written as shards the way pipelines.build_tfrecords does; ``--dataset/--data-dir`` benchmarks an
existing TFRecord directory instead.

    python benchmarks/input_pipeline.py                     # minutes; mostly the ResNet50 steps
    python benchmarks/input_pipeline.py --skip-train --batches 40
"""

import argparse
import io
import os
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from tfmetric.config import DataConfig  # noqa: E402
from tfmetric.data import preprocessing, schema  # noqa: E402
from tfmetric.data.class_index import ClassIndex  # noqa: E402
from tfmetric.data.tfrecord_source import TFRecordSource  # noqa: E402


def photo_jpeg(rng, height, width):
    """A JPEG with smooth structure, edges and sensor-like noise (so it compresses like a photo)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6.28, 3)
    pixels = np.stack(
        [110 + 80 * np.sin(xx / rng.uniform(15, 60) + phase[c]) * np.cos(yy / rng.uniform(15, 60)) for c in range(3)],
        -1,
    )
    cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(40, 150)
    pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.uniform(-80, 80, 3)
    pixels += rng.normal(0, 6, pixels.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def write_shards(directory, num_classes, images_per_class, num_shards):
    """Class-grouped shards (class c in shard c % num_shards); returns (paths, encoded images)."""
    rng = np.random.default_rng(0)
    writers = [
        tf.io.TFRecordWriter(os.path.join(directory, f"train-{s:05d}-of-{num_shards:05d}.tfrecord"))
        for s in range(num_shards)
    ]
    images = []
    for c in range(num_classes):
        for k in range(images_per_class):
            height, width = (375, 500) if rng.uniform() < 0.7 else (500, 375)
            data = photo_jpeg(rng, height, width)
            images.append(data)
            writers[c % num_shards].write(
                schema.make_example(data, "jpeg", height, width, c, f"class_{c}", f"{c}/{k}").SerializeToString()
            )
    for w in writers:
        w.close()
    paths = [os.path.join(directory, f"train-{s:05d}-of-{num_shards:05d}.tfrecord") for s in range(num_shards)]
    return paths, images


def time_batches(iterator, warmup, batches, batch_size):
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def pipeline_rate(source, config, batches):
    dataset = source.train_dataset("train", config, "imagenet_mean_std", epoch=0, steps=batches + 3, seed=0)
    return time_batches(iter(dataset), 3, batches, config.batch_size)


def pil_rate(images, config, batches):
    rng = np.random.default_rng(0)
    mean, std = np.array(preprocessing.IMAGENET_MEAN, np.float32), np.array(preprocessing.IMAGENET_STD, np.float32)
    s, r = config.image_size, config.resize_size

    def batch_iterator():
        while True:
            out = []
            for data in (images[i] for i in rng.integers(0, len(images), config.batch_size)):
                image = Image.open(io.BytesIO(data)).convert("RGB").resize((r, r), Image.BILINEAR)
                top, left = rng.integers(0, r - s + 1, 2)
                x = np.asarray(image, np.float32)[top : top + s, left : left + s]
                if rng.uniform() < 0.5:
                    x = x[:, ::-1]
                out.append((x / 255.0 - mean) / std)
            yield np.stack(out)

    return time_batches(batch_iterator(), 1, batches, config.batch_size)


def train_step_rate(backbone, config, num_classes, steps):
    import keras

    from tfmetric.models.embedding import build_embedding_model, build_training_model

    embedding = build_embedding_model(backbone, 512, config.image_size, weights=None)
    model = build_training_model(embedding, num_classes)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    variables = model.trainable_variables

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    images = tf.random.normal([config.batch_size, config.image_size, config.image_size, 3])
    labels = tf.random.uniform([config.batch_size], 0, num_classes, tf.int32)

    def steps_iterator():
        while True:
            yield float(step(images, labels))

    return time_batches(steps_iterator(), 1, steps, config.batch_size)


def index_startup(source):
    """Seconds to build the train split's ClassIndex by scanning labels, and from class runs."""
    paths = source._paths("train")
    start = time.perf_counter()
    scanned = ClassIndex.scan(paths)
    scan_s = time.perf_counter() - start
    runs, offsets = [[] for _ in paths], [[] for _ in paths]  # what the converter records in the manifest
    for label in scanned.order:
        shard, _, count = scanned.runs[label]
        runs[shard].append([int(label), int(count)])
        offsets[shard].append(int(scanned.offsets[label]))
    start = time.perf_counter()
    ClassIndex.from_runs(paths, runs, offsets)
    return scan_s, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=48, help="generated classes")
    parser.add_argument("--images-per-class-on-disk", type=int, default=12)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=75)
    parser.add_argument("--images-per-class", type=int, default=5, help="K of the sampler (SOP: 5, CUB: 25)")
    parser.add_argument("--batches", type=int, default=24, help="timed pipeline batches")
    parser.add_argument("--pil-batches", type=int, default=6)
    parser.add_argument("--train-steps", type=int, default=2, help="timed training steps per backbone")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--dataset", help="benchmark <data-dir>/tfrecords/<dataset> instead of generated shards")
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    config = DataConfig(batch_size=args.batch_size, images_per_class=args.images_per_class)

    with tempfile.TemporaryDirectory() as tmp:
        if args.dataset:
            from tfmetric.data.manifest import load_manifest

            source = TFRecordSource.from_manifest(load_manifest(args.data_dir, args.dataset), args.data_dir)
            images = [b for b, _ in source.raw_dataset("train").take(600).as_numpy_iterator()]
            described = f"{args.dataset} train split"
        else:
            paths, images = write_shards(tmp, args.classes, args.images_per_class_on_disk, args.shards)
            source = TFRecordSource({"train": paths})
            described = (
                f"{len(images)} generated JPEGs (500x375 / 375x500, "
                f"{sum(map(len, images)) / len(images) / 1024:.0f} KB avg), {args.shards} shards"
            )
        startup = index_startup(source)
        rows = [
            (
                "tf.data pipeline (sampler + fused decode/crop + flip + normalise)",
                pipeline_rate(source, config, args.batches),
            )
        ]
        rows.append(
            (
                "PIL loader, one process (decode, resize, crop, flip, normalise)",
                pil_rate(images, config, args.pil_batches),
            )
        )
        if not args.skip_train:
            for backbone in ("inception_v1", "resnet50"):
                rate = train_step_rate(backbone, config, max(2, source.num_classes("train")), args.train_steps)
                rows.append((f"{backbone} training step consumes (batch {args.batch_size}, random init)", rate))

    pipeline = rows[0][1]
    print(
        f"Input pipeline, {described}; batch {config.batch_size} = "
        f"{config.batch_size // config.images_per_class} classes x {config.images_per_class}, "
        f"{config.image_size}x{config.image_size} crops of {config.resize_size}x{config.resize_size}; "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}"
    )
    header = f"{'stage':<72} {'images/s':>9} {'pipeline / stage':>17}"
    print(header)
    print("-" * len(header))
    for name, rate in rows:
        ratio = "" if rate is pipeline else f"{pipeline / rate:>16.2f}x"
        print(f"{name:<72} {rate:>9.1f} {ratio:>17}")
    print(
        f"sampler start-up (class index): label scan of every record {startup[0] * 1e3:.1f} ms, "
        f"from the manifest's class runs {startup[1] * 1e3:.2f} ms ({startup[0] / startup[1]:.0f}x)"
    )
    if not args.skip_train:
        slowest_ok = all(pipeline > rate for _, rate in rows[2:])
        print(f"pipeline faster than both training steps consume: {'yes' if slowest_ok else 'NO'}")


if __name__ == "__main__":
    main()
