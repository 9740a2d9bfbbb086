"""python -m tfmetric.data.batches: the labels of the batches training will be fed.

Examples:
  python -m tfmetric.data.batches --dataset cub200 --data-dir /data          # summary vs uniform
  python -m tfmetric.data.batches --dataset sop --epochs 2 --json            # one line per batch
  python -m tfmetric.data.batches --dataset synthetic --set data.class_balanced=false

With --json, one line per training batch, ``{"epoch": e, "step": s, "labels": [...]}``, labels in
batch order (epochs and steps 0-based, one replica). Without it, a summary of the same batches
beside a uniform reference drawn in numpy (the official sampler's draw, or a uniform shuffle with
data.class_balanced=false). The labels are the sampler's, computed without reading images; the
TFRecords are converted first when missing, as training does.
"""

import argparse
import json
import sys

from tfmetric import config as config_lib
from tfmetric.cli_utils import ArgumentParser, add_set_flag, apply_set_flags, run_main, setup_logging

PROG = "python -m tfmetric.data.batches"


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="synthetic", help=f"dataset preset: {', '.join(config_lib.PRESETS)}")
    p.add_argument("--data-dir", default=None, help="data root (default: $TFMETRIC_DATA_DIR or ~/tfmetric_data)")
    p.add_argument("--raw-dir", default=None, help="raw dataset directory (default: <data-dir>/raw/<dataset>)")
    add_set_flag(p, "override any config field, as for python -m tfmetric.train (repeatable)")
    p.add_argument("--epochs", type=int, default=1, help="epochs to show, from the first (default 1)")
    p.add_argument("--json", action="store_true", help="one JSON line per batch instead of the summary")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()

    def go():
        if args.epochs < 1:
            raise ValueError(f"--epochs must be >= 1. Received: {args.epochs}")
        config = config_lib.preset(args.dataset)
        apply_set_flags(config, args.overrides)
        overrides = [
            f"{field}={flag}"
            for flag, field in ((args.data_dir, "data.data_dir"), (args.raw_dir, "data.raw_dir"))
            if flag is not None
        ]
        config = config_lib.validate(config_lib.apply_overrides(config, overrides))
        from tfmetric.data import batch_stats  # heavy: TensorFlow (reads the TFRecords' class index)

        rows, split_labels, num_classes = batch_stats.training_batch_labels(config, args.epochs)
        if args.json:
            for epoch, step, labels in rows:
                print(json.dumps({"epoch": epoch, "step": step, "labels": labels.tolist()}), flush=False)
            return 0
        d = config.data
        batches = [labels for _, _, labels in rows]
        reference = batch_stats.uniform_reference(
            split_labels, len(batches), d.batch_size, d.images_per_class, d.class_balanced, config.train.seed
        )
        kind = (
            f"{d.batch_size // d.images_per_class} classes x {d.images_per_class} images"
            if d.class_balanced
            else f"{d.batch_size} images, no class balancing"
        )
        print(
            batch_stats.format_summary(
                batch_stats.summarize(batches, num_classes),
                batch_stats.summarize(reference, num_classes),
                f"{d.dataset} training batches, {args.epochs} epoch(s), {kind}, {num_classes} classes, "
                f"{len(split_labels)} images",
            )
        )
        return 0

    return run_main(PROG, go, {"dataset": "--dataset"})


if __name__ == "__main__":
    sys.exit(main())
