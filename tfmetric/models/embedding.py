"""The embedding network of the paper and the model trained with the normalized softmax loss.

    images -> backbone pool5 -> LayerNormalization(no affine) -> [Dense(dim, no bias)] -> L2 -> embedding
    embedding -> CosineProxy(num_classes, temperature) -> cosine logits / temperature

The LayerNormalization without affine parameters centres every embedding at zero, which is what
makes sign thresholding at zero a good binarization (Zhai & Wu 2019, Sec. 3.2); the Dense layer is
added only when the embedding dimension differs from the backbone width, as in the official code,
and starts as its ``nn.Linear(bias=False)`` does: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
"""

import math

import keras

from tfmetric.layers import CosineProxy
from tfmetric.models.backbones import build_backbone

# Names of the layers that are new on top of the backbone; the warm-up epochs train only these.
HEAD_LAYER_NAMES = ("embedding_norm", "embedding_projection", "embedding", "cosine_proxy")


def torch_linear_initializer(fan_in, seed=None):
    """PyTorch's ``nn.Linear`` default weight init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    (``kaiming_uniform_(a=sqrt(5))``, whose bound works out to 1/sqrt(fan_in).)
    """
    if fan_in < 1:
        raise ValueError(f"`fan_in` must be >= 1. Received: fan_in={fan_in}")
    bound = 1.0 / math.sqrt(fan_in)
    return keras.initializers.RandomUniform(-bound, bound, seed=seed)


def configure_batch_norm(model, momentum, synchronized=False):
    """Sets every BatchNormalization of `model` (nested models included) to `momentum` and
    `synchronized` (statistics over the global batch of all replicas of a tf.distribute strategy)."""
    for layer in walk_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
            layer.synchronized = synchronized


def build_embedding_model(
    backbone="resnet50",
    embedding_dim=2048,
    image_size=None,
    weights=None,
    layer_norm=True,
    bn_momentum=0.9,
    name="embedding_model",
    data_dir=None,
    sync_batch_norm=False,
):
    """Images (normalised float32, [batch, H, W, 3]) -> L2-normalised embeddings [batch, dim].

    Args:
      backbone: a name of `tfmetric.models.BACKBONES` ("resnet50", "resnet50_keras",
        "inception_v1").
      embedding_dim: output dimension; a bias-free projection is added when it differs from the
        backbone's pool5 width.
      image_size: static spatial size of the input, or None for any size >= 32.
      weights: backbone weights: None, "imagenet" or a file path.
      layer_norm: apply the affine-free LayerNormalization to pool5 (the paper's choice).
      bn_momentum: moving-average momentum of every backbone BatchNorm, Keras convention. 0.9
        equals PyTorch's default momentum=0.1, which the official code trains with.
      data_dir: data root holding ``weights/`` (InceptionV1 ``weights="imagenet"``); None means
        the default data dir.
      sync_batch_norm: BatchNorm statistics over the global batch of all replicas (build the
        model inside the strategy's scope); the official single-GPU recipe on several GPUs.
    """
    if embedding_dim < 1:
        raise ValueError(f"`embedding_dim` must be >= 1. Received: embedding_dim={embedding_dim}")
    shape = (image_size, image_size, 3)
    trunk, width = build_backbone(backbone, input_shape=shape, weights=weights, data_dir=data_dir)
    configure_batch_norm(trunk, bn_momentum, sync_batch_norm)
    images = keras.Input(shape=shape, name="images")
    x = trunk(images)
    if layer_norm:
        # epsilon of torch.nn.LayerNorm, which the official code uses.
        x = keras.layers.LayerNormalization(center=False, scale=False, epsilon=1e-5, name="embedding_norm")(x)
    if embedding_dim != width:
        x = keras.layers.Dense(
            embedding_dim,
            use_bias=False,
            name="embedding_projection",
            kernel_initializer=torch_linear_initializer(width),
        )(x)
    x = keras.layers.UnitNormalization(axis=-1, name="embedding", dtype="float32")(x)
    return keras.Model(images, x, name=name)


def build_training_model(embedding_model, num_classes, temperature=0.05, name="training_model"):
    """embedding_model + CosineProxy: images -> cosine logits over the training classes.

    A plain functional model, so it works with ``compile``/``fit`` and saves as ``.keras``.
    """
    images = keras.Input(shape=embedding_model.input_shape[1:], name="images")
    embeddings = embedding_model(images)
    logits = CosineProxy(num_classes, temperature, name="cosine_proxy", dtype="float32")(embeddings)
    return keras.Model(images, logits, name=name)


def head_variables(training_model):
    """The trainable variables that are new on top of the backbone (proxies and projection)."""
    out = []
    for layer in walk_layers(training_model):
        if layer.name in HEAD_LAYER_NAMES:
            out.extend(layer.trainable_variables)
    return out


def walk_layers(model):
    """Every layer of `model`, nested models' layers included (depth first)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)
