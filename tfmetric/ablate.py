"""python -m tfmetric.ablate: the paper's ablations on a small preset, as a table and a plot.

Examples:
  python -m tfmetric.ablate --dataset synthetic --workdir runs/ablation
  python -m tfmetric.ablate --dataset synthetic --only baseline,no_layernorm --set train.epochs_per_step=4
"""

import argparse
import datetime
import os
import sys

from tfmetric import config as config_lib
from tfmetric.cli_utils import ArgumentParser, add_set_flag, apply_set_flags, run_main, setup_logging

PROG = "python -m tfmetric.ablate"


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="synthetic", help="preset to ablate (default: synthetic)")
    p.add_argument("--workdir", default=None, help="output directory (default: runs/ablation/<timestamp>)")
    p.add_argument("--data-dir", default=None, help="data root (default: $TFMETRIC_DATA_DIR or ~/tfmetric_data)")
    add_set_flag(p, "override a field of the base config for every run")
    p.add_argument("--only", default=None, help="comma-separated run slugs, e.g. baseline,no_layernorm,dim_64")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()

    def go():
        from tfmetric.training import ablation

        config = config_lib.preset(args.dataset)
        apply_set_flags(config, args.overrides)
        extra = [f"data.data_dir={args.data_dir}"] if args.data_dir else []
        config_lib.validate(config_lib.apply_overrides(config, extra))
        only = set(args.only.split(",")) if args.only else None
        known = {ablation.slug(name) for name, _ in ablation.ablations(config)}
        if only and only - known:
            raise ValueError(
                f"--only: unknown run(s) {sorted(only - known)}. Allowed values: {', '.join(sorted(known))}."
            )
        workdir = args.workdir or os.path.join("runs", "ablation", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
        rows = ablation.run_ablations(config, workdir, only=only, verbose=2 if args.quiet else "auto")
        print(ablation.markdown(rows))
        print(f"Wrote {os.path.join(workdir, 'ablation.md')} and ablation.png")
        return 0

    return run_main(PROG, go, {"dataset": "--dataset"})


if __name__ == "__main__":
    sys.exit(main())
