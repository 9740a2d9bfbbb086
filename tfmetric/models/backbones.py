"""Registry of the paper's backbones: name -> builder, feature size and input normalisation."""
from tfmetric.models import inception_v1
from tfmetric.models import resnet50

# name -> builder(input_shape, weights) returning a keras.Model image -> [batch, feature_dim].
BACKBONES = {
    "inception_v1": inception_v1.InceptionV1,
    "resnet50": resnet50.ResNet50Backbone,
}

# Descriptors returned by `backbone_preprocessing`:
#   "imagenet_mean_std": RGB in [0, 1], minus mean (0.485, 0.456, 0.406), over std
#       (0.229, 0.224, 0.225); training from scratch, as in the paper's official code.
#   "caffe": keras.applications.resnet50.preprocess_input (BGR, 0-255, ImageNet mean subtracted).
#   "inception": RGB scaled to [-1, 1], as TF-Slim's ImageNet checkpoints expect.
_PRETRAINED_PREPROCESSING = {"inception_v1": "inception", "resnet50": "caffe"}


def _check_name(name):
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone. Allowed values: {sorted(BACKBONES)}. "
                         f"Received: name={name!r}")


def build_backbone(name, input_shape=(None, None, 3), weights=None):
    """Builds backbone `name` and returns `(model, feature_dim)`.

    Args:
        name: one of `BACKBONES`.
        input_shape: (height, width, 3); spatial sizes may be None.
        weights: None for random initialisation. For "resnet50": "imagenet" or a Keras weights
            file. For "inception_v1": the path of a TF-Slim inception_v1 checkpoint (e.g.
            `inception_v1_2016_08_28/inception_v1.ckpt`); nothing is downloaded.
    """
    _check_name(name)
    if name == "inception_v1":
        if weights == "imagenet":
            raise ValueError(
                "inception_v1 ImageNet weights are not downloaded automatically; pass the path "
                "of TF-Slim's inception_v1.ckpt (from inception_v1_2016_08_28.tar.gz, listed in "
                "tensorflow/models research/slim). Received: weights='imagenet'")
        model = inception_v1.InceptionV1(input_shape=input_shape)
        if weights is not None:
            inception_v1.load_slim_checkpoint(model, weights)
    else:
        model = resnet50.ResNet50Backbone(input_shape=input_shape, weights=weights)
    return model, BACKBONES[name].output_dim


def backbone_preprocessing(name, weights=None):
    """Names the input normalisation backbone `name` with `weights` expects (see above)."""
    _check_name(name)
    return "imagenet_mean_std" if weights is None else _PRETRAINED_PREPROCESSING[name]
