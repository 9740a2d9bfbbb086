"""The resnet50 backbone is torchvision's ResNet50, held to torchvision's own outputs.

data/tiny_resnet.pth and data/tiny_resnet_reference.npz come from torchvision 0.29.1's own
``ResNet`` and ``Bottleneck`` code (data/make_torchvision_reference.py, run with torch outside the
project): one bottleneck per stage, thin 3x3 convolutions, ``expansion = 1`` to keep the file
small, random BatchNorm statistics. The Keras network built by the same builder with those
arguments, given the converted state_dict, must reproduce pool5 and the logits in eval mode and in
train mode (batch statistics) on an input of odd and even sizes (61 x 70, where Keras' 'same'
padding would shift every stride-2 layer). resnet50_state_dict.json holds every key and shape of
torchvision's real resnet50(), which the full Keras ResNet50 must match 1:1.
"""

import json
import os

import keras
import numpy as np
import pytest

from tfmetric.models import backbones, resnet50

DATA = os.path.join(os.path.dirname(__file__), "data")
TINY = dict(blocks=(1, 1, 1, 1), width_per_group=8, expansion=1)


@pytest.fixture(scope="module")
def reference():
    return np.load(os.path.join(DATA, "tiny_resnet_reference.npz"))


@pytest.fixture(scope="module")
def state_dict():
    from tfmetric.models import torch_state_dict

    return torch_state_dict.read_state_dict(os.path.join(DATA, "tiny_resnet.pth"))


def tiny_model(state_dict):
    model = resnet50.ResNet(**TINY, name="tiny")
    ignored = resnet50.load_torchvision_state_dict(model, state_dict)
    return model, ignored


def nhwc(reference):
    return reference["input"].transpose(0, 2, 3, 1)


def test_eval_mode_equals_torchvision(state_dict, reference):
    model, ignored = tiny_model(state_dict)
    assert [k for k in ignored if not k.endswith(".num_batches_tracked")] == ["fc.bias", "fc.weight"]
    pool5 = model(nhwc(reference), training=False).numpy()
    assert np.abs(reference["pool5_eval"]).max() > 1.0  # not a degenerate reference
    np.testing.assert_allclose(pool5, reference["pool5_eval"], rtol=1e-4, atol=1e-4)
    logits = pool5 @ state_dict["fc.weight"].T + state_dict["fc.bias"]
    np.testing.assert_allclose(logits, reference["logits_eval"], rtol=1e-4, atol=1e-4)


def test_train_mode_equals_torchvision(state_dict, reference):
    model, _ = tiny_model(state_dict)
    pool5 = model(nhwc(reference), training=True).numpy()
    np.testing.assert_allclose(pool5, reference["pool5_train"], rtol=1e-4, atol=1e-4)
    assert np.abs(pool5 - reference["pool5_eval"]).max() > 1e-2  # batch statistics were used
    n_batch, _, height, width = reference["input"].shape
    for name, spatial in (("bn1", (31, 35)), ("layer2.0.bn2", (8, 9)), ("layer4.0.downsample.1", (2, 3))):
        layer = model.get_layer(name)
        # Running means move like torch's (momentum 0.1 there, 0.9 in Keras' convention).
        np.testing.assert_allclose(
            layer.moving_mean.numpy(), reference[f"{name}.running_mean_after"], rtol=1e-4, atol=1e-5, err_msg=name
        )
        # torch updates running_var with the unbiased batch variance, Keras with the biased one:
        # undo torch's n / (n - 1) on the batch part (n = batch x H x W, 3 x 2 x 3 = 18 in layer4).
        n = n_batch * spatial[0] * spatial[1]
        old = state_dict[f"{name}.running_var"]
        torch_new = reference[f"{name}.running_var_after"]
        expected = 0.9 * old + (torch_new - 0.9 * old) * (n - 1) / n
        np.testing.assert_allclose(layer.moving_variance.numpy(), expected, rtol=1e-4, atol=1e-5, err_msg=name)


def test_keras_same_padding_would_not_match(state_dict, reference):
    """The reference is sensitive to the padding: shifting the stem by one pixel breaks it."""
    model, _ = tiny_model(state_dict)
    shifted = np.pad(nhwc(reference), ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:]
    diff = np.abs(model(shifted, training=False).numpy() - reference["pool5_eval"]).max()
    assert diff > 1e-2


