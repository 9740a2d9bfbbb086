"""Self-retrieval Recall@{1,10,100,1000} at Stanford Online Products scale, beside plain faiss.

Times ``tfmetric.metrics.retrieval_metrics`` on random embeddings (60,502 x 512 float32, random
labels with about 5 images per class like SOP's test split) and a single faiss search of the same
queries with k = 1001 (IndexFlatIP on L2-normalised rows; IndexBinaryFlat on packed sign bits),
which is what an unblocked evaluation would run. Each measurement runs in its own subprocess so
its peak memory (``ru_maxrss``, which sees faiss's C++ allocations, unlike tracemalloc) is its own;
the figure reported is the peak during the measured call minus the peak after making the data.

    python benchmarks/retrieval.py            # full size, a few minutes on 2 cores
    python benchmarks/retrieval.py --n 5000   # quick
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

MEASUREMENTS = (("float", "tfmetric"), ("float", "faiss"), ("binary", "tfmetric"), ("binary", "faiss"))


def _data(n, dim):
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((n, dim), dtype=np.float32)  # no float64 temporary
    labels = rng.integers(0, max(1, n // 5), n)
    return embeddings, labels


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _recalls_from_faiss(ids, labels, ks):
    """Recall@K from a raw faiss result that still contains the query (dropped by index)."""
    n, width = ids.shape
    keep = ids != np.arange(n)[:, None]
    keep[keep.all(axis=1), -1] = False
    relevant = labels[ids[keep].reshape(n, width - 1)] == labels[:, None]
    first_hit = np.where(relevant.any(axis=1), relevant.argmax(axis=1), width)
    return {f"recall@{k}": float(np.mean(first_hit < k)) for k in ks}


def _measure(mode, method, n, dim, ks, block_size):
    import faiss

    from tfmetric import metrics

    embeddings, labels = _data(n, dim)
    before = _peak_mb()
    start = time.perf_counter()
    if method == "tfmetric":
        recalls = metrics.retrieval_metrics(embeddings, labels, ks=ks, binary=mode == "binary", block_size=block_size)
    elif mode == "float":
        normalized = embeddings.copy()
        faiss.normalize_L2(normalized)
        index = faiss.IndexFlatIP(dim)
        index.add(normalized)
        _, ids = index.search(normalized, max(ks) + 1)
    else:
        codes = np.packbits(embeddings > 0, axis=1)
        index = faiss.IndexBinaryFlat(dim)
        index.add(codes)
        _, ids = index.search(codes, max(ks) + 1)
    seconds = time.perf_counter() - start
    peak = _peak_mb() - before
    if method == "faiss":  # outside the measurement: a cross-check of the figures
        recalls = _recalls_from_faiss(ids, labels, ks)
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "threads": faiss.omp_get_max_threads(),
        **{k: v for k, v in recalls.items() if k.startswith("recall@")},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60502, help="number of embeddings (SOP test: 60502)")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension")
    parser.add_argument("--ks", default="1,10,100,1000", help="comma-separated K of Recall@K")
    parser.add_argument(
        "--block-size", type=int, default=None, help="retrieval_metrics block_size (default: its own choice)"
    )
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    ks = tuple(int(k) for k in args.ks.split(","))
    if max(ks) >= args.n:
        parser.error(f"--ks needs --n above {max(ks)}; received --n {args.n}")

    if args.measure:  # child process: one measurement, one JSON line
        print(json.dumps(_measure(*args.measure, args.n, args.dim, ks, args.block_size)))
        return

    rows = {}
    for mode, method in MEASUREMENTS:
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--measure",
            mode,
            method,
            "--n",
            str(args.n),
            "--dim",
            str(args.dim),
            "--ks",
            args.ks,
        ] + ([] if args.block_size is None else ["--block-size", str(args.block_size)])
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows[mode, method] = json.loads(output.strip().splitlines()[-1])

    print(
        f"self-retrieval, n={args.n}, dim={args.dim}, ~5 images/class, ks={ks}, "
        f"block_size={args.block_size or 'default'}, faiss threads={rows['float', 'faiss']['threads']}"
    )
    names = {"tfmetric": "tfmetric.metrics.retrieval_metrics", "faiss": f"faiss {{}} search, k={max(ks) + 1}"}
    index_names = {"float": "IndexFlatIP", "binary": "IndexBinaryFlat"}
    recall_keys = [f"recall@{k}" for k in ks]
    header = f"{'mode':<7} {'method':<40} {'seconds':>8} {'peak MB':>8}  " + "  ".join(recall_keys)
    print(header)
    print("-" * len(header))
    for mode in ("float", "binary"):
        ours, faiss_row = rows[mode, "tfmetric"], rows[mode, "faiss"]
        for method, row in (("tfmetric", ours), ("faiss", faiss_row)):
            name = names[method].format(index_names[mode])
            recalls = "  ".join(f"{row[k]:>{len(k)}.4f}" for k in recall_keys)
            print(f"{mode:<7} {name:<40} {row['seconds']:>8.1f} {row['peak_mb']:>8.0f}  {recalls}")
        print(
            f"{mode:<7} {'ratio tfmetric / faiss':<40} {ours['seconds'] / faiss_row['seconds']:>7.2f}x "
            f"{ours['peak_mb'] / max(faiss_row['peak_mb'], 1):>7.2f}x"
        )


if __name__ == "__main__":
    main()
