"""Registry of the backbones: name -> builder, feature size, input normalisation and weights.

One table, `BACKBONES`; code looks an entry up instead of branching on names.

Input normalisations (`tfmetric.data.preprocessing.normalize`):
  "imagenet_mean_std": RGB in [0, 1], minus mean (0.485, 0.456, 0.406), over std
      (0.229, 0.224, 0.225): the official code's, torchvision's ImageNet weights', and every
      backbone's from scratch.
  "caffe": keras.applications.resnet50.preprocess_input (BGR, 0-255, ImageNet mean subtracted),
      what the keras.applications ImageNet weights were trained with.
  "inception": RGB scaled to [-1, 1], as TF-Slim's ImageNet checkpoints expect.
"""

import dataclasses
import os
from collections.abc import Callable

from tfmetric.models import inception_v1, resnet50, resnet50_keras
from tfmetric.models import weights as weights_lib

SCRATCH_NORMALIZATION = "imagenet_mean_std"


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One backbone.

    Attributes:
      build: input_shape -> keras.Model, normalised images -> [batch, output_dim] (pool5).
      output_dim: width of pool5.
      pretrained_normalization: the input normalisation its ImageNet weights expect.
      imagenet: data_dir -> path of the ImageNet weights file (WeightsNotFoundError says how to
        obtain it).
      check: (name, path, weights) -> None; raises unless `path` is loadable weights.
      load: (model, path) -> None; loads a weights file into a built model.
    """

    build: Callable
    output_dim: int
    pretrained_normalization: str
    imagenet: Callable
    check: Callable
    load: Callable


BACKBONES = {
    "inception_v1": Backbone(
        inception_v1.InceptionV1,
        inception_v1.OUTPUT_DIM,
        "inception",
        weights_lib.inception_v1_imagenet,
        weights_lib.check_inception_v1_weights,
        weights_lib.load_inception_v1_weights,
    ),
    "resnet50": Backbone(
        resnet50.ResNet50Backbone,
        resnet50.OUTPUT_DIM,
        SCRATCH_NORMALIZATION,
        weights_lib.resnet50_imagenet,
        weights_lib.check_keras_weights_file,
        weights_lib.load_resnet50_weights,
    ),
    "resnet50_keras": Backbone(
        resnet50_keras.KerasResNet50Backbone,
        resnet50_keras.OUTPUT_DIM,
        "caffe",
        weights_lib.resnet50_keras_imagenet,
        weights_lib.check_keras_weights_file,
        weights_lib.load_keras_weights,
    ),
}


def get_backbone(name):
    """The registry entry of `name`; ValueError listing the allowed names otherwise."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone. Allowed values: {sorted(BACKBONES)}. Received: name={name!r}")
    return BACKBONES[name]


def resolve_weights(name, weights, data_dir=None):
    """Turns a `--weights` value into None (random init) or an existing local file.

    Args:
        name: a backbone of `BACKBONES`.
        weights: None / "none" (random initialisation), "imagenet", or a path: a Keras weights
            file; for inception_v1 also a TF-Slim checkpoint, for resnet50 a torchvision .pth.
        data_dir: data root holding `weights/`; None or "" means `$TFMETRIC_DATA_DIR`, else
            `~/tfmetric_data`.

    Raises:
        WeightsNotFoundError: the file is missing; the message says how to obtain it.
        ValueError: unknown backbone, or a path that cannot be weights (e.g. an archive).
    """
    entry = get_backbone(name)
    if weights_lib.is_none(weights):
        return None
    weights = str(weights)
    if weights == "imagenet":
        return entry.imagenet(data_dir or None)
    path = os.path.expanduser(weights)
    entry.check(name, path, weights)
    return path


def build_backbone(name, input_shape=(None, None, 3), weights=None, data_dir=None):
    """Builds backbone `name` and returns `(model, feature_dim)`.

    Args:
        name: one of `BACKBONES`.
        input_shape: (height, width, 3); spatial sizes may be None.
        weights: None or "none" for random initialisation, "imagenet", or a file (see
            `resolve_weights`). "imagenet" is, for resnet50, the converted torchvision file
            `<data_dir>/weights/resnet50_torchvision_imagenet.weights.h5`; for inception_v1,
            `<data_dir>/weights/inception_v1_imagenet.weights.h5`; for resnet50_keras, the
            keras.applications file from the Keras cache (downloaded when online).
        data_dir: data root holding `weights/`; None means the default data dir.
    """
    entry = get_backbone(name)
    path = resolve_weights(name, weights, data_dir=data_dir)
    model = entry.build(input_shape=input_shape)
    if path is not None:
        try:
            entry.load(model, path)
        except OSError as e:  # h5py's "file signature not found" for a garbage or truncated file names no file
            raise ValueError(
                f"weights file {path} cannot be read ({str(e).splitlines()[0] if str(e) else e!r}); "
                f"it may be truncated or not a Keras weights file."
            ) from None
    return model, entry.output_dim


def backbone_preprocessing(name, weights=None):
    """Names the input normalisation backbone `name` with `weights` expects (see above)."""
    entry = get_backbone(name)
    return SCRATCH_NORMALIZATION if weights_lib.is_none(weights) else entry.pretrained_normalization
