"""The resnet50_keras backbone: keras.applications.ResNet50 without its classifier."""

import keras
import numpy as np
import pytest

from tfmetric.models import backbones
from tfmetric.models.resnet50_keras import KerasResNet50Backbone


def test_is_keras_applications_resnet50_without_top():
    model, dim = backbones.build_backbone("resnet50_keras", (32, 48, 3))
    assert dim == KerasResNet50Backbone.output_dim == 2048
    assert model.output_shape == (None, 2048)
    assert model.count_params() == 23_587_712  # keras.applications ResNet50, include_top=False
    assert "predictions" not in [layer.name for layer in model.layers]
    # The keras.applications layout: stride in the first 1x1 of a block, convolutions with biases.
    conv = model.get_layer("conv3_block1_1_conv")
    assert conv.strides == (2, 2) and conv.use_bias
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 48, 3)).astype("float32")
    assert model(images, training=False).shape == (2, 2048)


@pytest.mark.parametrize("input_shape", [(16, 16, 3), (32, 32, 1), (32, 32)])
def test_invalid_input_shape_raises(input_shape):
    with pytest.raises(ValueError, match="input_shape"):
        KerasResNet50Backbone(input_shape=input_shape)


def test_loads_a_local_weights_file(tmp_path):
    source, _ = backbones.build_backbone("resnet50_keras", (32, 32, 3))
    path = str(tmp_path / "resnet50_keras.weights.h5")
    source.save_weights(path)
    loaded, _ = backbones.build_backbone("resnet50_keras", (32, 32, 3), weights=path)
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert isinstance(loaded, keras.Model)
