"""torchvision's ResNet-50 in Keras, pooled to its 2048-d pool5 feature (the paper's backbone).

The official code (github.com/azgo14/classification_metric_learning, ``featurizer.py``) takes
torchvision's ResNet50 (through ``pretrainedmodels``) up to ``layer4`` and average-pools it.
This is the same network, layer for layer (torchvision ``models/resnet.py``, the "ResNet v1.5"
layout):

- the stride of a downsampling bottleneck sits in its 3x3 convolution (``conv2``), not in the
  first 1x1 as in ``keras.applications.ResNet50`` (which is ``resnet50_keras``);
- convolutions have no bias; BatchNorm has epsilon 1e-5 and momentum 0.9 in Keras' convention
  (torch's default momentum=0.1);
- padding is symmetric, as torch's ``padding=3`` (stem), ``padding=1`` (3x3 convs and the
  max-pool): explicit ``ZeroPadding2D`` then 'valid', so odd and even input sizes give torch's
  output sizes and values (Keras' 'same' pads stride-2 layers asymmetrically). Zero padding
  equals torch's implicit -inf padding for the max-pool because its input is a ReLU output;
- convolution kernels start as torch's ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``.

Every layer with weights is named after its torchvision state_dict prefix (``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer1.0.downsample.0``, ...), so `torchvision_variable_map` maps state_dict
keys onto Keras variables 1:1. Inputs are RGB in [0, 1] normalised by the ImageNet mean/std,
for torchvision's ImageNet weights as from scratch.
"""

import keras
import numpy as np

OUTPUT_DIM = 2048
EXPANSION = 4  # torchvision's Bottleneck.expansion
RESNET50_BLOCKS = (3, 4, 6, 3)
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Keras convention; torch's BatchNorm2d default momentum=0.1

# state_dict suffix -> Keras variable attribute, per layer kind.
_CONV_VARIABLES = {"weight": "kernel"}
_BN_VARIABLES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
# In a torchvision state_dict but not part of the pool5 backbone.
IGNORED_SUFFIXES = (".num_batches_tracked",)
IGNORED_PREFIXES = ("fc.",)


def _kaiming_fan_out():
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="untruncated_normal")


def _conv_bn(x, filters, kernel_size, strides, padding, conv_name, bn_name, relu):
    if padding:
        x = keras.layers.ZeroPadding2D(padding, name=conv_name + ".pad")(x)
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid",
        use_bias=False,
        kernel_initializer=_kaiming_fan_out(),
        name=conv_name,
    )(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=bn_name)(x)
    return keras.layers.ReLU(name=bn_name + ".relu")(x) if relu else x


def _bottleneck(x, in_channels, planes, stride, width_per_group, expansion, name):
    width = planes * width_per_group // 64
    out = _conv_bn(x, width, 1, 1, 0, f"{name}.conv1", f"{name}.bn1", relu=True)
    out = _conv_bn(out, width, 3, stride, 1, f"{name}.conv2", f"{name}.bn2", relu=True)
    out = _conv_bn(out, planes * expansion, 1, 1, 0, f"{name}.conv3", f"{name}.bn3", relu=False)
    if stride != 1 or in_channels != planes * expansion:
        x = _conv_bn(x, planes * expansion, 1, stride, 0, f"{name}.downsample.0", f"{name}.downsample.1", relu=False)
    out = keras.layers.Add(name=f"{name}.add")([out, x])
    return keras.layers.ReLU(name=f"{name}.relu")(out)


