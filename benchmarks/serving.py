"""Latency and throughput of the exported signatures beside the raw Keras model.

The Keras row runs the embedding model on images already decoded and preprocessed (float32
[batch, S, S, 3]); ``serving_images`` adds resize / crop / normalise of decoded uint8 images;
``serving_default`` and ``serving_binary`` add JPEG header checks and decoding of the original bytes
(the bits add a sign-and-pack). The difference between the rows is the cost of doing that work
inside the graph. All rows run in this process (tf.saved_model.load), not through TF Serving's RPC.

    python benchmarks/serving.py                       # InceptionV1 at 224 (random weights), dim 512
    python benchmarks/serving.py --workdir runs/demo   # a trained run, its own preprocessing
"""

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfmetric import config as config_lib  # noqa: E402
from tfmetric.data import preprocessing  # noqa: E402
from tfmetric.export import export_saved_model  # noqa: E402
from tfmetric.metrics.evaluation import compiled_embedder  # noqa: E402
from tfmetric.models.backbones import backbone_preprocessing  # noqa: E402
from tfmetric.models.embedding import build_embedding_model  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=None, help="benchmark this training run instead of a random model")
    p.add_argument("--backbone", default="inception_v1", choices=("inception_v1", "resnet50"))
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--resize-size", type=int, default=256)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--source-size", default="500x375", help="WxH of the JPEGs sent (CUB/Cars are about this)")
    p.add_argument("--batch", type=int, default=64, help="batch of the throughput measurement")
    p.add_argument("--latency-runs", type=int, default=30, help="rounds of batch-1 calls")
    p.add_argument("--throughput-runs", type=int, default=5, help="rounds of full-batch calls")
    return p.parse_args(argv)


def _source_images(n, width, height, seed=0):
    """Photo-like JPEG content: smooth gradients and blobs plus mild noise (noise alone compresses badly)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    images = []
    for _ in range(n):
        base = rng.uniform(0, 255, 3) * (x[..., None] / width) + rng.uniform(0, 255, 3) * (y[..., None] / height)
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(20, min(width, height) / 2)
        blob = ((x - cx) ** 2 + (y - cy) ** 2 < r * r)[..., None] * rng.uniform(-120, 120, 3)
        noise = rng.normal(0, 6, (height, width, 3))
        images.append(np.clip(base / 2 + blob + noise + 60, 0, 255).astype(np.uint8))
    return np.stack(images)


def _run(fn):
    start = time.perf_counter()
    out = fn()
    for value in out.values() if isinstance(out, dict) else [out]:
        value.numpy()
    return time.perf_counter() - start


def _interleaved(fns, rounds):
    """Seconds of each fn over ``rounds`` rounds; a round calls every fn once, so a load spike on a
    shared machine hits all rows alike instead of one of them."""
    for fn in fns:
        fn()  # warm-up: tracing, allocator
    times = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            times[i].append(_run(fn))
    return times


def _model_and_config(args):
    if args.workdir:
        import json

        import tfmetric.layers  # noqa: F401  custom layers

        with open(os.path.join(args.workdir, "config.json")) as f:
            config = config_lib.ExperimentConfig.from_dict(json.load(f))
        return keras.models.load_model(os.path.join(args.workdir, "embedding_model.keras"), compile=False), config
    config = config_lib.preset("synthetic")
    config.data.image_size, config.data.resize_size = args.image_size, args.resize_size
    config.model.backbone, config.model.embedding_dim, config.model.weights = args.backbone, args.dim, None
    model = build_embedding_model(args.backbone, args.dim, args.image_size)
    return model, config


def main(argv=None):
    args = parse_args(argv)
    width, height = (int(v) for v in args.source_size.lower().split("x"))
    model, config = _model_and_config(args)
    d = config.data
    normalization = backbone_preprocessing(config.model.backbone, config.model.weights)
    decoded = _source_images(args.batch, width, height)
    encoded = np.array([tf.io.encode_jpeg(image, quality=90).numpy() for image in decoded], dtype=object)
    preprocessed = preprocessing.eval_preprocess_image(decoded, d.image_size, d.resize_size, normalization)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = export_saved_model(model, config, tmp, "bench")
        export_s = time.perf_counter() - start
        loaded = tf.saved_model.load(path)
        keras_fn = compiled_embedder(model)
        sig = loaded.signatures
        rows = [
            ("keras model (preprocessed float32)", lambda n: keras_fn(preprocessed[:n])),
            ("serving_images (decoded uint8)", lambda n: sig["serving_images"](images=tf.constant(decoded[:n]))),
            ("serving_default (JPEG bytes)", lambda n: sig["serving_default"](image_bytes=tf.constant(encoded[:n]))),
            ("serving_binary (JPEG bytes)", lambda n: sig["serving_binary"](image_bytes=tf.constant(encoded[:n]))),
        ]
        latency = _interleaved([functools.partial(fn, 1) for _, fn in rows], args.latency_runs)
        batch = _interleaved([functools.partial(fn, args.batch) for _, fn in rows], args.throughput_runs)
        results = [
            (name, statistics.median(lat) * 1e3, np.percentile(lat, 90) * 1e3, args.batch / statistics.median(bat))
            for (name, _), lat, bat in zip(rows, latency, batch)
        ]

    print(
        f"{config.model.backbone} {d.image_size}x{d.image_size} (resize {d.resize_size}), dim "
        f"{model.output_shape[-1]}, JPEG {width}x{height} ({np.mean([len(e) for e in encoded]) / 1024:.0f} KiB), "
        f"{os.cpu_count()} CPUs, TF {tf.__version__}; export took {export_s:.1f}s"
    )
    base_latency, base_throughput = results[0][1], results[0][3]
    header = f"| {'path':36s} | batch 1 p50 ms | p90 ms | vs keras | batch {args.batch} img/s | vs keras |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, p50, p90, throughput in results:
        print(
            f"| {name:36s} | {p50:14.1f} | {p90:6.1f} | {p50 / base_latency:7.2f}x | "
            f"{throughput:{len(f'batch {args.batch} img/s')}.1f} | {throughput / base_throughput:7.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
