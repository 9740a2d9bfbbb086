"""InceptionV1 against the TF-Slim definition (research/slim/nets/inception_v1.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfmetric.models import backbones, inception_v1
from tfmetric.models.inception_v1 import InceptionV1

# Written out independently of the implementation, from slim's inception_v1_base:
# (end point, Branch_0 1x1, Branch_1 1x1, Branch_1 3x3, Branch_2 1x1, Branch_2 3x3, Branch_3 1x1).
SLIM_MIXED = [
    ("Mixed_3b", 64, 96, 128, 16, 32, 32),
    ("Mixed_3c", 128, 128, 192, 32, 96, 64),
    ("Mixed_4b", 192, 96, 208, 16, 48, 64),
    ("Mixed_4c", 160, 112, 224, 24, 64, 64),
    ("Mixed_4d", 128, 128, 256, 24, 64, 64),
    ("Mixed_4e", 112, 144, 288, 32, 64, 64),
    ("Mixed_4f", 256, 160, 320, 32, 128, 128),
    ("Mixed_5b", 256, 160, 320, 32, 128, 128),
    ("Mixed_5c", 384, 192, 384, 48, 128, 128),
]
# Derived from SLIM_MIXED by `slim_conv_shapes` below; stated here so a change to either shows.
SLIM_TOTAL_PARAMS = 5_607_184  # conv weights + BN beta, moving_mean, moving_variance
SLIM_TRAINABLE_PARAMS = 5_592_624  # conv weights + BN beta


def slim_conv_shapes():
    """Slim scope (without 'InceptionV1/') -> conv weight shape [kh, kw, in, out]."""
    shapes = {
        "Conv2d_1a_7x7": (7, 7, 3, 64),
        "Conv2d_2b_1x1": (1, 1, 64, 64),
        "Conv2d_2c_3x3": (3, 3, 64, 192),
    }
    channels = 192
    for end_point, b0, b1a, b1b, b2a, b2b, b3 in SLIM_MIXED:
        # The released checkpoint (and slim's code) call this conv Conv2d_0a_3x3 in Mixed_5b.
        b2_3x3 = "Conv2d_0a_3x3" if end_point == "Mixed_5b" else "Conv2d_0b_3x3"
        shapes.update(
            {
                f"{end_point}/Branch_0/Conv2d_0a_1x1": (1, 1, channels, b0),
                f"{end_point}/Branch_1/Conv2d_0a_1x1": (1, 1, channels, b1a),
                f"{end_point}/Branch_1/Conv2d_0b_3x3": (3, 3, b1a, b1b),
                f"{end_point}/Branch_2/Conv2d_0a_1x1": (1, 1, channels, b2a),
                f"{end_point}/Branch_2/{b2_3x3}": (3, 3, b2a, b2b),
                f"{end_point}/Branch_3/Conv2d_0b_1x1": (1, 1, channels, b3),
            }
        )
        channels = b0 + b1b + b2b + b3
    assert channels == 1024
    return shapes


@pytest.fixture(scope="module")
def model():
    return InceptionV1()


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(2, *shape, 3)).astype("float32")


def _randomize(model, seed=1):
    """Random weights and BN statistics, so that comparisons of outputs mean something."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        values = rng.normal(0.0, 0.05, size=variable.shape)
        if "moving_variance" in variable.path:
            values = rng.uniform(0.5, 1.5, size=variable.shape)
        variable.assign(values.astype("float32"))


@pytest.mark.parametrize("spatial", [(32, 32), (64, 64), (32, 48)])
def test_output_is_1024_d_for_any_input_size(model, spatial):
    assert model(_images(spatial), training=False).shape == (2, 1024)
    assert InceptionV1.output_dim == inception_v1.OUTPUT_DIM == 1024


def test_fixed_input_shape():
    fixed = InceptionV1(input_shape=(32, 48, 3))
    assert fixed.output_shape == (None, 1024)
    assert fixed.get_layer("Mixed_5c").output.shape == (None, 1, 2, 1024)


def test_conv_names_and_kernel_shapes_equal_slim(model):
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    actual = {inception_v1.slim_scope(c.name): tuple(c.kernel.shape) for c in convs}
    assert len(actual) == len(convs) == 57
    assert actual == slim_conv_shapes()
    assert all(not c.use_bias and c.padding == "same" for c in convs)
    assert model.get_layer("Mixed_4b__Branch_1__Conv2d_0b_3x3").kernel.shape == (3, 3, 96, 208)


def test_parameter_count_equals_slim(model):
    shapes = slim_conv_shapes()
    conv_params = sum(int(np.prod(s)) for s in shapes.values())
    bn_channels = sum(s[-1] for s in shapes.values())
    assert conv_params + bn_channels == SLIM_TRAINABLE_PARAMS
    assert conv_params + 3 * bn_channels == SLIM_TOTAL_PARAMS
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == SLIM_TRAINABLE_PARAMS
    assert model.count_params() == SLIM_TOTAL_PARAMS


def test_every_conv_has_batchnorm_without_gamma_then_relu(model):
    for conv in (layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)):
        bn = model.get_layer(conv.name + "__BatchNorm")
        assert isinstance(bn, keras.layers.BatchNormalization)
        assert not bn.scale and bn.center
        assert bn.epsilon == pytest.approx(inception_v1.SLIM_BATCH_NORM_EPSILON)
        assert sorted(w.name for w in bn.weights) == ["beta", "moving_mean", "moving_variance"]
        assert isinstance(model.get_layer(conv.name + "__Relu"), keras.layers.ReLU)
    assert (
        InceptionV1(input_shape=(32, 32, 3), bn_momentum=0.9997).get_layer("Conv2d_1a_7x7__BatchNorm").momentum
        == inception_v1.SLIM_BATCH_NORM_DECAY
    )