def ResNet(
    blocks=RESNET50_BLOCKS, width_per_group=64, expansion=EXPANSION, input_shape=(None, None, 3), name="resnet50"
):
    """torchvision's ``ResNet(Bottleneck, blocks, width_per_group=...)`` up to the pool5 average.

    Args:
        blocks: bottleneck blocks in layer1..layer4; (3, 4, 6, 3) is ResNet-50.
        width_per_group: torchvision's ``width_per_group`` (64 for ResNet-50, 128 for
            Wide-ResNet-50-2); the 3x3 convolutions have ``planes * width_per_group / 64``
            channels.
        expansion: torchvision's ``Bottleneck.expansion``: stage outputs have 64, 128, 256, 512
            times this many channels (4 in every torchvision ResNet with bottlenecks; the tests
            also use 1).
        input_shape: (height, width, 3); height and width may be None.
        name: name of the returned `keras.Model`.

    Returns:
        A `keras.Model`: normalised RGB images [batch, H, W, 3] -> pool5 [batch, 2048].
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"`input_shape` must be (height, width, 3). Received: input_shape={input_shape}")
    blocks = tuple(blocks)
    if len(blocks) != 4 or min(blocks) < 1:
        raise ValueError(f"`blocks` must be 4 positive counts. Received: blocks={blocks}")
    if width_per_group < 1 or width_per_group % 8:
        raise ValueError(
            f"`width_per_group` must be a positive multiple of 8. Received: width_per_group={width_per_group}"
        )
    if expansion < 1:
        raise ValueError(f"`expansion` must be >= 1. Received: expansion={expansion}")
    images = keras.Input(shape=input_shape, name="images")
    x = _conv_bn(images, 64, 7, 2, 3, "conv1", "bn1", relu=True)
    x = keras.layers.ZeroPadding2D(1, name="maxpool.pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(x)
    channels = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for index in range(count):
            stride = 2 if stage > 1 and index == 0 else 1
            x = _bottleneck(x, channels, planes, stride, width_per_group, expansion, f"layer{stage}.{index}")
            channels = planes * expansion
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    return keras.Model(images, x, name=name)


def ResNet50Backbone(input_shape=(None, None, 3), name="resnet50"):
    """torchvision's ResNet-50 without ``fc``: normalised image -> 2048-d pool5."""
    return ResNet(RESNET50_BLOCKS, 64, EXPANSION, input_shape, name)


ResNet50Backbone.output_dim = OUTPUT_DIM
ResNet50Backbone.default_image_size = 224


def torchvision_variable_map(model):
    """``{state_dict key: (Keras variable, torch-to-Keras array transform)}`` for every weight.

    Conv weights are [out, in, kh, kw] in torch and [kh, kw, in, out] in Keras.
    """
    mapping = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            names, transform = _CONV_VARIABLES, _torch_to_keras_kernel
        elif isinstance(layer, keras.layers.BatchNormalization):
            names, transform = _BN_VARIABLES, np.asarray
        else:
            continue
        for suffix, attribute in names.items():
            mapping[f"{layer.name}.{suffix}"] = (getattr(layer, attribute), transform)
    return mapping


def _torch_to_keras_kernel(weight):
    return np.transpose(weight, (2, 3, 1, 0))


def is_ignored_key(key):
    """True for state_dict entries outside the pool5 backbone (``fc.*``, ``num_batches_tracked``)."""
    return key.startswith(IGNORED_PREFIXES) or key.endswith(IGNORED_SUFFIXES)


def load_torchvision_state_dict(model, state_dict, source="state_dict"):
    """Assigns a torchvision ResNet state_dict (numpy arrays) to a model built by `ResNet`.

    Returns the sorted list of keys ignored (``fc.*``, ``*.num_batches_tracked``).

    Raises:
        ValueError: a key is missing, unexpected (e.g. a deeper ResNet's) or mis-shaped; the
            message names it and ``source``.
    """
    mapping = torchvision_variable_map(model)
    missing = sorted(set(mapping) - set(state_dict))
    unexpected = sorted(k for k in set(state_dict) - set(mapping) if not is_ignored_key(k))
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match {model.name}: missing keys {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}."
        )
    for key, (variable, transform) in mapping.items():
        value = transform(np.asarray(state_dict[key], np.float32))
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{source}: {key} has shape {tuple(np.shape(state_dict[key]))}, "
                f"{model.name} expects {tuple(variable.shape)} (Keras layout)."
            )
        variable.assign(value)
    return sorted(set(state_dict) - set(mapping))
