"""python -m tfmetric.export: a finished training run -> the next SavedModel version for TF Serving.

Examples:
  python -m tfmetric.export --workdir runs/cars196/20260101-120000     # saved_models/cars196/<version>
  python -m tfmetric.export --workdir runs/demo --name products --output-dir /models
"""

import argparse
import sys

from tfmetric.cli_utils import ArgumentParser, run_main, setup_logging

PROG = "python -m tfmetric.export"


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--workdir", required=True, help="training run directory (config.json, embedding_model.keras, metrics.json)"
    )
    p.add_argument("--name", default=None, help="model name, the TF Serving model name (default: the dataset)")
    p.add_argument(
        "--output-dir",
        default="saved_models",
        help="TF Serving base path; writes <output-dir>/<name>/<next version>/ (default: saved_models)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="reject encoded images whose header declares more pixels (default: (16 x the "
        "config's resize_size)^2, at least 4096^2, at most 50,000,000)",
    )
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()

    def go():
        from tfmetric.export import SIGNATURES, export_from_workdir  # heavy: TensorFlow

        path = export_from_workdir(args.workdir, args.output_dir, args.name, max_pixels=args.max_pixels)
        print(f"Exported {path} (signatures: {', '.join(SIGNATURES)})")
        return 0

    return run_main(PROG, go, {"workdir": "--workdir", "name": "--name", "max_pixels": "--max-pixels"})


if __name__ == "__main__":
    sys.exit(main())
