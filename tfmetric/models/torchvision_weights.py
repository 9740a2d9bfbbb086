"""torchvision's ImageNet ResNet50 weights for the `resnet50` backbone, read without torch.

The official code loads torchvision's ResNet50 ImageNet weights (through ``pretrainedmodels``,
which points at ``resnet50-19c8e357.pth``; torchvision's current default is
``resnet50-0676ba61.pth``). Convert either once:

    curl -O https://download.pytorch.org/models/resnet50-0676ba61.pth
    python -m tfmetric.weights convert --from torchvision resnet50-0676ba61.pth \\
        --to ~/tfmetric_data/weights/resnet50_torchvision_imagenet.weights.h5

and ``weights="imagenet"`` loads ``<data-dir>/weights/resnet50_torchvision_imagenet.weights.h5``.
A ``.pth`` file can also be passed as the weights directly. The file is read by
`tfmetric.models.torch_state_dict`, which executes nothing from the pickle; ``fc.*`` (the
ImageNet classifier) and ``num_batches_tracked`` are ignored.
"""
import os

from tfmetric.datasets.base import default_data_dir
from tfmetric.models import resnet50, torch_state_dict
from tfmetric.models import weights as weights_lib

RESNET50_TORCHVISION_FILE = "resnet50_torchvision_imagenet.weights.h5"
RESNET50_TORCHVISION_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
# What the official code (pretrainedmodels' "resnet50") downloads; the legacy format, also read.
RESNET50_TORCHVISION_LEGACY_URL = "https://download.pytorch.org/models/resnet50-19c8e357.pth"
TORCH_SUFFIXES = (".pth", ".pt", ".bin")


def resnet50_imagenet_path(data_dir=None):
    """Where ``--weights imagenet`` looks for the converted torchvision ResNet50 file."""
    return os.path.join(data_dir or default_data_dir(), "weights", RESNET50_TORCHVISION_FILE)


def resnet50_imagenet(data_dir=None):
    """``<data_dir>/weights/resnet50_torchvision_imagenet.weights.h5``, or how to make it."""
    path = resnet50_imagenet_path(data_dir)
    if os.path.isfile(path):
        return path
    raise weights_lib.WeightsNotFoundError(
        f"torchvision ResNet50 ImageNet weights not found: {path}. Obtain them once: download "
        f"{RESNET50_TORCHVISION_URL} (on a machine with network access), then run: python -m "
        f"tfmetric.weights convert --from torchvision resnet50-0676ba61.pth --to {path} . "
        f"Alternatively pass the .pth itself with --weights /path/to/resnet50-0676ba61.pth.")


def is_torch_file(path):
    return str(path).endswith(TORCH_SUFFIXES)


def load_resnet50_weights(model, path):
    """Loads a converted Keras weights file or a torchvision ``.pth`` state_dict into `model`."""
    if is_torch_file(path):
        resnet50.load_torchvision_state_dict(model, torch_state_dict.read_state_dict(path), path)
    else:
        model.load_weights(path)


def convert_torchvision_state_dict(pth_path, output_path):
    """Writes torchvision's ResNet50 state_dict (``.pth``) as a Keras ``.weights.h5`` for `resnet50`.

    The file is written under a temporary name and renamed, so an interrupted conversion never
    leaves a truncated ``output_path``.

    Returns:
        dict with "output" (the path written), "variables" (number converted) and "ignored"
        (state_dict keys not part of the pool5 backbone).

    Raises:
        ValueError: the output name, an unreadable or unsafe file, or a state_dict that is not
            ResNet50's (a missing, unexpected or mis-shaped key is named).
        FileNotFoundError: ``pth_path`` does not exist.
    """
    pth_path = os.path.expanduser(str(pth_path))
    output_path = weights_lib.check_output_path(output_path)
    state_dict = torch_state_dict.read_state_dict(pth_path)
    model = resnet50.ResNet50Backbone()
    ignored = resnet50.load_torchvision_state_dict(model, state_dict, pth_path)
    weights_lib.save_weights_atomically(model, output_path)
    return {"output": output_path, "variables": len(state_dict) - len(ignored), "ignored": ignored}
