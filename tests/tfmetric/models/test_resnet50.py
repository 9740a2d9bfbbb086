"""ResNet50Backbone and the backbone registry (tfmetric.models.backbones)."""
import keras
import numpy as np
import pytest

from tfmetric.models import backbones
from tfmetric.models.resnet50 import ResNet50Backbone


@pytest.fixture(scope="module")
def built():
    return backbones.build_backbone("resnet50")


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, size=(2, *shape, 3)).astype("float32")


@pytest.mark.parametrize("spatial", [(32, 32), (64, 64), (32, 48)])
def test_output_is_2048_d_for_any_input_size(built, spatial):
    model, dim = built
    assert dim == ResNet50Backbone.output_dim == 2048
    assert model(_images(spatial), training=False).shape == (2, 2048)


def test_is_keras_applications_resnet50_without_top(built):
    model, _ = built
    assert model.output_shape == (None, 2048)
    assert model.count_params() == 23_587_712  # keras.applications ResNet50, include_top=False
    assert "predictions" not in [layer.name for layer in model.layers]


def test_keras_save_reload_gives_identical_outputs(built, tmp_path):
    model, _ = built
    images = _images((32, 32))
    path = str(tmp_path / "resnet50.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded(images, training=False), model(images, training=False))


@pytest.mark.parametrize("input_shape", [(16, 16, 3), (32, 32, 1), (32, 32)])
def test_invalid_input_shape_raises(input_shape):
    with pytest.raises(ValueError, match="input_shape"):
        ResNet50Backbone(input_shape=input_shape)


def test_unknown_backbone_name_lists_allowed_values():
    with pytest.raises(ValueError, match=r"inception_v1.*resnet50.*Received: name='vgg16'"):
        backbones.build_backbone("vgg16")
    with pytest.raises(ValueError, match="Allowed values"):
        backbones.backbone_preprocessing("vgg16", None)


def test_registry_names():
    assert sorted(backbones.BACKBONES) == ["inception_v1", "resnet50"]


@pytest.mark.parametrize("name, weights, expected", [
    ("inception_v1", None, "imagenet_mean_std"),
    ("resnet50", None, "imagenet_mean_std"),
    ("resnet50", "imagenet", "caffe"),
    ("resnet50", "/weights/resnet50_notop.h5", "caffe"),
    ("inception_v1", "/ckpt/inception_v1.ckpt", "inception"),
])
def test_backbone_preprocessing(name, weights, expected):
    assert backbones.backbone_preprocessing(name, weights) == expected
