"""Inception V1 (GoogLeNet with BatchNorm) as in TF-Slim, up to the pool5 global average.

The backbone of Zhai & Wu (BMVC 2019), Section 4: "BN-Inception"-style GoogLeNet whose pool5
feature (1024-d) feeds the embedding head. The layer graph follows TF-Slim's
`nets/inception_v1.py` (`inception_v1_base` up to `Mixed_5c`) under `inception_arg_scope`:
every convolution has no bias and is followed by BatchNorm without gamma (slim's `scale=False`,
epsilon 0.001) and ReLU; all convolutions and max-pools use 'SAME' padding, so any input of at
least 1x1 pixel works (32x32 gives a 1x1 Mixed_5c map).

Keras 3 forbids '/' in layer names, so every slim scope is encoded with '__' for '/':
slim `Mixed_4b/Branch_1/Conv2d_0b_3x3` is Keras layer `Mixed_4b__Branch_1__Conv2d_0b_3x3`, its
BatchNorm is `Mixed_4b__Branch_1__Conv2d_0b_3x3__BatchNorm`. `slim_variable_map` lists every
weight under its slim checkpoint name and `load_slim_checkpoint` loads an ImageNet checkpoint
(e.g. slim's `inception_v1_2016_08_28/inception_v1.ckpt`, which expects inputs in [-1, 1]).
"""

import keras
import numpy as np
import tensorflow as tf

OUTPUT_DIM = 1024

SLIM_SCOPE = "InceptionV1"

# TF-Slim `inception_arg_scope(batch_norm_decay=0.9997, batch_norm_epsilon=0.001)`. Keras
# `momentum` has the same meaning as slim's `decay`.
SLIM_BATCH_NORM_DECAY = 0.9997
SLIM_BATCH_NORM_EPSILON = 0.001

# Mixed blocks in order: (end point, filters of Branch_0 1x1, Branch_1 1x1 -> 3x3,
# Branch_2 1x1 -> 3x3, Branch_3 pool -> 1x1). Max-pools (stride 2) come before 4b and 5b.
_MIXED_BLOCKS = (
    ("Mixed_3b", 64, 96, 128, 16, 32, 32),
    ("Mixed_3c", 128, 128, 192, 32, 96, 64),
    ("Mixed_4b", 192, 96, 208, 16, 48, 64),
    ("Mixed_4c", 160, 112, 224, 24, 64, 64),
    ("Mixed_4d", 128, 128, 256, 24, 64, 64),
    ("Mixed_4e", 112, 144, 288, 32, 64, 64),
    ("Mixed_4f", 256, 160, 320, 32, 128, 128),
    ("Mixed_5b", 256, 160, 320, 32, 128, 128),
    ("Mixed_5c", 384, 192, 384, 48, 128, 128),
)
_POOL_BEFORE = {"Mixed_4b": ("MaxPool_4a_3x3", 3), "Mixed_5b": ("MaxPool_5a_2x2", 2)}

_SEP = "__"


def keras_layer_name(scope):
    """Encodes a slim scope ('Mixed_4b/Branch_1/Conv2d_0b_3x3') as a valid Keras layer name."""
    return scope.replace("/", _SEP)


def slim_scope(layer_name):
    """Inverse of `keras_layer_name`: the slim scope (without 'InceptionV1/') of a layer."""
    return layer_name.replace(_SEP, "/")


def _branch_2_3x3_scope(end_point):
    # Slim names this conv Conv2d_0a_3x3 in Mixed_5b only (a typo kept in the released
    # ImageNet checkpoint), Conv2d_0b_3x3 everywhere else.
    return "Conv2d_0a_3x3" if end_point == "Mixed_5b" else "Conv2d_0b_3x3"


class _Builder:
    def __init__(self, bn_momentum, bn_epsilon):
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon

    def conv(self, x, filters, kernel_size, scope, strides=1):
        name = keras_layer_name(scope)
        x = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=False,
            # slim's inception_arg_scope default (He, fan-in, truncated normal). inception_v1_base
            # overrides it with trunc_normal(0.01), which only matters before ImageNet weights are
            # loaded; from scratch, 0.01 makes the BN-scaled gradients blow the weights up.
            kernel_initializer=keras.initializers.VarianceScaling(
                scale=2.0, mode="fan_in", distribution="truncated_normal"
            ),
            name=name,
        )(x)
        x = keras.layers.BatchNormalization(
            momentum=self.bn_momentum, epsilon=self.bn_epsilon, scale=False, name=name + _SEP + "BatchNorm"
        )(x)
        return keras.layers.ReLU(name=name + _SEP + "Relu")(x)

    @staticmethod
    def max_pool(x, pool_size, scope, strides):
        return keras.layers.MaxPooling2D(pool_size, strides=strides, padding="same", name=keras_layer_name(scope))(x)

    def mixed(self, x, end_point, b0, b1a, b1b, b2a, b2b, b3):
        s = end_point + "/"
        branch_0 = self.conv(x, b0, 1, s + "Branch_0/Conv2d_0a_1x1")
        branch_1 = self.conv(x, b1a, 1, s + "Branch_1/Conv2d_0a_1x1")
        branch_1 = self.conv(branch_1, b1b, 3, s + "Branch_1/Conv2d_0b_3x3")
        branch_2 = self.conv(x, b2a, 1, s + "Branch_2/Conv2d_0a_1x1")
        branch_2 = self.conv(branch_2, b2b, 3, s + "Branch_2/" + _branch_2_3x3_scope(end_point))
        branch_3 = self.max_pool(x, 3, s + "Branch_3/MaxPool_0a_3x3", strides=1)
        branch_3 = self.conv(branch_3, b3, 1, s + "Branch_3/Conv2d_0b_1x1")
        return keras.layers.Concatenate(axis=-1, name=end_point)([branch_0, branch_1, branch_2, branch_3])


