"""The search service against a plain in-process loop, and rescore against exact float search.

Part 1, HTTP overhead: a small untrained InceptionV1 embedding model (``--dim``, ``--image-size``)
is exported, a catalog of seeded noise JPEGs embedded and indexed with the default build (flat).
The same query images are then searched, for each mode (float, binary, rescore), with 1 and 8
concurrent clients:

- in process: ``SavedModelEmbedder`` + ``ModeSearcher`` (SavedModel + faiss, no HTTP), the clients
  being threads;
- over HTTP: ``python -m tfmetric.serve --workers 8`` on a loopback port, each client a thread
  with its own keep-alive ``http.client`` connection.

It prints requests/s and p50 / p99 latency of each (medians over ``--rounds`` rounds, each
measuring the two back to back in alternating order so both see the same load), and the HTTP
overhead (the median over rounds of 1 - HTTP req/s / in-process req/s; the target is <= 15 % at
8 clients).

Part 2, rescore at scale: ``--n`` x 512 random clustered embeddings as ``benchmarks/search.py``
makes them (``make_data``), a flat index with its sign bits; for ``--queries`` queries (one
thread) the median ms of float and of rescore search at several ``rescore_factor`` values, and
rescore's recall@10 against exact float search.

    python benchmarks/serve.py                     # 1M x 512 codes: about 10 minutes, 6 GB
    python benchmarks/serve.py --n 100000          # quick
"""

import argparse
import concurrent.futures
import http.client
import io
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
MODES = ("float", "binary", "rescore")
CLIENTS = (1, 8)
FACTORS = (5, 10, 20)


def _noise_jpeg(seed, size):
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def prepare(workdir, args):
    """(model dir, index dir, query images): an exported tiny model and a flat index of noise images."""
    import keras

    from tfmetric import config as config_lib
    from tfmetric.export import export_saved_model
    from tfmetric.models import build_embedding_model
    from tfmetric.search import SavedModelEmbedder, build_index, model_identity, write_catalog

    keras.utils.set_random_seed(0)
    config = config_lib.preset("synthetic")
    config.data.image_size, config.data.resize_size = args.image_size, args.image_size + args.image_size // 8
    config.model.embedding_dim = args.dim
    model = build_embedding_model("inception_v1", embedding_dim=args.dim, image_size=args.image_size)
    model_dir = export_saved_model(model, config, os.path.join(workdir, "models"), "bench")
    images = [_noise_jpeg(i, args.image_size) for i in range(args.catalog)]
    embedder = SavedModelEmbedder(model_dir)
    vectors = np.stack([r.embedding for s in range(0, len(images), 64) for r in embedder.embed(images[s : s + 64])])
    write_catalog(
        os.path.join(workdir, "emb"), [f"img-{i}" for i in range(len(images))], vectors, model=model_identity(model_dir)
    )
    index_dir = os.path.join(workdir, "index")
    build_index(os.path.join(workdir, "emb"), index_dir)
    queries = [_noise_jpeg(10_000 + i, args.image_size) for i in range(args.requests)]
    return model_dir, index_dir, queries


def _run_clients(clients, queries, one):
    """(requests/s, p50 ms, p99 ms) of ``clients`` threads sharing the queries; ``one(client, image)``."""
    latencies, lock = [], threading.Lock()
    chunks = [queries[c::clients] for c in range(clients)]

    def client(c):
        state = {}
        for image in chunks[c]:
            start = time.perf_counter()
            one(state, image)
            with lock:
                latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    elapsed = time.perf_counter() - start
    ms = 1000 * np.array(latencies)
    return len(queries) / elapsed, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def in_process(model_dir, index_dir):
    """mode -> one(state, image): the service's work without HTTP (embed with the signature, search)."""
    from tfmetric.search import SavedModelEmbedder, load_index
    from tfmetric.search.embedder import BINARY_SIGNATURE
    from tfmetric.search.modes import ModeSearcher

    embedder = SavedModelEmbedder(model_dir)
    binary = embedder.with_signature(BINARY_SIGNATURE)
    searcher = ModeSearcher(load_index(index_dir))

    def client(mode):
        model = binary if mode == "binary" else embedder

        def one(state, image):
            (result,) = model.embed([image])
            searcher.neighbours(result.embedding, result.bits, 10, mode)

        return one

    return client


def over_http(url):
    """mode -> one(state, image): POST /v1/search on the client's own keep-alive connection."""
    host, port = url.split("//")[1].strip("/").split(":")

    def client(mode):
        def one(state, image):
            if "conn" not in state:
                state["conn"] = http.client.HTTPConnection(host, int(port), timeout=60)
            state["conn"].request("POST", f"/v1/search?k=10&mode={mode}", image, {"Content-Type": "image/jpeg"})
            response = state["conn"].getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")

        return one

    return client


