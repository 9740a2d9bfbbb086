"""python -m tfmetric.search: build an index over an embedded catalog, or query it with an image.

Examples:
  python -m tfmetric.search build --embeddings embeddings/products-3 --index indexes/products-3 --kind hnsw
  python -m tfmetric.search --index indexes/products-3 --model saved_models/products/3 --image query.jpg \\
      --k 10 --plot results.png
  python -m tfmetric.search query --index indexes/products-3-bits --model saved_models/products/3 \\
      --image query.jpg --binary
  python -m tfmetric.search calibrate --index indexes/products-3 --model saved_models/products/3 \
      --dataset cars196 --split test --precision 0.9

A query is the default command: the word "query" may be left out.
"""

import argparse
import sys

from tfmetric.cli_utils import ArgumentParser, run_main, setup_logging
from tfmetric.search import kinds

PROG = "python -m tfmetric.search"
COMMANDS = ("build", "query", "calibrate")
# Library arguments -> each command's flags (errors name the flag, see cli_utils.name_flags).
_SEARCH_FLAGS = {"index_dir": "--index", "nprobe": "--nprobe", "ef_search": "--ef-search"}
FLAGS = {
    "build": {
        **_SEARCH_FLAGS,
        "embeddings_dir": "--embeddings",
        "kind": "--kind",
        "nlist": "--nlist",
        "train_size": "--train-size",
        "m": "--m",
        "ef_construction": "--ef-construction",
    },
    "query": {**_SEARCH_FLAGS, "model_dir": "--model", "image": "--image", "k": "--k", "binary": "--binary"},
    "calibrate": {
        "index_dir": "--index",
        "model_dir": "--model",
        "split": "--split",
        "dataset": "--dataset",
        "data.data_dir": "--data-dir",
        "path": "--labelled",
    },
}


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _search_flags(p):
    p.add_argument(
        "--nprobe", type=_positive, help=f"IVF kinds: lists searched per query (default min(nlist, {kinds.IVF_NPROBE}))"
    )
    p.add_argument(
        "--ef-search",
        type=_positive,
        help=f"HNSW kinds: candidate list size at search time (default {kinds.HNSW_EF_SEARCH})",
    )


def build_parser():
    p = ArgumentParser(prog=f"{PROG} build", description="Index the output of pipelines.embed_catalog.")
    p.add_argument("--embeddings", required=True, help="--output-dir of python -m pipelines.embed_catalog")
    p.add_argument("--index", required=True, help="index directory to write (local)")
    p.add_argument(
        "--kind",
        default=kinds.FLAT,
        choices=kinds.KINDS,
        help="flat / binary: exact cosine / Hamming; ivf, hnsw, binary-ivf, binary-hnsw: approximate "
        "(default: %(default)s)",
    )
    p.add_argument("--nlist", type=_positive, help="IVF kinds: number of lists (default round(sqrt(n)))")
    p.add_argument("--train-size", type=_positive, help="IVF kinds: k-means training sample (default 64 * nlist)")
    p.add_argument("--m", type=_positive, help=f"HNSW kinds: links per node (default {kinds.HNSW_M})")
    p.add_argument(
        "--ef-construction",
        type=_positive,
        help=f"HNSW kinds: candidate list size while building (default {kinds.HNSW_EF_CONSTRUCTION})",
    )
    _search_flags(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the IVF training sample (default 0)")
    return p


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def calibrate_parser():
    p = ArgumentParser(
        prog=f"{PROG} calibrate",
        description="Store the cosine / Hamming match cut-offs for a target precision, "
        "measured on held-out labelled pairs, in the index manifest.",
    )
    p.add_argument("--index", required=True, help="index directory (python -m tfmetric.search build)")
    p.add_argument("--model", help="saved_models/<name>/<version> that embedded the catalog; embeds --split")
    p.add_argument("--split", help="with --model: the labelled split to embed (e.g. test)")
    p.add_argument("--dataset", help="with --model: dataset of --split (default: the model card's)")
    p.add_argument("--data-dir", help="with --model: where the dataset lives (default as in training)")
    p.add_argument(
        "--labelled",
        metavar="FILE.npz",
        help="instead of --model/--split: an .npz with float arrays 'embeddings' [n, D] and 'labels' [n]",
    )
    p.add_argument("--precision", type=_fraction, default=0.9, help="target precision (default %(default)s)")
    p.add_argument(
        "--max-pairs",
        type=_positive,
        default=2_000_000,
        help="pairs scored: all pairs when fewer, else a seeded sample (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the pair sample (default 0)")
    return p


def query_parser():
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True, help="index directory (python -m tfmetric.search build)")
    p.add_argument("--model", required=True, help="saved_models/<name>/<version> that embedded the catalog")
    p.add_argument("--image", required=True, help="query image (JPEG or PNG; path or URI)")
    p.add_argument("--k", type=_positive, default=10, help="number of neighbours (default %(default)s)")
    p.add_argument(
        "--binary",
        action="store_true",
        help="Hamming search of serving_binary bits; needs a binary index (a binary index is always searched this way)",
    )
    p.add_argument("--plot", metavar="FILE", help="also write a picture of the query and its neighbours (e.g. .png)")
    _search_flags(p)
    return p


