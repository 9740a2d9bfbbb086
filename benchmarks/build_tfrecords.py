"""Images/s of the Beam TFRecord converter (1 and 2 workers, FnApiRunner and DaskRunner) beside a
plain Python loop.

Generates an image folder of JPEGs and converts it with a single-process loop that writes the same
records through the same functions (header check, decode check, schema), with
``pipelines.build_tfrecords`` on the local runner in-process (1 worker), with
``--direct_num_workers 2 --direct_running_mode multi_processing`` and with ``--runner DaskRunner``
on a local dask.distributed cluster of 2 worker processes (started once, before the timings, as a
standing cluster would be); then checks that all outputs are byte-identical and prints a table.

Times are wall clock, the best of ``--repeats`` runs taken round-robin over the methods (the machine
may be shared, and its speed may change during the benchmark), and include the
runner's start-up: building the pipeline, and each worker process importing Beam and TensorFlow
(which imports Keras 3, and with it scikit-learn, SciPy and matplotlib: about 7 s of CPU per
process on this machine, most of the multi_processing start-up). The same run over 4 images
measures that start-up, just before each timed run; "after start-up" is (images - 4) / (seconds -
start-up seconds) of one such pair, the converter's steady rate, best over the repeats, counted
only where the difference is at least a quarter of the run (otherwise it is noise, and "n/a" is
printed). The table's seconds and start-up columns are the best of each. The default size
(10,000 images) makes the steady rate, not a fixed start-up, the bulk of each run; the targets
compare steady rates.

    python benchmarks/build_tfrecords.py [--num-images 10000] [--num-classes 100] [--image-size 256] \
        [--repeats 2] [--no-dask]
"""

import argparse
import logging
import math
import os
import shutil
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
        n = min(requested_shards or max(1, math.ceil(len(records) / build_tfrecords.IMAGES_PER_SHARD)), len(labels))
        shards = {}
        for r, info in kept:
            shards.setdefault(labels[r.label] % n, []).append((labels[r.label], r, info))
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        for index, items in shards.items():
            path = os.path.join(out_dir, split, f"{split}-{index:05d}-of-{n:05d}.tfrecord")
            with tf.io.TFRecordWriter(path) as writer:
                for label, r, info in sorted(items, key=lambda e: (e[0], e[1].image_id)):
                    writer.write(
                        schema.serialize_example(
                            info.encoded, info.format, info.height, info.width, label, r.class_name, r.image_id
                        )
                    )


def shard_bytes(directory):
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            if name.endswith(".tfrecord"):
                with open(os.path.join(root, name), "rb") as f:
                    out[os.path.relpath(os.path.join(root, name), directory)] = f.read()
    return out


TINY = 4


def _convert(source, data, num_shards, beam_args):
    if beam_args is None:
        out = os.path.join(data, "plain")
        plain_loop(source, out, num_shards)
        return out
    build_tfrecords.run(
        [
            "--dataset",
            "imagefolder",
            "--raw-dir",
            source,
            "--data-dir",
            data,
            "--num-shards",
            str(num_shards),
            *beam_args,
        ]
    )
    return tfrecord_dir(data, "imagefolder")


def _timed(tmp, name, source, num_shards, beam_args, keep):
    """(seconds, the output's shard bytes if ``keep`` else None) of one run. The output is deleted
    at once: left on disk, its write-back to the disk would land in a later run's time."""
    data = os.path.join(tmp, f"{name}-{os.path.basename(source)}")
    start = time.perf_counter()
    out = _convert(source, data, num_shards, beam_args)
    seconds = time.perf_counter() - start
    shards = shard_bytes(out) if keep else None
    shutil.rmtree(data)
    return seconds, shards


def _after_startup(n, seconds, startup):
    work = seconds - startup
    return (n - TINY) / work if work >= 0.25 * seconds else None


def _rate(value):
    return f"{value:>8.0f}" if value is not None else f"{'n/a':>8}"