def compare(local, remote, queries, rounds):
    """{(mode, clients): (in-process figures, HTTP figures, overhead)}.

    Each round measures the two back to back, in alternating order (in-process first, then HTTP
    first), so both see the same load of a shared machine and a drifting load favours neither. The
    figures shown are the medians over rounds, and the overhead is the median of the per-round
    overheads (1 - HTTP req/s / in-process req/s of the same round)."""
    results = {}
    for mode in MODES:
        for clients in CLIENTS:
            runs = {"local": [], "http": []}
            ones = {"local": local(mode), "http": remote(mode)}
            for one in ones.values():
                one({}, queries[0])  # warm-up
            for round_ in range(rounds):
                for name in ("local", "http") if round_ % 2 == 0 else ("http", "local"):
                    runs[name].append(_run_clients(clients, queries, ones[name]))
            overheads = [1 - web[0] / own[0] for own, web in zip(runs["local"], runs["http"])]
            results[mode, clients] = (
                *(tuple(np.median(runs[name], axis=0)) for name in ("local", "http")),
                float(np.median(overheads)),
            )
    return results


def start_service(model_dir, index_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO_ROOT)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfmetric.serve",
            "--index",
            index_dir,
            "--model",
            model_dir,
            "--port",
            "0",
            "--workers",
            "8",
            "--queue",
            "64",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in proc.stdout:
        if " at http://" in line:
            return proc, line.split(" at ")[-1].strip()
    raise RuntimeError("the service did not start")


def rescore_at_scale(workdir, n, dim, queries_count):
    """{factor: (recall@10 vs float, ms per query)} and float's ms per query, on n x dim codes."""
    import faiss

    from benchmarks.search import make_data
    from tfmetric.search.index import BITS, CatalogIndex
    from tfmetric.search.modes import ModeSearcher

    make_data(workdir, n, dim, queries_count, "clustered")
    catalog = np.load(os.path.join(workdir, "catalog.npy"))
    queries = np.load(os.path.join(workdir, "queries.npy"))
    index = faiss.IndexFlatIP(dim)
    index.add(catalog)
    bits = np.concatenate([np.packbits(catalog[i : i + 100_000] > 0, axis=1) for i in range(0, n, 100_000)])
    del catalog
    ids = np.arange(n).astype(str).astype(object)
    catalog_index = CatalogIndex(index, "flat", ids, np.full(n, None, object), {"dim": dim, "params": {}}, {BITS: bits})
    faiss.omp_set_num_threads(1)  # one request, one thread
    qbits = np.packbits(queries > 0, axis=1)

    def timed(searcher, mode):
        rows, times = [], []
        for q, b in zip(queries, qbits):
            start = time.perf_counter()
            rows.append(searcher.search(q, b, 10, mode)[1])
            times.append(time.perf_counter() - start)
        return np.stack(rows), 1000 * float(np.median(times))

    exact, float_ms = timed(ModeSearcher(catalog_index), "float")
    results = {}
    for factor in FACTORS:
        rows, ms = timed(ModeSearcher(catalog_index, factor), "rescore")
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact)]))
        results[factor] = (recall, ms)
    return float_ms, results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalog", type=int, default=500, help="catalog images of part 1 (default %(default)s)")
    p.add_argument("--requests", type=int, default=200, help="query images of part 1 (default %(default)s)")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--n", type=int, default=1_000_000, help="codes of part 2 (default %(default)s)")
    p.add_argument("--codes-dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=100, help="queries of part 2 (default %(default)s)")
    p.add_argument(
        "--rounds",
        type=int,
        default=6,
        help="alternating rounds of each measurement; medians are shown (default %(default)s)",
    )
    p.add_argument("--skip-http", action="store_true", help="part 2 only")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as workdir:
        if not args.skip_http:
            model_dir, index_dir, queries = prepare(workdir, args)
            print(
                f"Part 1: {len(queries)} queries of {args.image_size}x{args.image_size} JPEG, {args.catalog} "
                f"items, {args.dim}-d, k=10, {os.cpu_count()} CPUs"
            )
            print(
                f"{'mode':<8} {'clients':>7}  {'in-process req/s':>16} {'p50 ms':>7} {'p99 ms':>7}  "
                f"{'HTTP req/s':>10} {'p50 ms':>7} {'p99 ms':>7}  overhead"
            )
            proc, url = start_service(model_dir, index_dir)
            try:
                figures = compare(in_process(model_dir, index_dir), over_http(url), queries, args.rounds)
            finally:
                proc.terminate()
                proc.wait()
            for (mode, clients), ((lr, l50, l99), (hr, h50, h99), overhead) in figures.items():
                print(
                    f"{mode:<8} {clients:>7}  {lr:>16.1f} {l50:>7.1f} {l99:>7.1f}  {hr:>10.1f} {h50:>7.1f} "
                    f"{h99:>7.1f}  {100 * overhead:>7.1f} %"
                )
        float_ms, results = rescore_at_scale(workdir, args.n, args.codes_dim, args.queries)
        print(f"\nPart 2: {args.n} x {args.codes_dim} clustered embeddings, {args.queries} queries, k=10, one thread")
        print(f"{'search':<20} {'ms/query':>9} {'speed-up':>9} {'recall@10 vs float':>19}")
        print(f"{'float (exact)':<20} {float_ms:>9.2f} {1.0:>8.1f}x {1.0:>19.3f}")
        for factor, (recall, ms) in results.items():
            print(f"{f'rescore r={factor}':<20} {ms:>9.2f} {float_ms / ms:>8.1f}x {recall:>19.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
