"""python -m tfmetric.evaluate: the held-out test split through an exported SavedModel.

Embeds the original encoded images through the serving graph and prints the metrics training
prints; for the same weights they are equal.

Examples:
  python -m tfmetric.evaluate --model saved_models/cars196/3 --data-dir /data
  python -m tfmetric.evaluate --model saved_models/cars196/3 --dataset cars196 --binary
"""

import argparse
import sys

from tfmetric.cli_utils import ArgumentParser, run_main, setup_logging
from tfmetric.json_file import write_json

PROG = "python -m tfmetric.evaluate"


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="SavedModel version directory, e.g. saved_models/cars196/3")
    p.add_argument("--dataset", default=None, help="dataset to evaluate on (default: the model card's)")
    p.add_argument("--data-dir", default=None, help="data root (default: $TFMETRIC_DATA_DIR or ~/tfmetric_data)")
    p.add_argument("--raw-dir", default=None, help="raw dataset directory (default: <data-dir>/raw/<dataset>)")
    p.add_argument(
        "--binary",
        action="store_true",
        help="embed through serving_binary and report Hamming metrics of the served bits",
    )
    p.add_argument("--batch-size", type=int, default=None, help="images per call (default: the run's eval batch)")
    p.add_argument("--output", default=None, help="also write the metrics as JSON to this file")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()

    def go():
        if args.batch_size is not None and args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1. Received: {args.batch_size}.")
        from tfmetric.export import evaluate_saved_model  # heavy: TensorFlow
        from tfmetric.metrics.evaluation import format_scores

        metrics, config = evaluate_saved_model(
            args.model, args.dataset, args.data_dir, args.raw_dir, args.binary, args.batch_size
        )
        signature = "serving_binary" if args.binary else "serving_default"
        print(f"Test ({config.data.dataset}, held-out classes) through {args.model} [{signature}]:")
        print(format_scores(metrics, tuple(config.eval.recall_ks)))
        if args.output:
            write_json(args.output, metrics)
            print(f"Wrote {args.output}")
        return 0

    return run_main(
        PROG,
        go,
        {"model_dir": "--model", "dataset": "--dataset", "data.data_dir": "--data-dir", "data.raw_dir": "--raw-dir"},
    )


if __name__ == "__main__":
    sys.exit(main())