def _ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=10000)
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--num-shards", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1, help="runs per method; the best counts")
    parser.add_argument("--no-dask", action="store_true", help="skip the DaskRunner rows")
    args = parser.parse_args()
    if args.num_images <= TINY or args.repeats < 1:
        parser.error(f"--num-images must be > {TINY} and --repeats >= 1")
    logging.getLogger().setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw")
        start = time.perf_counter()
        generate(raw, args.num_images, args.num_classes, args.image_size)
        megabytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(raw) for f in fs) / 1e6
        print(
            f"Generated {args.num_images} JPEGs of {args.image_size}x{args.image_size} "
            f"({megabytes:.1f} MB, {args.num_classes} classes) in "
            f"{time.perf_counter() - start:.1f} s; {os.cpu_count()} CPUs; load average "
            f"{os.getloadavg()[0]:.1f}",
            flush=True,
        )
        tiny = os.path.join(tmp, "tiny")
        generate(tiny, TINY, 2, args.image_size)

        runs = [
            ("plain Python loop", 1, None),
            ("Beam FnApiRunner in-process", 1, []),
            (
                "Beam FnApiRunner multi_processing",
                2,
                [
                    "--direct_num_workers",
                    "2",
                    "--direct_running_mode",
                    "multi_processing",
                    "--default_sdk_harness_log_level",
                    "WARNING",
                ],
            ),
        ]
        cluster = None
        if not args.no_dask:
            from dask.distributed import LocalCluster  # optional here; pinned in requirements.txt

            start = time.perf_counter()
            cluster = LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            print(f"Dask cluster of 2 worker processes started in {time.perf_counter() - start:.1f} s", flush=True)
            runs.append(
                (
                    "Beam DaskRunner, local cluster",
                    2,
                    [
                        "--runner",
                        "DaskRunner",
                        "--dask_client_address",
                        cluster.scheduler_address,
                        "--dask_npartitions",
                        "4",
                    ],
                )
            )
        # Round-robin: every repeat runs each method once, so a change in the machine's speed
        # (other tenants) reaches all methods alike; the best run of each counts, and the steady
        # rate pairs each run with the start-up run just before it.
        timings = [[] for _ in runs]
        outputs = [None] * len(runs)
        try:
            for repeat in range(args.repeats):
                for i, (name, _, beam_args) in enumerate(runs):
                    last = repeat == args.repeats - 1
                    startup, _ = _timed(tmp, f"m{i}", tiny, args.num_shards, beam_args, False)
                    seconds, shards = _timed(tmp, f"m{i}", raw, args.num_shards, beam_args, last)
                    timings[i].append((seconds, startup))
                    if last:
                        outputs[i] = shards
                    print(f"  {name}: {seconds:.1f} s (start-up run {startup:.1f} s)", flush=True)
        finally:
            if cluster is not None:
                cluster.close()

        n = args.num_images
        print(f"\n| {'method':<34} | workers | images | seconds | images/s | start-up s | images/s after start-up |")
        print(f"|{'-' * 36}|---------|--------|---------|----------|------------|-------------------------|")
        rates = []
        for (name, workers, _), runs_of_method in zip(runs, timings):
            seconds = min(t for t, _ in runs_of_method)
            startup = min(s for _, s in runs_of_method)
            steadies = [r for r in (_after_startup(n, t, s) for t, s in runs_of_method) if r is not None]
            steady = max(steadies) if steadies else None
            rates.append((n / seconds, steady))
            print(
                f"| {name:<34} | {workers:>7} | {n:>6} | {seconds:>7.1f} | {n / seconds:>8.0f} | "
                f"{startup:>10.1f} | {_rate(steady):>23} |"
            )
        print("\nRatios (wall clock; after start-up):")
        print(
            f"  1 Beam worker / plain loop:      {_ratio(rates[1][0], rates[0][0])}; "
            f"{_ratio(rates[1][1], rates[0][1])}   (target >= 0.85x)"
        )
        print(
            f"  2 processes / 1 Beam worker:     {_ratio(rates[2][0], rates[1][0])}; "
            f"{_ratio(rates[2][1], rates[1][1])}   (target >= 1.4x)"
        )
        if len(rates) > 3:
            print(
                f"  Dask 2 workers / 1 Beam worker:  {_ratio(rates[3][0], rates[1][0])}; "
                f"{_ratio(rates[3][1], rates[1][1])}   (target >= 1.4x)"
            )
        identical = all(o == outputs[0] for o in outputs[1:]) and outputs[0]
        print(f"\nShards byte-identical across all {len(outputs)}: {'yes' if identical else 'NO'}")
        return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
