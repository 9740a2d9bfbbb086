"""Pretrained backbone weights: where `--weights imagenet` looks, loading, and the converters.

Zhai & Wu (BMVC 2019), Section 4, fine-tune ImageNet-pretrained backbones (the table of which
backbone uses what is `tfmetric.models.backbones.BACKBONES`; `CONVERTERS` is the table of what
`python -m tfmetric.weights convert --from FORMAT` converts):
- resnet50 (torchvision's): the official code loads torchvision's ResNet50 ImageNet weights
  (through ``pretrainedmodels``, which points at ``resnet50-19c8e357.pth``; torchvision's current
  default is ``resnet50-0676ba61.pth``). Convert either once with
  `python -m tfmetric.weights convert --from torchvision resnet50-0676ba61.pth --to FILE`;
  "imagenet" means `<data-dir>/weights/resnet50_torchvision_imagenet.weights.h5`, and a `.pth`
  can also be passed as the weights directly. The file is read by
  `tfmetric.models.torch_state_dict`, which executes nothing from the pickle; ``fc.*`` (the
  ImageNet classifier) and ``num_batches_tracked`` are ignored.
- resnet50_keras: the `keras.applications` ResNet50 `notop` file, taken from the Keras cache
  (`$KERAS_HOME/models/`, default `~/.keras/models/`) or downloaded into it. Nothing is
  downloaded when the file is already cached; offline, the error says which file to put where.
- inception_v1: TF-Slim's ImageNet checkpoint (`inception_v1_2016_08_28.tar.gz` ->
  `inception_v1.ckpt`), converted once with
  `python -m tfmetric.weights convert --from slim-checkpoint inception_v1.ckpt --to FILE`
  into a Keras weights file; "imagenet" means `<data-dir>/weights/inception_v1_imagenet.weights.h5`.
  The checkpoint's Logits (1001 classes, class 0 = background) and global_step are not part of
  the pool5 backbone and are ignored.
"""

import dataclasses
import os
from collections.abc import Callable

import keras
import tensorflow as tf

from tfmetric.datasets import default_data_dir
from tfmetric.models import inception_v1, resnet50, torch_state_dict

RESNET50_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET50_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + RESNET50_WEIGHTS_FILE
# The md5 keras.applications checks the download against.
RESNET50_WEIGHTS_MD5 = "4d473c1dd8becc155b73f8504c6f6626"

INCEPTION_V1_SLIM_URL = "http://download.tensorflow.org/models/inception_v1_2016_08_28.tar.gz"
INCEPTION_V1_WEIGHTS_FILE = "inception_v1_imagenet.weights.h5"

RESNET50_TORCHVISION_FILE = "resnet50_torchvision_imagenet.weights.h5"
RESNET50_TORCHVISION_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
# What the official code (pretrainedmodels' "resnet50") downloads; the legacy format, also read.
RESNET50_TORCHVISION_LEGACY_URL = "https://download.pytorch.org/models/resnet50-19c8e357.pth"
TORCH_SUFFIXES = (".pth", ".pt", ".bin")

_KERAS_WEIGHTS_SUFFIX = ".weights.h5"
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class WeightsNotFoundError(FileNotFoundError, ValueError):
    """Pretrained weights are not available locally; the message says what to put where.

    Also a ValueError: callers written when an unusable `weights` value raised ValueError
    keep catching it.
    """


def is_none(weights):
    """True for "no pretrained weights": None, "" or "none" (any case)."""
    return weights is None or (isinstance(weights, str) and weights.strip().lower() in ("", "none"))


def is_keras_weights_file(path):
    """A Keras weights file (`.weights.h5`, or a Keras 2 style `.h5`), as opposed to a checkpoint."""
    return str(path).endswith(".h5")


def keras_cache_dir():
    """The directory `keras.utils.get_file` caches into: `$KERAS_HOME`, else `~/.keras`.

    Read at call time (Keras itself reads `$KERAS_HOME` once, at import).
    """
    home = os.environ.get("KERAS_HOME")
    if home:
        return os.path.expanduser(home)
    base = os.path.expanduser("~")
    return os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")


def inception_v1_imagenet_path(data_dir=None):
    """Where `--weights imagenet` looks for the converted InceptionV1 file."""
    return os.path.join(data_dir or default_data_dir(), "weights", INCEPTION_V1_WEIGHTS_FILE)


