"""python -m tfmetric.train: parse flags into a config and call train_and_evaluate.

Examples:
  python -m tfmetric.train                                 # the embedded `synthetic` set, offline
  python -m tfmetric.train --dataset cars196 --data-dir /data
  python -m tfmetric.train --dataset digits --set train.lr=0.1 --set model.embedding_dim=32
  python -m tfmetric.train --config runs/cars196/20260101-120000/config.json   # exact re-run
"""

import argparse
import datetime
import functools
import os
import sys

from tfmetric import config as config_lib
from tfmetric.cli_utils import ArgumentParser, add_set_flag, apply_set_flags, name_flags, run_main, setup_logging
from tfmetric.json_file import read_json
from tfmetric.training.workdir import remove_run

PROG = "python -m tfmetric.train"
# Library arguments -> the flags that set them (errors name the flag, see cli_utils.name_flags); the
# config fields a validation error names are mapped in resolve_config, to --set or a dedicated flag.
FLAGS = {"dataset": "--dataset", "workdir": "--workdir", "name": "--export-name"}


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--dataset", default=None, help=f"dataset preset: {', '.join(config_lib.PRESETS)} (default: synthetic)"
    )
    p.add_argument("--config", default=None, help="re-run from a saved config.json (presets ignored)")
    add_set_flag(p, "override any config field, e.g. --set train.lr=0.1 (repeatable)")
    p.add_argument("--workdir", default=None, help="output directory (default: runs/<dataset>/<timestamp>)")
    p.add_argument("--data-dir", default=None, help="data root (default: $TFMETRIC_DATA_DIR or ~/tfmetric_data)")
    p.add_argument("--raw-dir", default=None, help="raw dataset directory (default: <data-dir>/raw/<dataset>)")
    p.add_argument("--weights", default=None, help="backbone weights: none, imagenet, or a file path")
    p.add_argument("--seed", type=int, default=None, help="random seed (train.seed)")
    p.add_argument(
        "--mixed-precision",
        default=None,
        choices=[x for x in config_lib.PRECISIONS if x != "float32"],
        help="mixed precision policy (train.precision); the head and loss stay float32",
    )
    p.add_argument(
        "--jit-compile",
        action="store_true",
        default=None,
        help="XLA-compile the forward and backward pass (train.jit_compile=true)",
    )
    p.add_argument(
        "--export-dir",
        default="saved_models",
        help="where the SavedModel for TF Serving is exported at the end (default: saved_models)",
    )
    p.add_argument("--export-name", default=None, help="model name under --export-dir (default: the dataset)")
    p.add_argument("--no-export", action="store_true", help="do not export a SavedModel")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the workdir first instead of resuming (only a directory holding a tfmetric run)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    p.add_argument("--quiet", action="store_true", help="one line per epoch even on a terminal (no progress bar)")
    return p.parse_args(argv)


def resolve_config(args):
    """The ExperimentConfig the flags describe (preset or file, then flag overrides), validated."""
    if args.config:
        if args.dataset:
            raise config_lib.ConfigError("--config and --dataset are exclusive: the file holds the dataset.")
        try:
            saved = read_json(args.config)
        except ValueError as e:
            raise config_lib.ConfigError(f"--config {e}") from None
        try:
            config = config_lib.ExperimentConfig.from_dict(saved)
        except config_lib.ConfigError as e:
            raise config_lib.ConfigError(f"--config {args.config}: {e}") from None
    else:
        config = config_lib.preset(args.dataset or "synthetic")
    apply_set_flags(config, args.overrides)
    set_fields = {item.split("=", 1)[0].strip(): item for item in args.overrides}
    fields = {field: f"--set {item}" for field, item in set_fields.items()}  # field -> the flag that set it
    for flag, name, field in (
        (args.data_dir, "--data-dir", "data.data_dir"),
        (args.raw_dir, "--raw-dir", "data.raw_dir"),
        (args.weights, "--weights", "model.weights"),
        (args.seed, "--seed", "train.seed"),
        (args.mixed_precision, "--mixed-precision", "train.precision"),
        (args.jit_compile and "true", "--jit-compile", "train.jit_compile"),
    ):
        if flag is None:
            continue
        before = config_lib.get_field(config, field)
        config_lib.apply_overrides(config, [f"{field}={flag}"])
        if field in set_fields and config_lib.get_field(config, field) != before:
            raise config_lib.ConfigError(f"{name} {flag} contradicts --set {set_fields[field]}; pass one of them.")
        fields[field] = name
    try:
        return config_lib.validate(config)
    except config_lib.ConfigError as e:
        raise config_lib.ConfigError(name_flags(str(e), fields)) from None


def main(argv=None):
    args = parse_args(argv)
    setup_logging()

    def go():
        config = resolve_config(args)
        if args.print_config:
            print(config.to_json())
            return 0
        workdir = args.workdir or os.path.join(
            "runs", config.data.dataset, datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        )
        if args.overwrite:
            remove_run(workdir)
        from tfmetric.export import export_from_workdir  # heavy: TensorFlow
        from tfmetric.training import train_and_evaluate

        # Train, then export: the trainer calls this once the run's models are saved.
        export = (
            None
            if args.no_export
            else functools.partial(export_from_workdir, output_dir=args.export_dir, name=args.export_name)
        )
        result = train_and_evaluate(config, workdir, verbose=2 if args.quiet else "auto", export=export)
        print(summary(result, config.eval.recall_ks, workdir))
        return 0

    return run_main(PROG, go, FLAGS)


def summary(result, ks, workdir):
    from tfmetric.metrics.evaluation import format_scores  # heavy: TensorFlow (the run has loaded it)

    if result.get("worker"):
        return f"Worker done: {result['epochs']} epochs trained; the chief writes the results to {workdir}"
    test = result["test"]
    lines = []
    if result.get("already_finished"):
        lines.append(
            f"{workdir} holds a finished run ({result['epochs']} epochs): nothing trained, nothing "
            f"exported. --overwrite trains again; python -m tfmetric.export --workdir {workdir} "
            f"exports a new version."
        )
    lines.append(f"Test ({result['dataset']}, held-out classes):")
    lines.append(format_scores(test, ks))
    if "raw_pixels" in result:
        lines.append(f"  raw pixels: R@1 {result['raw_pixels']['recall@1']:.4f}")
    if result.get("already_finished"):
        return "\n".join(lines)
    lines.append(f"Wrote {os.path.join(workdir, 'metrics.json')}")
    if "retrieval_grid" in result:
        lines.append(
            f"Retrieval grid (held-out queries, top-5 float and binary neighbours): {result['retrieval_grid']}"
        )
    if "saved_model" in result:
        lines.append(f"Exported SavedModel for TF Serving: {result['saved_model']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