def InceptionV1(input_shape=(None, None, 3), name="InceptionV1", bn_momentum=0.99, bn_epsilon=SLIM_BATCH_NORM_EPSILON):
    """TF-Slim Inception V1 base (up to Mixed_5c) followed by a global average: image -> 1024-d.

    Args:
        input_shape: (height, width, channels); height and width may be None.
        name: name of the returned `keras.Model`.
        bn_momentum: moving-average momentum of every BatchNorm. Slim trains with
            `SLIM_BATCH_NORM_DECAY` (0.9997); the default is Keras' 0.99 because fine-tuning
            on small retrieval datasets runs too few steps for 0.9997's ~3,300-step horizon.
            Inference and checkpoint loading do not depend on it.
        bn_epsilon: BatchNorm epsilon (slim: 0.001).

    Returns:
        A functional `keras.Model`. Intermediate end points are reachable by their slim name,
        e.g. `model.get_layer("Mixed_4e").output`; the pooled output layer is "global_pool".
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            "`input_shape` must be (height, width, channels) with a known number "
            f"of channels. Received: input_shape={input_shape}"
        )
    if not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"`bn_momentum` must be in [0, 1). Received: bn_momentum={bn_momentum}")
    if bn_epsilon <= 0:
        raise ValueError(f"`bn_epsilon` must be positive. Received: bn_epsilon={bn_epsilon}")

    build = _Builder(bn_momentum, bn_epsilon)
    inputs = keras.Input(shape=input_shape, name="image")
    x = build.conv(inputs, 64, 7, "Conv2d_1a_7x7", strides=2)
    x = build.max_pool(x, 3, "MaxPool_2a_3x3", strides=2)
    x = build.conv(x, 64, 1, "Conv2d_2b_1x1")
    x = build.conv(x, 192, 3, "Conv2d_2c_3x3")
    x = build.max_pool(x, 3, "MaxPool_3a_3x3", strides=2)
    for end_point, *filters in _MIXED_BLOCKS:
        if end_point in _POOL_BEFORE:
            pool_scope, pool_size = _POOL_BEFORE[end_point]
            x = build.max_pool(x, pool_size, pool_scope, strides=2)
        x = build.mixed(x, end_point, *filters)
    outputs = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    return keras.Model(inputs, outputs, name=name)


InceptionV1.output_dim = OUTPUT_DIM
InceptionV1.default_image_size = 224

_BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def slim_variable_map(model, scope=SLIM_SCOPE):
    """Maps every weight of an `InceptionV1` model to its TF-Slim checkpoint variable name.

    E.g. 'InceptionV1/Mixed_4b/Branch_1/Conv2d_0b_3x3/weights' -> the conv kernel and
    'InceptionV1/Mixed_4b/Branch_1/Conv2d_0b_3x3/BatchNorm/moving_mean' -> the BN statistic.
    """
    mapping = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            mapping[f"{scope}/{slim_scope(layer.name)}/weights"] = layer.kernel
            if layer.use_bias:
                mapping[f"{scope}/{slim_scope(layer.name)}/biases"] = layer.bias
        elif isinstance(layer, keras.layers.BatchNormalization):
            for attr in _BN_VARIABLES:
                variable = getattr(layer, attr, None)
                if variable is not None:
                    mapping[f"{scope}/{slim_scope(layer.name)}/{attr}"] = variable
    return mapping


def load_slim_checkpoint(model, checkpoint_path, scope=SLIM_SCOPE):
    """Assigns every weight of `model` from a TF-Slim (name-based) Inception V1 checkpoint.

    Extra checkpoint variables (Logits, optimizer slots, global_step) are ignored; a missing
    variable or a shape mismatch raises ValueError naming them.
    """
    reader = tf.train.load_checkpoint(checkpoint_path)
    shapes = reader.get_variable_to_shape_map()
    mapping = slim_variable_map(model, scope=scope)
    missing = [n for n in mapping if n not in shapes]
    if missing:
        raise ValueError(
            f"Checkpoint {checkpoint_path} lacks {len(missing)} of {len(mapping)} "
            f"InceptionV1 variables, e.g. {missing[:3]}. Expected a TF-Slim "
            f"inception_v1 checkpoint with variable scope '{scope}'."
        )
    wrong = [
        f"{n}: checkpoint {shapes[n]} vs model {list(v.shape)}"
        for n, v in mapping.items()
        if list(shapes[n]) != list(v.shape)
    ]
    if wrong:
        raise ValueError(f"Shape mismatch loading {checkpoint_path}: {wrong[:3]}")
    for name, variable in mapping.items():
        variable.assign(np.asarray(reader.get_tensor(name), dtype=variable.dtype))