def check_keras_weights_file(backbone, path, weights):
    """Raises WeightsNotFoundError unless ``path`` is an existing file."""
    if not os.path.isfile(path):
        raise WeightsNotFoundError(
            f"{backbone} weights file not found: {path}. Pass 'imagenet', 'none' or an existing "
            f"Keras weights file. Received: weights={weights!r}"
        )


def check_inception_v1_weights(backbone, path, weights):
    """A TF-Slim checkpoint (file, V2 prefix or directory) or an existing Keras weights file."""
    if is_keras_weights_file(path):
        check_keras_weights_file(backbone, path, weights)
    else:
        _check_checkpoint(path)


def load_keras_weights(model, path):
    model.load_weights(path)


def resnet50_keras_imagenet(data_dir=None):
    """The keras.applications ResNet50 `notop` file from the Keras cache, downloaded when online."""
    cache = keras_cache_dir()
    candidates = [os.path.join(cache, "models", RESNET50_WEIGHTS_FILE)]
    if not os.access(cache, os.W_OK):  # keras.utils.get_file falls back to /tmp/.keras then
        candidates.append(os.path.join("/tmp", ".keras", "models", RESNET50_WEIGHTS_FILE))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    try:
        return keras.utils.get_file(
            RESNET50_WEIGHTS_FILE,
            RESNET50_WEIGHTS_URL,
            cache_subdir="models",
            file_hash=RESNET50_WEIGHTS_MD5,
            cache_dir=cache,
        )
    except Exception as e:  # get_file raises a bare Exception for network failures
        raise WeightsNotFoundError(
            f"Could not download the ResNet50 ImageNet weights ({e}). Download "
            f"{RESNET50_WEIGHTS_URL} on a machine with network access and put "
            f"{RESNET50_WEIGHTS_FILE} into {os.path.join(cache, 'models')}/ (the Keras cache, "
            f"$KERAS_HOME/models or ~/.keras/models), or pass --weights /path/to/"
            f"{RESNET50_WEIGHTS_FILE}."
        ) from e


def inception_v1_imagenet(data_dir=None):
    """<data_dir>/weights/inception_v1_imagenet.weights.h5, or how to make it."""
    path = inception_v1_imagenet_path(data_dir)
    if os.path.isfile(path):
        return path
    raise WeightsNotFoundError(
        f"InceptionV1 ImageNet weights not found: {path}. Obtain them once: download "
        f"{INCEPTION_V1_SLIM_URL}, extract it (tar xzf inception_v1_2016_08_28.tar.gz gives "
        f"inception_v1.ckpt), then run: python -m tfmetric.weights convert --from "
        f"slim-checkpoint inception_v1.ckpt --to {path} . Alternatively pass the checkpoint "
        f"itself with --weights /path/to/inception_v1.ckpt."
    )


def _check_checkpoint(path):
    if path.endswith(_ARCHIVE_SUFFIXES):
        raise ValueError(
            f"{path} is an archive, not a checkpoint: extract it first (tar xzf) and pass the inception_v1.ckpt inside."
        )
    exists = (
        os.path.isfile(path)
        or os.path.isfile(path + ".index")
        or (os.path.isdir(path) and tf.train.latest_checkpoint(path) is not None)
    )
    if not exists:
        raise WeightsNotFoundError(
            f"inception_v1 weights not found: {path} is neither a TF-Slim checkpoint (e.g. "
            f"inception_v1.ckpt from {INCEPTION_V1_SLIM_URL}) nor a Keras weights file "
            f"(*{_KERAS_WEIGHTS_SUFFIX})."
        )


def load_inception_v1_weights(model, path):
    """Loads a TF-Slim checkpoint or a converted Keras weights file into an `InceptionV1`."""
    if is_keras_weights_file(path):
        model.load_weights(path)
    else:
        _check_checkpoint(path)
        _load_slim_checkpoint(model, path)


def _load_slim_checkpoint(model, path):
    try:
        inception_v1.load_slim_checkpoint(model, path)
    except tf.errors.OpError as e:
        raise ValueError(f"Cannot read {path} as a TensorFlow checkpoint: {e.message}") from e


