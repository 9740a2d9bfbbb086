"""python -m tfmetric.serve: a visual search service over an index and the SavedModel that embedded it.

Examples:
  python -m tfmetric.serve --index indexes/products --model saved_models/products/3
  python -m tfmetric.serve --index indexes/products/2 --model saved_models/products/3 --port 0 --workers 8

Then open http://127.0.0.1:8080/ or:
  curl -s -H 'Content-Type: image/jpeg' --data-binary @query.jpg 'http://127.0.0.1:8080/v1/search?k=5&mode=rescore'
"""

import argparse
import sys

from tfmetric.cli_utils import ArgumentParser, run_main, setup_logging
from tfmetric.serve import config as config_lib

PROG = "python -m tfmetric.serve"


def _int(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    return parse


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def parse_args(argv=None):
    defaults = config_lib.ServeConfig("", "")
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--index",
        required=True,
        help="index directory (python -m tfmetric.search build), or a directory of integer versions "
        "of one: the highest complete version is served and newer ones are switched to",
    )
    p.add_argument("--model", required=True, help="saved_models/<name>/<version> that embedded the catalog")
    p.add_argument("--host", default=defaults.host, help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=_int(0), default=defaults.port, help="port; 0 picks a free one (default %(default)s)")
    p.add_argument(
        "--workers",
        type=_int(1),
        default=defaults.workers,
        help="requests searched at once, threads sharing one model and index (default %(default)s)",
    )
    p.add_argument(
        "--queue",
        type=_int(0),
        default=defaults.queue,
        help="requests that may wait for a worker; more get 503 (default %(default)s)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=_int(1),
        default=defaults.max_body_bytes,
        help="larger request bodies get 413 (default %(default)s)",
    )
    p.add_argument("--max-k", type=_int(1), default=defaults.max_k, help="largest k (default %(default)s)")
    p.add_argument(
        "--rescore-factor",
        type=_int(1),
        default=defaults.rescore_factor,
        help="mode rescore re-ranks a Hamming shortlist of this many times k (default %(default)s)",
    )
    p.add_argument(
        "--poll-seconds",
        type=_seconds,
        default=defaults.poll_seconds,
        help="how often a directory of versions is checked for a new one (default %(default)s)",
    )
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()

    def go():
        from tfmetric.serve.server import serve  # heavy: TensorFlow, faiss

        serve(config_lib.ServeConfig(**vars(args)))
        return 0

    return run_main(PROG, go, {"index_dir": "--index", "model_dir": "--model"})


if __name__ == "__main__":
    sys.exit(main())
