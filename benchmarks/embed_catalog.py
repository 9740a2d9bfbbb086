"""Images per second of the Beam embedding job beside a plain Python loop over the same SavedModel.

Exports an untrained embedding model (default InceptionV1 at 224 px, 512-d: the speed does not
depend on the weights), writes ``--n`` JPEG photos-like images of 320 x 240, and times, each in a
fresh subprocess and end to end (start of the work to embeddings in hand, model loading included):

- ``loop``: a plain Python loop: read the files, call ``serving_default`` on batches of
  ``--batch-size`` images, pack the sign bits (it keeps the result in memory and writes nothing);
- ``beam``: ``python -m pipelines.embed_catalog`` with the same batch size on the local runner
  (FnApiRunner, one worker): listing, reading, checking, RunInference, Parquet, dead letter, manifest;
- ``beam x2``: the same with ``--direct_num_workers 2 --direct_running_mode multi_processing``;
- ``beam x2, 1 thread each``: and ``--threads 1``, so the two processes do not oversubscribe 2 cores.

The overhead ratio is the job's wall time over the loop's. The loop's steady-state rate (model
already loaded) is printed too. Methods run in ``--repeat`` interleaved rounds and the best time of
each is reported, which keeps other load on a shared machine out of the comparison.

    python benchmarks/embed_catalog.py                       # 512 images, a few minutes on 2 cores
    python benchmarks/embed_catalog.py --n 128 --image-size 96
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
METHODS = ("loop", "beam", "beam x2", "beam x2, 1 thread each")


def make_images(directory, n, seed=0):
    """``n`` JPEGs of 320 x 240: smooth colour fields plus noise, about the entropy of a photo."""
    from PIL import Image

    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:240, 0:320].astype(np.float32)
    for i in range(n):
        a, b, c = rng.uniform(0.01, 0.05, 3)
        base = np.stack([np.sin(a * x + i), np.cos(b * y), np.sin(c * (x + y))], axis=-1) * 100 + 128
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=90)
        with open(os.path.join(directory, f"{i:06d}.jpg"), "wb") as f:
            f.write(out.getvalue())


def export_model(directory, backbone, dim, image_size):
    from tfmetric import config as config_lib
    from tfmetric.export import export_saved_model
    from tfmetric.models import build_embedding_model

    config = config_lib.preset("synthetic")
    config.model.backbone, config.model.embedding_dim = backbone, dim
    config.data.image_size, config.data.resize_size = image_size, round(image_size * 256 / 224)
    model = build_embedding_model(backbone, embedding_dim=dim, image_size=image_size)
    return export_saved_model(model, config, directory, "bench")


def measure_loop(model_dir, images, batch_size):
    import tensorflow as tf

    start = time.perf_counter()
    signature = tf.saved_model.load(model_dir).signatures["serving_default"]
    loaded = time.perf_counter()
    paths = sorted(os.path.join(images, name) for name in os.listdir(images))
    embeddings, bits = [], []
    for i in range(0, len(paths), batch_size):
        encoded = []
        for path in paths[i : i + batch_size]:
            with open(path, "rb") as f:
                encoded.append(f.read())
        out = signature(image_bytes=tf.constant(encoded))["embedding"].numpy()
        embeddings.append(out)
        bits.append(np.packbits(out > 0, axis=-1))
    end = time.perf_counter()
    return {"wall_s": end - start, "steady_ips": len(paths) / (end - loaded), "count": len(paths)}


def measure_beam(model_dir, images, batch_size, output_dir, workers, threads):
    from pipelines import embed_catalog

    argv = [
        "--model",
        model_dir,
        "--input",
        os.path.join(images, "*.jpg"),
        "--output-dir",
        output_dir,
        "--batch-size",
        str(batch_size),
        "--threads",
        str(threads),
    ]
    if workers > 1:
        argv += ["--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"]
    start = time.perf_counter()
    _, manifest = embed_catalog.run(argv)
    return {"wall_s": time.perf_counter() - start, "count": manifest["count"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="images (default 512)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbone", default="inception_v1", choices=("inception_v1", "resnet50"))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each method's best is reported (default 3)")
    parser.add_argument("--measure", choices=METHODS, help=argparse.SUPPRESS)  # child process
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        model_dir, images = os.path.join(args.workdir, "models", "bench", "1"), os.path.join(args.workdir, "images")
        if args.measure == "loop":
            result = measure_loop(model_dir, images, args.batch_size)
        else:
            workers = 1 if args.measure == "beam" else 2
            threads = 1 if "1 thread" in args.measure else 0
            result = measure_beam(
                model_dir,
                images,
                args.batch_size,
                os.path.join(args.workdir, f"out-{workers}-{threads}"),
                workers,
                threads,
            )
        print(json.dumps(result))
        return

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory(prefix="embed-bench-") as workdir:
        export_model(os.path.join(workdir, "models"), args.backbone, args.dim, args.image_size)
        make_images(os.path.join(workdir, "images"), args.n)
        results = {}
        for round_ in range(args.repeat):  # interleaved rounds; the best of each method is kept
            for method in METHODS:
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--measure",
                    method,
                    "--workdir",
                    workdir,
                    "--batch-size",
                    str(args.batch_size),
                ]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO_ROOT, env=env).stdout
                result = json.loads(out.strip().splitlines()[-1])
                print(f"  round {round_ + 1}, {method}: {result['wall_s']:.1f} s", flush=True)
                if method not in results or result["wall_s"] < results[method]["wall_s"]:
                    results[method] = result
    loop = results["loop"]
    print(
        f"\n{args.n} JPEGs 320x240 -> {args.backbone} {args.image_size}px {args.dim}-d, batch {args.batch_size}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, best of {args.repeat}; loop steady state "
        f"{loop['steady_ips']:.1f} images/s\n"
    )
    print("| method | workers | wall s (end to end) | images/s | wall / loop wall |")
    print("|---|---:|---:|---:|---:|")
    for method in METHODS:
        r = results[method]
        assert r["count"] == args.n, (method, r)
        workers = 1 if method in ("loop", "beam") else 2
        print(
            f"| {method} | {workers} | {r['wall_s']:.1f} | {r['count'] / r['wall_s']:.1f} "
            f"| {r['wall_s'] / loop['wall_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