def _build(args):
    from tfmetric.search.build import build_index

    index = build_index(
        args.embeddings,
        args.index,
        args.kind,
        nlist=args.nlist,
        nprobe=args.nprobe,
        train_size=args.train_size,
        m=args.m,
        ef_construction=args.ef_construction,
        ef_search=args.ef_search,
        seed=args.seed,
    )
    params = ", ".join(f"{k}={v}" for k, v in index.manifest["params"].items())
    print(
        f"Indexed {index.count} items of {index.dim}-d embeddings into {args.index} "
        f"(kind {index.kind}, {kinds.metric(index.kind)}{', ' + params if params else ''})"
    )
    return 0


def _calibrate(args):
    from tfmetric.search import calibrate

    if bool(args.labelled) == bool(args.model):
        raise ValueError("pass either --model with --split, or --labelled FILE.npz.")
    if args.model and not args.split:
        raise ValueError("--model needs --split: the labelled split to embed.")
    options = {"precision": args.precision, "max_pairs": args.max_pairs, "seed": args.seed}
    if args.labelled:
        embeddings, labels = calibrate.read_labelled(args.labelled)
        match = calibrate.calibrate_index(args.index, embeddings, labels, source=args.labelled, **options)
    else:
        match = calibrate.calibrate_with_model(
            args.index, args.model, args.split, args.dataset, args.data_dir, **options
        )
    print(
        f"Calibrated {args.index} on {match['pairs']} pairs ({match['positive_pairs']} matching) of "
        f"{match['images']} images from {match['source']}, target precision {match['target_precision']}:"
    )
    for metric, sign in (("cosine", ">="), ("hamming", "<=")):
        t = match[metric]
        print(f"  {metric:<7} {sign} {t['threshold']:g}: precision {t['precision']:.4f}, recall {t['recall']:.4f}")
    return 0


def format_results(result):
    index = result.index
    metric = kinds.metric(index.kind)
    model = index.model or {}
    lines = [
        f"{result.image}: {len(result.neighbours)} nearest of {index.count} items "
        f"(index {index.kind}, {metric}, {index.dim}-d; model {model.get('name')}/{model.get('version')})",
        f"{'rank':>4}  {metric:>7}  id",
    ]
    for n in result.neighbours:
        score = f"{n.score:>7d}" if metric == "hamming" else f"{n.score:>7.4f}"
        lines.append(f"{n.rank:>4}  {score}  {n.id}")
    return "\n".join(lines)


def _query(args):
    from tfmetric.search.query import query_index

    result = query_index(
        args.index, args.model, args.image, k=args.k, binary=args.binary, nprobe=args.nprobe, ef_search=args.ef_search
    )
    print(format_results(result))
    if args.plot:
        import os

        from tfmetric.search.plot import plot_neighbours

        plot_neighbours(
            result.encoded,
            result.neighbours,
            args.plot,
            kinds.metric(result.index.kind),
            query_label=os.path.basename(args.image),
        )
        print(f"Wrote {args.plot}")
    return 0


def parse_args(argv=None):
    """(command, flags): ``build``, ``calibrate`` or, without a command word, ``query``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "query"
    parser = {"build": build_parser, "query": query_parser, "calibrate": calibrate_parser}[command]
    return command, parser().parse_args(argv)


def main(argv=None):
    command, args = parse_args(argv)
    setup_logging()
    run = {"build": _build, "query": _query, "calibrate": _calibrate}[command]
    return run_main(PROG, lambda: run(args), FLAGS[command])


if __name__ == "__main__":
    sys.exit(main())