def test_resnet50_names_and_shapes_are_torchvisions():
    with open(os.path.join(DATA, "resnet50_state_dict.json")) as f:
        torch_shapes = json.load(f)
    model = resnet50.ResNet50Backbone()
    mapping = resnet50.torchvision_variable_map(model)
    expected = {k: v for k, v in torch_shapes.items() if not resnet50.is_ignored_key(k)}
    assert set(mapping) == set(expected)
    for key, (variable, transform) in mapping.items():
        assert transform(np.zeros(expected[key], np.float32)).shape == tuple(variable.shape), key
    assert len(mapping) == len(model.weights)  # every Keras weight has a torchvision name
    params = sum(int(np.prod(s)) for k, s in expected.items() if not k.endswith(("running_mean", "running_var")))
    assert model.count_params() - sum(int(np.prod(v.shape)) for v in model.non_trainable_weights) == params
    assert params == 23_508_032  # torchvision resnet50 without fc
    # The v1.5 layout: the stride sits in the 3x3 convolution, convolutions have no bias.
    assert model.get_layer("layer2.0.conv1").strides == (1, 1)
    assert model.get_layer("layer2.0.conv2").strides == (2, 2)
    assert not any(layer.use_bias for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert {layer.epsilon for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)} == {1e-5}


@pytest.mark.parametrize("spatial, final", [((32, 32), (1, 1)), ((224, 224), (7, 7)), ((61, 70), (2, 3))])
def test_output_sizes_follow_torch(spatial, final):
    model = resnet50.ResNet(**TINY, input_shape=(*spatial, 3))
    assert model.get_layer("layer4.0.relu").output.shape[1:3] == final
    assert model.output_shape == (None, 512)


def test_state_dict_mismatch_names_the_keys(state_dict):
    model = resnet50.ResNet(blocks=(1, 1, 2, 1), width_per_group=8, expansion=1)
    with pytest.raises(ValueError, match=r"missing keys \['layer3.1.bn1.bias'"):
        resnet50.load_torchvision_state_dict(model, state_dict, "tiny_resnet.pth")
    extra = dict(state_dict, **{"layer5.0.conv1.weight": np.zeros((1,), np.float32)})
    with pytest.raises(ValueError, match=r"unexpected keys \['layer5.0.conv1.weight'\]"):
        resnet50.load_torchvision_state_dict(tiny_model(state_dict)[0], extra)
    wrong = dict(state_dict, **{"conv1.weight": np.zeros((64, 3, 3, 3), np.float32)})
    with pytest.raises(ValueError, match=r"conv1.weight has shape \(64, 3, 3, 3\)"):
        resnet50.load_torchvision_state_dict(tiny_model(state_dict)[0], wrong)


def test_keras_save_reload_gives_identical_outputs(state_dict, reference, tmp_path):
    model, _ = tiny_model(state_dict)
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded(nhwc(reference), training=False), model(nhwc(reference), training=False))


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(input_shape=(32, 32, 1)), "input_shape"),
        (dict(input_shape=(32, 32)), "input_shape"),
        (dict(blocks=(1, 1, 1)), "blocks"),
        (dict(blocks=(1, 0, 1, 1)), "blocks"),
        (dict(width_per_group=12), "width_per_group=12"),
        (dict(expansion=0), "expansion=0"),
    ],
)
def test_invalid_arguments_raise(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        resnet50.ResNet(**kwargs)


def test_registry():
    assert sorted(backbones.BACKBONES) == ["inception_v1", "resnet50", "resnet50_keras"]
    from tfmetric import config

    # The config validates against the registry itself: a name the registry lacks is refused, and
    # the error lists the registry's names.
    cfg = config.preset("synthetic")
    cfg.model.backbone = "vgg16"
    with pytest.raises(config.ConfigError, match="Allowed values: " + ", ".join(backbones.BACKBONES)):
        config.validate(cfg)
    with pytest.raises(ValueError, match=r"inception_v1.*resnet50.*resnet50_keras.*Received: name='vgg16'"):
        backbones.build_backbone("vgg16")
    with pytest.raises(ValueError, match="Allowed values"):
        backbones.backbone_preprocessing("vgg16", None)


@pytest.mark.parametrize(
    "name, weights, expected",
    [
        ("inception_v1", None, "imagenet_mean_std"),
        ("resnet50", None, "imagenet_mean_std"),
        ("resnet50", "imagenet", "imagenet_mean_std"),  # torchvision's weights: the official input
        ("resnet50", "/weights/resnet50-0676ba61.pth", "imagenet_mean_std"),
        ("resnet50_keras", None, "imagenet_mean_std"),
        ("resnet50_keras", "imagenet", "caffe"),
        ("resnet50_keras", "/weights/resnet50_notop.h5", "caffe"),
        ("inception_v1", "/ckpt/inception_v1.ckpt", "inception"),
    ],
)
def test_backbone_preprocessing(name, weights, expected):
    assert backbones.backbone_preprocessing(name, weights) == expected
