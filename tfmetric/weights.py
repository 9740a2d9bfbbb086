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
import importlib
import sys

from tfmetric.cli_utils import ArgumentParser, run_main, setup_logging

PROG = "python -m tfmetric.weights"
# --from FORMAT -> (what it converts, functions in tfmetric.models: converter, default output path)
FORMATS = {
    "torchvision": ("torchvision ResNet50 state_dict (.pth) for the resnet50 backbone",
                    "torchvision_weights", "convert_torchvision_state_dict", "resnet50_imagenet_path"),
    "slim-checkpoint": ("TF-Slim InceptionV1 checkpoint for the inception_v1 backbone",
                        "weights", "convert_slim_checkpoint", "inception_v1_imagenet_path"),
}


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    convert = commands.add_parser(
        "convert", help="convert pretrained weights into a Keras weights file",
        description="Convert pretrained ImageNet weights into a Keras .weights.h5 file: "
                    + "; ".join(f"{name}: {spec[0]}" for name, spec in FORMATS.items()) + ".")
    convert.add_argument("--from", dest="source", nargs=2, required=True, metavar=("FORMAT", "PATH"),
                         help=f"source format ({', '.join(FORMATS)}) and file, e.g. --from "
                              "torchvision resnet50-0676ba61.pth")
    convert.add_argument("--to", dest="output", default=None, metavar="FILE",
                         help="output .weights.h5 file (default: the file --weights imagenet "
                              "loads, <data-dir>/weights/resnet50_torchvision_imagenet.weights.h5 "
                              "or .../inception_v1_imagenet.weights.h5)")
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
        # The converters import TensorFlow: imported only once the flags are valid.
        _, module_name, convert_name, default_name = FORMATS[args.source[0]]
        module = importlib.import_module(f"tfmetric.models.{module_name}")
        output = args.output or getattr(module, default_name)(args.data_dir)
        result = getattr(module, convert_name)(args.source[1], output)
        ignored = result["ignored"]
        shown = ", ".join(ignored[:4]) + (f", ... ({len(ignored)} in all)" if len(ignored) > 4 else "")
        print(f"Wrote {result['variables']} variables from {args.source[1]} to {result['output']} "
              f"(ignored: {shown or 'none'}).")
        return 0

    return run_main(PROG, go)


if __name__ == "__main__":
    sys.exit(main())
