"""Registry of the paper's backbones: name -> builder, feature size and input normalisation."""
from tfmetric.models import inception_v1
from tfmetric.models import resnet50
from tfmetric.models import weights as weights_lib

# name -> builder(input_shape, weights) returning a keras.Model image -> [batch, feature_dim].
BACKBONES = {
    "inception_v1": inception_v1.InceptionV1,
    "resnet50": resnet50.ResNet50Backbone,
}

# Descriptors returned by `backbone_preprocessing`:
#   "imagenet_mean_std": RGB in [0, 1], minus mean (0.485, 0.456, 0.406), over std
#       (0.229, 0.224, 0.225); training from scratch, as in the paper's official code.
#   "caffe": keras.applications.resnet50.preprocess_input (BGR, 0-255, ImageNet mean subtracted),
#       what the keras.applications ImageNet weights were trained with.
#   "inception": RGB scaled to [-1, 1], as TF-Slim's ImageNet checkpoints expect.
_PRETRAINED_PREPROCESSING = {"inception_v1": "inception", "resnet50": "caffe"}


def _check_name(name):
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone. Allowed values: {sorted(BACKBONES)}. "
                         f"Received: name={name!r}")


def build_backbone(name, input_shape=(None, None, 3), weights=None, data_dir=None):
    """Builds backbone `name` and returns `(model, feature_dim)`.

    Args:
        name: one of `BACKBONES`.
        input_shape: (height, width, 3); spatial sizes may be None.
        weights: None or "none" for random initialisation, "imagenet", or a file. For
            "resnet50": a Keras weights file; "imagenet" is the keras.applications file from the
            Keras cache (downloaded when online). For "inception_v1": a TF-Slim checkpoint (e.g.
            `inception_v1_2016_08_28/inception_v1.ckpt`) or a Keras weights file converted from
            it; "imagenet" is `<data_dir>/weights/inception_v1_imagenet.weights.h5`. See
            `tfmetric.models.weights.resolve_weights`.
        data_dir: data root for inception_v1 "imagenet"; None means the default data dir.
    """
    _check_name(name)
    path = weights_lib.resolve_weights(name, weights, data_dir=data_dir)
    try:
        if name == "inception_v1":
            model = inception_v1.InceptionV1(input_shape=input_shape)
            if path is not None:
                weights_lib.load_inception_v1_weights(model, path)
        else:
            model = resnet50.ResNet50Backbone(input_shape=input_shape, weights=path)
    except OSError as e:  # h5py's "file signature not found" for a garbage or truncated file names no file
        raise ValueError(f"weights file {path} cannot be read ({str(e).splitlines()[0] if str(e) else e!r}); "
                         f"it may be truncated or not a Keras weights file.") from None
    return model, BACKBONES[name].output_dim


def backbone_preprocessing(name, weights=None):
    """Names the input normalisation backbone `name` with `weights` expects (see above)."""
    _check_name(name)
    return "imagenet_mean_std" if weights_lib.is_none(weights) else _PRETRAINED_PREPROCESSING[name]
