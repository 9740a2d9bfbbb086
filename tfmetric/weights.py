"""python -m tfmetric.weights: prepare pretrained backbone weights.

Examples:
  # TF-Slim's InceptionV1 ImageNet checkpoint -> the file `--weights imagenet` uses:
  curl -O http://download.tensorflow.org/models/inception_v1_2016_08_28.tar.gz
  tar xzf inception_v1_2016_08_28.tar.gz
  python -m tfmetric.weights convert --from slim-checkpoint inception_v1.ckpt \\
      --to ~/tfmetric_data/weights/inception_v1_imagenet.weights.h5

Without --to, the file goes to <data-dir>/weights/inception_v1_imagenet.weights.h5.
"""
import argparse

from tfmetric.cli_utils import ArgumentParser, run_main, setup_logging

PROG = "python -m tfmetric.weights"
FORMATS = ("slim-checkpoint",)


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    convert = commands.add_parser("convert", help="convert a checkpoint into a Keras weights file",
                                  description="Convert TF-Slim's InceptionV1 ImageNet checkpoint "
                                              "into a Keras .weights.h5 file.")
    convert.add_argument("--from", dest="source", nargs=2, required=True, metavar=("FORMAT", "PATH"),
                         help=f"source format ({', '.join(FORMATS)}) and checkpoint path, e.g. "
                              "--from slim-checkpoint inception_v1.ckpt")
    convert.add_argument("--to", dest="output", default=None, metavar="FILE",
                         help="output .weights.h5 file (default: <data-dir>/weights/"
                              "inception_v1_imagenet.weights.h5, what --weights imagenet loads)")
    convert.add_argument("--data-dir", default=None,
                         help="data root for the default --to (default: $TFMETRIC_DATA_DIR or "
                              "~/tfmetric_data)")
    args = p.parse_args(argv)
    if args.source[0] not in FORMATS:
        convert.error(f"argument --from: unknown format {args.source[0]!r}. "
                      f"Allowed values: {', '.join(FORMATS)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    setup_logging()

    def go():
        from tfmetric.models import weights  # heavy: TensorFlow
        output = args.output or weights.inception_v1_imagenet_path(args.data_dir)
        result = weights.convert_slim_checkpoint(args.source[1], output)
        print(f"Wrote {result['variables']} InceptionV1 variables to {result['output']} "
              f"(ignored: {', '.join(result['ignored']) or 'none'}).")
        return 0

    return run_main(PROG, go)


if __name__ == "__main__":
    raise SystemExit(main())
