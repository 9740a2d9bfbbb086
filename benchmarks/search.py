"""Catalog search at 1,000,000 x 512-d: query time, memory and recall@10 of every index kind.

Builds each ``tfmetric.search`` kind (exact float ``flat``, exact Hamming ``binary``, and the ANN
kinds ``ivf``, ``hnsw``, ``binary-ivf``, ``binary-hnsw`` with their default parameters) with the
library's own code (``tfmetric.search.kinds``) over seeded random embeddings, and reports:

- build seconds (IVF training included);
- bytes per item of the saved index file; the resident memory the built index adds and the peak
  while building (from /proc/self/status, which sees faiss's C++ allocations), data already loaded;
- queries per second for a batch of queries in one call (all cores), and the median milliseconds
  of a single query on one thread (a server answering concurrent requests);
- the same for other values of nprobe / ef_search (``SWEEP``), the recall/speed trade-off;
- recall@10 against exact search of the same representation (ANN float vs ``flat``, ANN binary vs
  ``binary``, where a result counts when its Hamming distance is within the exact 10th distance,
  since ties are common) and against exact float search (what the bits cost).

The embeddings are random, L2-normalised, and clustered like a trained model's (``--data
clustered``: n / 100 random class centres plus isotropic noise of the same scale, so items of one
class have cosine about 0.5); ``--data gaussian`` gives structureless Gaussian vectors, the worst
case for any ANN index. Queries are drawn from the same distribution and are not in the catalog.
Each kind runs in its own subprocess so its memory figure is its own.

    python benchmarks/search.py                   # 1M x 512, about 30 minutes on 2 cores
    python benchmarks/search.py --n 100000        # quick
    python benchmarks/search.py --kinds flat,ivf --data gaussian
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
ORDER = ("flat", "binary", "ivf", "hnsw", "binary-ivf", "binary-hnsw")  # exact kinds first: the references
# Search-time parameter values measured beside the default (no rebuild needed): the recall/speed trade-off.
SWEEP = {
    "ivf": ("nprobe", (8, 128)),
    "binary-ivf": ("nprobe", (8, 128)),
    "hnsw": ("ef_search", (16, 256)),
    "binary-hnsw": ("ef_search", (16, 256)),
}


def _status_mb(field):
    """VmRSS (current) or VmHWM (peak) of this process in MB, from /proc (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak():
    """Resets VmHWM to the current RSS (Linux >= 4.0), so the next peak is this step's own."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def make_data(workdir, n, dim, queries, data, seed=0, chunk=100_000):
    """Writes catalog.npy [n, dim] and queries.npy [queries, dim], float32 L2-normalised."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 100), dim), dtype=np.float32) if data == "clustered" else None

    def rows(count):
        x = rng.standard_normal((count, dim), dtype=np.float32)
        if centres is not None:
            x += centres[rng.integers(0, len(centres), count)]
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    out = np.lib.format.open_memmap(os.path.join(workdir, "catalog.npy"), "w+", np.float32, (n, dim))
    for start in range(0, n, chunk):
        out[start : start + chunk] = rows(min(chunk, n - start))
    out.flush()
    del out
    np.save(os.path.join(workdir, "queries.npy"), rows(queries))


def measure(kind, workdir, k, single):
    """Builds and searches one kind; saves its results; returns its figures."""
    import faiss

    from tfmetric.search import kinds

    catalog = np.load(os.path.join(workdir, "catalog.npy"))
    queries = np.load(os.path.join(workdir, "queries.npy"))
    if kinds.is_binary(kind):
        catalog = np.concatenate(
            [
                np.packbits(catalog[i : i + 100_000] > 0, axis=1)  # serving_binary's layout
                for i in range(0, len(catalog), 100_000)
            ]
        )
        queries = np.packbits(queries > 0, axis=1)
    n = len(catalog)
    params = kinds.default_params(kind, n)
    _reset_peak()
    before = _status_mb("VmRSS")
    start = time.perf_counter()
    index = kinds.create(kind, catalog, params)
    build_s = time.perf_counter() - start
    peak_mb, resident_mb = _status_mb("VmHWM") - before, _status_mb("VmRSS") - before

    threads = faiss.omp_get_max_threads()
    path = os.path.join(workdir, f"{kind}.index")
    kinds.write(index, kind, path)
    size = os.path.getsize(path)
    os.remove(path)
    name, values = SWEEP.get(kind, (None, ()))
    runs = []
    for value in [None] + [v for v in values if v != params.get(name)]:
        run_params = kinds.with_search_params(kind, params, **({name: value} if value else {}))
        kinds.configure(index, kind, run_params)
        label = kind if value is None else f"{kind}@{name}={value}"
        runs.append({"label": label, "params": run_params, **_search(index, kind, queries, k, single, workdir, label)})
        faiss.omp_set_num_threads(threads)
    return {
        "kind": kind,
        "params": params,
        "build_s": build_s,
        "bytes_per_item": size / n,
        "index_mb": size / 2**20,
        "build_peak_mb": peak_mb,
        "resident_mb": resident_mb,
        "threads": threads,
        "runs": runs,
    }


def _search(index, kind, queries, k, single, workdir, label):
    """QPS of one batch search (all threads), median ms of single queries (one thread); saves results."""
    import faiss

    from tfmetric.search import kinds

    start = time.perf_counter()
    scores, rows = kinds.search(index, kind, queries, k)
    batch_s = time.perf_counter() - start
    faiss.omp_set_num_threads(1)  # one request, one thread: how a server runs concurrent queries
    times = []
    for q in queries[:single]:
        start = time.perf_counter()
        kinds.search(index, kind, q[None], k)
        times.append(time.perf_counter() - start)
    np.save(os.path.join(workdir, f"{label}.rows.npy"), rows)
    np.save(os.path.join(workdir, f"{label}.scores.npy"), scores)
    return {"qps_batch": len(queries) / batch_s, "ms_single": 1000 * float(np.median(times))}


def recalls(label, workdir, k):
    """(recall@k vs exact search of the same representation, recall@k vs exact float search)."""
    rows = np.load(os.path.join(workdir, f"{label}.rows.npy"))
    flat = (
        np.load(os.path.join(workdir, "flat.rows.npy"))
        if os.path.exists(os.path.join(workdir, "flat.rows.npy"))
        else None
    )

    def overlap(a, b):
        return float(np.mean([len(set(x[x >= 0]) & set(y)) / k for x, y in zip(a, b)]))

    vs_float = overlap(rows, flat) if flat is not None else None
    if not label.startswith("binary"):
        return vs_float, vs_float
    exact = os.path.join(workdir, "binary.scores.npy")
    if not os.path.exists(exact):
        return None, vs_float
    kth = np.load(exact)[:, k - 1 : k]
    distances = np.load(os.path.join(workdir, f"{label}.scores.npy"))
    return float(np.mean((rows >= 0) & (distances <= kth))), vs_float


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="catalog size (default 1,000,000)")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension (default 512)")
    parser.add_argument("--queries", type=int, default=1000, help="queries searched in one batch (default 1000)")
    parser.add_argument("--single", type=int, default=50, help="queries timed one by one (default 50)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--data", choices=("clustered", "gaussian"), default="clustered")
    parser.add_argument("--kinds", default=",".join(ORDER), help="comma-separated kinds (default all)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child process: one kind
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.workdir, args.k, args.single)))
        return
    chosen = [kind for kind in ORDER if kind in args.kinds.split(",")]
    with tempfile.TemporaryDirectory(prefix="search-bench-") as workdir:
        start = time.perf_counter()
        make_data(workdir, args.n, args.dim, args.queries, args.data)
        print(
            f"{args.n:,} x {args.dim} {args.data} embeddings, {args.queries} queries, k={args.k} "
            f"(made in {time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        # GNU OpenMP's spinning threads collapse faiss's throughput (10-30x measured) when another
        # process holds a core; passive waiting costs nothing on an idle machine.
        env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        results = []
        for kind in chosen:
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--measure",
                kind,
                "--workdir",
                workdir,
                "--k",
                str(args.k),
                "--single",
                str(args.single),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO_ROOT, env=env).stdout
            result = json.loads(out.strip().splitlines()[-1])
            for run in result["runs"]:
                run["recall"], run["recall_float"] = recalls(run["label"], workdir, args.k)
            results.append(result)
            print(f"  {kind}: done in {result['build_s']:.0f} s build", flush=True)
    print(
        f"\nfaiss threads: {results[0]['threads']} for batches, 1 for single queries; OMP_WAIT_POLICY="
        f"{env['OMP_WAIT_POLICY']}; load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| kind | parameters | build s | bytes/item | index MB | RSS after build MB | build peak MB "
        "| QPS (batch) | ms/query (single) | recall@10 vs exact | recall@10 vs exact float |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        for i, run in enumerate(r["runs"]):
            params = ", ".join(f"{k}={v}" for k, v in run["params"].items()) or "-"
            built = (
                (
                    f"{r['build_s']:.1f} | {r['bytes_per_item']:.0f} | {r['index_mb']:.0f} | {r['resident_mb']:.0f} "
                    f"| {r['build_peak_mb']:.0f}"
                )
                if i == 0
                else '" | " | " | " | "'
            )
            print(
                f"| {r['kind']} | {params} | {built} | {run['qps_batch']:.0f} | {run['ms_single']:.2f} "
                f"| {_fmt(run['recall'], '.3f')} | {_fmt(run['recall_float'], '.3f')} |"
            )


if __name__ == "__main__":
    main()
