"""python -m tfmetric.weights: prepare pretrained backbone weights.

Examples:
  # torchvision's ResNet50 ImageNet weights -> the file `--weights imagenet` uses for resnet50:
  curl -O https://download.pytorch.org/models/resnet50-0676ba61.pth
  python -m tfmetric.weights convert --from torchvision resnet50-0676ba61.pth \\
      --to ~/tfmetric_data/weights/resnet50_torchvision_imagenet.weights.h5

  # TF-Slim's InceptionV1 ImageNet checkpoint -> the file `--weights imagenet` uses:
  curl -O http://download.tensorflow.org/models/inception_v1_2016_08_28.tar.gz
  tar xzf inception_v1_2016_08_28.tar.gz
  python -m tfmetric.weights convert --from slim-checkpoint inception_v1.ckpt \\
      --to ~/tfmetric_data/weights/inception_v1_imagenet.weights.h5

Without --to, the file goes to <data-dir>/weights/<backbone>_..._imagenet.weights.h5, where
--weights imagenet looks. Reading a .pth needs no torch and runs no pickled code (only tensor
data is accepted); both torch's zip format and the legacy format (resnet50-19c8e357.pth) are read.
"""

import argparse
import sys

from tfmetric.cli_utils import ArgumentParser, run_main, setup_logging

PROG = "python -m tfmetric.weights"
# The --from formats, for --help (the converters, tfmetric.models.weights.CONVERTERS, import TensorFlow).
FORMATS_HELP = (
    "torchvision (torchvision's ResNet50 state_dict .pth, for resnet50) or slim-checkpoint "
    "(TF-Slim's InceptionV1 checkpoint, for inception_v1)"
)


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    convert = commands.add_parser(
        "convert",
        help="convert pretrained weights into a Keras weights file",
        description=f"Convert pretrained ImageNet weights into a Keras .weights.h5 file: {FORMATS_HELP}.",
    )
    convert.add_argument(
        "--from",
        dest="source",
        nargs=2,
        required=True,
        metavar=("FORMAT", "PATH"),
        help=f"source format, {FORMATS_HELP}, and file, e.g. --from torchvision resnet50-0676ba61.pth",
    )
    convert.add_argument(
        "--to",
        dest="output",
        default=None,
        metavar="FILE",
        help="output .weights.h5 file (default: the file --weights imagenet "
        "loads, <data-dir>/weights/resnet50_torchvision_imagenet.weights.h5 "
        "or .../inception_v1_imagenet.weights.h5)",
    )
    convert.add_argument(
        "--data-dir",
        default=None,
        help="data root for the default --to (default: $TFMETRIC_DATA_DIR or ~/tfmetric_data)",
    )
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()

    def go():
        from tfmetric.models import weights as weights_lib  # heavy: TensorFlow

        source_format, source = args.source
        if source_format not in weights_lib.CONVERTERS:
            raise ValueError(
                f"argument --from: unknown format {source_format!r}. "
                f"Allowed values: {', '.join(weights_lib.CONVERTERS)}"
            )
        result = weights_lib.convert_weights(source_format, source, args.output, args.data_dir)
        ignored = result["ignored"]
        shown = ", ".join(ignored[:4]) + (f", ... ({len(ignored)} in all)" if len(ignored) > 4 else "")
        print(
            f"Wrote {result['variables']} variables from {source} to {result['output']} (ignored: {shown or 'none'})."
        )
        return 0

    return run_main(PROG, go)


if __name__ == "__main__":
    sys.exit(main())