def convert_slim_checkpoint(checkpoint_path, output_path):
    """Writes TF-Slim's InceptionV1 ImageNet checkpoint as a Keras `.weights.h5` file.

    Every backbone variable (conv weights; BatchNorm beta, moving mean and variance) is read by
    its slim name; Logits and global_step are ignored; a missing or mis-shaped variable raises
    ValueError naming it. The file is written under a temporary name and renamed, so an
    interrupted conversion never leaves a truncated `output_path`.

    Returns:
        dict with "output" (the path written), "variables" (number converted) and "ignored"
        (checkpoint variables not used).
    """
    checkpoint_path = os.path.expanduser(str(checkpoint_path))
    output_path = check_output_path(output_path)
    _check_checkpoint(checkpoint_path)
    model = inception_v1.InceptionV1()
    _load_slim_checkpoint(model, checkpoint_path)
    used = set(inception_v1.slim_variable_map(model))
    ignored = sorted(set(tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()) - used)

    save_weights_atomically(model, output_path)
    return {"output": output_path, "variables": len(used), "ignored": ignored}


def resnet50_imagenet_path(data_dir=None):
    """Where ``--weights imagenet`` looks for the converted torchvision ResNet50 file."""
    return os.path.join(data_dir or default_data_dir(), "weights", RESNET50_TORCHVISION_FILE)


def resnet50_imagenet(data_dir=None):
    """``<data_dir>/weights/resnet50_torchvision_imagenet.weights.h5``, or how to make it."""
    path = resnet50_imagenet_path(data_dir)
    if os.path.isfile(path):
        return path
    raise WeightsNotFoundError(
        f"torchvision ResNet50 ImageNet weights not found: {path}. Obtain them once: download "
        f"{RESNET50_TORCHVISION_URL} (on a machine with network access), then run: python -m "
        f"tfmetric.weights convert --from torchvision resnet50-0676ba61.pth --to {path} . "
        f"Alternatively pass the .pth itself with --weights /path/to/resnet50-0676ba61.pth."
    )


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
    output_path = check_output_path(output_path)
    state_dict = torch_state_dict.read_state_dict(pth_path)
    model = resnet50.ResNet50Backbone()
    ignored = resnet50.load_torchvision_state_dict(model, state_dict, pth_path)
    save_weights_atomically(model, output_path)
    return {"output": output_path, "variables": len(state_dict) - len(ignored), "ignored": ignored}


def check_output_path(output_path):
    """The expanded output path; ValueError unless it ends in '.weights.h5'."""
    output_path = os.path.expanduser(str(output_path))
    if not output_path.endswith(_KERAS_WEIGHTS_SUFFIX):
        raise ValueError(
            f"The output must be a Keras weights file ending in '{_KERAS_WEIGHTS_SUFFIX}'. Received: {output_path!r}"
        )
    return output_path


def save_weights_atomically(model, output_path):
    """``model.save_weights`` under a temporary name, then renamed: never a truncated file."""
    directory = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(directory, exist_ok=True)
    stem = os.path.basename(output_path)[: -len(_KERAS_WEIGHTS_SUFFIX)]
    tmp = os.path.join(directory, f".{stem}.tmp{os.getpid()}{_KERAS_WEIGHTS_SUFFIX}")
    try:
        model.save_weights(tmp)
        os.replace(tmp, output_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@dataclasses.dataclass(frozen=True)
class Converter:
    """One `--from` format of `python -m tfmetric.weights convert`.

    Attributes:
      description: what it converts, for which backbone.
      convert: (source path, output path) -> {"output", "variables", "ignored"}.
      default_output: data_dir (None: the default) -> the file `--weights imagenet` loads.
    """

    description: str
    convert: Callable
    default_output: Callable


CONVERTERS = {
    "torchvision": Converter(
        "torchvision ResNet50 state_dict (.pth) for the resnet50 backbone",
        convert_torchvision_state_dict,
        resnet50_imagenet_path,
    ),
    "slim-checkpoint": Converter(
        "TF-Slim InceptionV1 checkpoint for the inception_v1 backbone",
        convert_slim_checkpoint,
        inception_v1_imagenet_path,
    ),
}


def convert_weights(source_format, source_path, output_path=None, data_dir=None):
    """Converts pretrained weights into a Keras `.weights.h5` file (default: the file
    `--weights imagenet` loads, under ``data_dir``); returns the converter's result dict."""
    if source_format not in CONVERTERS:
        raise ValueError(
            f"Unknown weights format {source_format!r}. Allowed values: "
            f"{', '.join(CONVERTERS)}. Received: source_format={source_format!r}"
        )
    converter = CONVERTERS[source_format]
    return converter.convert(source_path, output_path or converter.default_output(data_dir))
