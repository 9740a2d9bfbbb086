"""Images/s of the Beam TFRecord converter (1 and 2 workers) beside a plain Python loop.

Generates an image folder of JPEGs, converts it with ``pipelines.build_tfrecords`` on the local
runner in-process (1 worker) and with ``--direct_num_workers 2 --direct_running_mode
multi_processing``, and with a single-process loop that writes the same records through the same
functions (header check, decode check, schema); then checks that all three outputs are
byte-identical and prints a table. Times are wall clock and include the runner's start-up (for the
multi-process runner: starting worker processes that import TensorFlow); the same run over 4 images
measures that start-up, and the last column is the rate once it is paid.

    python benchmarks/build_tfrecords.py [--num-images 3000] [--num-classes 60] [--image-size 256]
"""
import argparse
import logging
import math
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Worker processes of the multi-process runner import pipelines.* by name.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

import tensorflow as tf  # noqa: E402

from pipelines import build_tfrecords  # noqa: E402
from tfmetric.data import image_header, schema  # noqa: E402
from tfmetric.datasets import imagefolder, tfrecord_dir  # noqa: E402


def generate(root, num_images, num_classes, size, seed=0):
    """Smooth random colour fields (JPEG sizes like photos of that size), class folders c000..."""
    rng = np.random.default_rng(seed)
    for i in range(num_images):
        coarse = rng.integers(0, 256, (8, 8, 3), np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
        noise = rng.integers(-12, 13, (size, size, 3))
        pixels = np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8)
        path = os.path.join(root, f"c{i % num_classes:03d}", f"{i:06d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(pixels).save(path, "JPEG", quality=90)


def plain_loop(raw, out_dir, requested_shards):
    """The same conversion as the Beam job, one image after the other in this process."""
    for split, records in imagefolder.load(raw).items():
        kept = []
        for r in records:
            with open(r.path, "rb") as f:
                data = f.read()
            try:
                info = image_header.inspect_image(data, image_header.DEFAULT_MAX_PIXELS)
            except image_header.ImageError:
                continue
            kept.append((r, info))
        labels = {old: new for new, old in enumerate(sorted({r.label for r, _ in kept}))}
        n = min(requested_shards or max(1, math.ceil(len(records) / build_tfrecords.IMAGES_PER_SHARD)),
                len(labels))
        shards = {}
        for r, info in kept:
            shards.setdefault(labels[r.label] % n, []).append((labels[r.label], r, info))
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        for index, items in shards.items():
            path = os.path.join(out_dir, split, f"{split}-{index:05d}-of-{n:05d}.tfrecord")
            with tf.io.TFRecordWriter(path) as writer:
                for label, r, info in sorted(items, key=lambda e: (e[0], e[1].image_id)):
                    writer.write(schema.serialize_example(info.encoded, info.format, info.height,
                                                          info.width, label, r.class_name,
                                                          r.image_id))


def shard_bytes(directory):
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            if name.endswith(".tfrecord"):
                with open(os.path.join(root, name), "rb") as f:
                    out[os.path.relpath(os.path.join(root, name), directory)] = f.read()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=3000)
    parser.add_argument("--num-classes", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--num-shards", type=int, default=4)
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw")
        start = time.perf_counter()
        generate(raw, args.num_images, args.num_classes, args.image_size)
        megabytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(raw)
                        for f in fs) / 1e6
        print(f"Generated {args.num_images} JPEGs of {args.image_size}x{args.image_size} "
              f"({megabytes:.1f} MB, {args.num_classes} classes) in "
              f"{time.perf_counter() - start:.1f} s; {os.cpu_count()} CPUs")

        runs = [("plain Python loop", 1, None),
                ("Beam, local runner in-process", 1, []),
                ("Beam, multi_processing", 2, ["--direct_num_workers", "2",
                                               "--direct_running_mode", "multi_processing",
                                               "--default_sdk_harness_log_level", "WARNING"])]
        # Start-up: the same run over 4 images, so the steady rate can be told from fixed costs.
        tiny = os.path.join(tmp, "tiny")
        generate(tiny, 4, 2, args.image_size)
        rows, outputs = [], []
        for name, workers, beam_args in runs:
            timings = []
            for source in (tiny, raw):
                data = os.path.join(tmp, f"data{len(rows)}-{len(timings)}")
                start = time.perf_counter()
                if beam_args is None:
                    out = os.path.join(data, "plain")
                    plain_loop(source, out, args.num_shards)
                else:
                    build_tfrecords.run(["--dataset", "imagefolder", "--raw-dir", source,
                                         "--data-dir", data, "--num-shards", str(args.num_shards),
                                         *beam_args])
                    out = tfrecord_dir(data, "imagefolder")
                timings.append(time.perf_counter() - start)
            rows.append((name, workers, *timings))
            outputs.append(shard_bytes(out))

        n = args.num_images
        print(f"\n| {'method':<30} | workers | images | seconds | images/s | start-up s | "
              f"images/s after start-up |")
        print(f"|{'-' * 32}|---------|--------|---------|----------|------------|"
              f"-------------------------|")
        for name, workers, startup, seconds in rows:
            print(f"| {name:<30} | {workers:>7} | {n:>6} | {seconds:>7.1f} | {n / seconds:>8.0f} | "
                  f"{startup:>10.1f} | {n / max(seconds - startup, 1e-9):>23.0f} |")
        identical = all(o == outputs[0] for o in outputs[1:]) and outputs[0]
        print(f"\nShards byte-identical across the three: {'yes' if identical else 'NO'}")
        return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