def test_end_points_are_named_like_slim(model):
    for end_point in ["MaxPool_2a_3x3", "MaxPool_3a_3x3", "MaxPool_4a_3x3", "MaxPool_5a_2x2"]:
        assert isinstance(model.get_layer(end_point), keras.layers.MaxPooling2D)
    for end_point, *_ in SLIM_MIXED:
        assert isinstance(model.get_layer(end_point), keras.layers.Concatenate)
    assert model.get_layer("MaxPool_5a_2x2").pool_size == (2, 2)


def _inputs_of(model, layer_name):
    node = model.get_layer(layer_name)._inbound_nodes[0]
    return [t._keras_history.operation.name for t in node.input_tensors]


def test_wiring_follows_slim(model):
    """Each layer's inputs, so branch order in the concat (which fixes the checkpoint's
    channel layout for the next block) and the pools between blocks are checked too."""
    stem = ["image", "Conv2d_1a_7x7", "MaxPool_2a_3x3", "Conv2d_2b_1x1", "Conv2d_2c_3x3", "MaxPool_3a_3x3"]

    def relu(name):
        return name + "__Relu"

    for previous, current in zip(stem, stem[1:]):
        src = relu(previous) if previous.startswith("Conv") else previous
        assert _inputs_of(model, current) == [src]
    previous = "MaxPool_3a_3x3"
    for end_point, *_ in SLIM_MIXED:
        pool = {"Mixed_4b": "MaxPool_4a_3x3", "Mixed_5b": "MaxPool_5a_2x2"}.get(end_point)
        if pool:
            assert _inputs_of(model, pool) == [previous]
            previous = pool
        b = end_point + "__Branch_"
        b2_3x3 = "Conv2d_0a_3x3" if end_point == "Mixed_5b" else "Conv2d_0b_3x3"
        for first in [b + "0__Conv2d_0a_1x1", b + "1__Conv2d_0a_1x1", b + "2__Conv2d_0a_1x1", b + "3__MaxPool_0a_3x3"]:
            assert _inputs_of(model, first) == [previous]
        assert _inputs_of(model, b + "1__Conv2d_0b_3x3") == [relu(b + "1__Conv2d_0a_1x1")]
        assert _inputs_of(model, b + "2__" + b2_3x3) == [relu(b + "2__Conv2d_0a_1x1")]
        assert _inputs_of(model, b + "3__Conv2d_0b_1x1") == [b + "3__MaxPool_0a_3x3"]
        assert _inputs_of(model, end_point) == [
            relu(b + "0__Conv2d_0a_1x1"),
            relu(b + "1__Conv2d_0b_3x3"),
            relu(b + "2__" + b2_3x3),
            relu(b + "3__Conv2d_0b_1x1"),
        ]
        previous = end_point
    assert _inputs_of(model, "global_pool") == ["Mixed_5c"]


def test_layer_name_encoding_round_trips():
    scope = "Mixed_4b/Branch_1/Conv2d_0b_3x3/BatchNorm"
    assert inception_v1.keras_layer_name(scope) == "Mixed_4b__Branch_1__Conv2d_0b_3x3__BatchNorm"
    assert inception_v1.slim_scope(inception_v1.keras_layer_name(scope)) == scope


def test_slim_variable_map_names_every_weight(model):
    mapping = inception_v1.slim_variable_map(model)
    assert len(mapping) == len(model.weights) == 57 * 4
    assert {id(v) for v in mapping.values()} == {id(w) for w in model.weights}
    expected = set()
    for scope in slim_conv_shapes():
        expected.add(f"InceptionV1/{scope}/weights")
        expected.update(f"InceptionV1/{scope}/BatchNorm/{v}" for v in ("beta", "moving_mean", "moving_variance"))
    assert set(mapping) == expected


def _write_slim_checkpoint(prefix, tensors):
    """A name-based (TF1 Saver-style) checkpoint, the format of slim's ImageNet checkpoints."""
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )


def test_slim_checkpoint_loads_by_name(model, tmp_path):
    _randomize(model)
    images = _images((32, 32))
    expected = model(images, training=False)
    tensors = {n: v.numpy() for n, v in inception_v1.slim_variable_map(model).items()}
    tensors["InceptionV1/Logits/Conv2d_0c_1x1/weights"] = np.zeros((1, 1, 1024, 3), "float32")
    prefix = str(tmp_path / "inception_v1.ckpt")
    _write_slim_checkpoint(prefix, tensors)

    loaded, dim = backbones.build_backbone("inception_v1", input_shape=(32, 32, 3), weights=prefix)
    assert dim == 1024
    np.testing.assert_allclose(loaded(images, training=False), expected, rtol=1e-5, atol=1e-6)

    del tensors["InceptionV1/Mixed_5b/Branch_2/Conv2d_0a_3x3/weights"]
    partial = str(tmp_path / "partial.ckpt")
    _write_slim_checkpoint(partial, tensors)
    with pytest.raises(ValueError, match="Conv2d_0a_3x3"):
        inception_v1.load_slim_checkpoint(loaded, partial)


def test_keras_save_reload_gives_identical_outputs(model, tmp_path):
    _randomize(model, seed=2)
    images = _images((32, 48))
    path = str(tmp_path / "inception_v1.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded(images, training=False), model(images, training=False))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": (32, 32)},
        {"input_shape": (32, 32, None)},
        {"bn_momentum": 1.0},
        {"bn_epsilon": 0.0},
    ],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        InceptionV1(**kwargs)


def test_imagenet_without_converted_file_explains_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TFMETRIC_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="inception_v1_2016_08_28.tar.gz"):
        backbones.build_backbone("inception_v1", weights="imagenet")
