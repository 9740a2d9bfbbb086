"""Pretrained weights: resolving --weights, and TF-Slim InceptionV1 checkpoint conversion (offline)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.tfmetric.models.test_inception_v1 import slim_conv_shapes
from tfmetric.models import backbones, inception_v1
from tfmetric.models import weights as weights_lib

LOGITS = "InceptionV1/Logits/Conv2d_0c_1x1/"


def slim_imagenet_tensors(seed=0):
    """Every variable of slim's inception_v1.ckpt, with the released names and shapes, random."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for scope, shape in slim_conv_shapes().items():
        prefix = f"InceptionV1/{scope}/"
        tensors[prefix + "weights"] = rng.normal(0, 0.1, shape).astype("float32")
        tensors[prefix + "BatchNorm/beta"] = rng.normal(0, 0.1, shape[-1:]).astype("float32")
        tensors[prefix + "BatchNorm/moving_mean"] = rng.normal(0, 0.1, shape[-1:]).astype("float32")
        tensors[prefix + "BatchNorm/moving_variance"] = rng.uniform(0.5, 1.5, shape[-1:]).astype("float32")
    # In the real file, not part of the pool5 backbone: 1001 classes (0 = background), step.
    tensors[LOGITS + "weights"] = rng.normal(0, 0.1, (1, 1, 1024, 1001)).astype("float32")
    tensors[LOGITS + "biases"] = rng.normal(0, 0.1, (1001,)).astype("float32")
    tensors["global_step"] = np.int64(1234567)
    return tensors


def write_slim_checkpoint(path, tensors):
    """A TF1 Saver V1 checkpoint (one file, no .index): the format of inception_v1_2016_08_28."""
    names = sorted(tensors)
    tf.raw_ops.Save(filename=str(path), tensor_names=names, data=[tf.constant(tensors[n]) for n in names])
    return str(path)


@pytest.fixture(scope="module")
def tensors():
    return slim_imagenet_tensors()


@pytest.fixture(scope="module")
def checkpoint(tensors, tmp_path_factory):
    return write_slim_checkpoint(tmp_path_factory.mktemp("slim") / "inception_v1.ckpt", tensors)


@pytest.fixture(scope="module")
def data_dir(checkpoint, tmp_path_factory):
    """A data dir whose weights/ holds the checkpoint converted to what "imagenet" loads."""
    root = tmp_path_factory.mktemp("data")
    output = weights_lib.inception_v1_imagenet_path(str(root))
    result = weights_lib.convert_slim_checkpoint(checkpoint, output)
    assert result["output"] == output and result["variables"] == 57 * 4
    assert result["ignored"] == [LOGITS + "biases", LOGITS + "weights", "global_step"]
    assert os.listdir(os.path.dirname(output)) == ["inception_v1_imagenet.weights.h5"]
    return str(root)


def test_converted_file_holds_every_checkpoint_tensor(data_dir, tensors):
    # "imagenet" resolves to <data-dir>/weights/inception_v1_imagenet.weights.h5.
    model, dim = backbones.build_backbone(
        "inception_v1", input_shape=(32, 32, 3), weights="imagenet", data_dir=data_dir
    )
    assert dim == 1024
    mapping = inception_v1.slim_variable_map(model)
    assert len(mapping) == len(model.weights)
    for name, variable in mapping.items():
        np.testing.assert_array_equal(variable.numpy(), tensors[name], err_msg=name)


def test_checkpoint_and_converted_file_give_identical_backbones(checkpoint, data_dir, monkeypatch):
    monkeypatch.setenv("TFMETRIC_DATA_DIR", data_dir)  # data_dir=None means the default data dir
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    from_ckpt, _ = backbones.build_backbone("inception_v1", (32, 32, 3), weights=checkpoint)
    from_file, _ = backbones.build_backbone("inception_v1", (32, 32, 3), weights="imagenet")
    np.testing.assert_array_equal(from_file(images, training=False), from_ckpt(images, training=False))


@pytest.mark.parametrize(
    "edit, needle",
    [
        ("drop", "InceptionV1/Mixed_5b/Branch_2/Conv2d_0a_3x3/weights"),
        ("reshape", "InceptionV1/Mixed_4e/Branch_1/Conv2d_0b_3x3/weights"),
    ],
)
def test_missing_or_misshaped_variable_names_it(tensors, tmp_path, edit, needle):
    broken = dict(tensors)
    if edit == "drop":
        del broken[needle]
    else:
        broken[needle] = np.zeros((3, 3, 144, 287), "float32")
    ckpt = write_slim_checkpoint(tmp_path / "broken.ckpt", broken)
    output = tmp_path / "out" / "x.weights.h5"
    with pytest.raises(ValueError, match=needle):
        weights_lib.convert_slim_checkpoint(ckpt, output)
    assert not output.parent.exists() or os.listdir(output.parent) == []


def test_interrupted_write_leaves_no_file(checkpoint, tmp_path, monkeypatch):
    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(weights_lib.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        weights_lib.convert_slim_checkpoint(checkpoint, tmp_path / "x.weights.h5")
    assert os.listdir(tmp_path) == []


def test_convert_rejects_bad_output_name(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="must be a Keras weights file ending in '.weights.h5'"):
        weights_lib.convert_slim_checkpoint(checkpoint, tmp_path / "inception_v1.h5")


def test_missing_checkpoint_and_archive_are_user_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a TF-Slim checkpoint"):
        weights_lib.convert_slim_checkpoint(tmp_path / "nope.ckpt", tmp_path / "x.weights.h5")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Cannot read .*garbage.ckpt as a TensorFlow checkpoint"):
        weights_lib.convert_slim_checkpoint(garbage, tmp_path / "x.weights.h5")
    archive = tmp_path / "inception_v1_2016_08_28.tar.gz"
    archive.write_bytes(b"\x1f\x8b")
    with pytest.raises(ValueError, match="extract it first"):
        backbones.resolve_weights("inception_v1", str(archive))
    (tmp_path / "v2.ckpt.index").write_bytes(b"")  # a V2 checkpoint is named by its prefix
    assert backbones.resolve_weights("inception_v1", str(tmp_path / "v2.ckpt")) == str(tmp_path / "v2.ckpt")


def test_inception_imagenet_missing_explains_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TFMETRIC_DATA_DIR", str(tmp_path))
    expected = str(tmp_path / "weights" / "inception_v1_imagenet.weights.h5")
    with pytest.raises(weights_lib.WeightsNotFoundError) as info:
        backbones.build_backbone("inception_v1", weights="imagenet")
    message = str(info.value)
    assert weights_lib.INCEPTION_V1_SLIM_URL in message
    assert f"python -m tfmetric.weights convert --from slim-checkpoint inception_v1.ckpt --to {expected}" in message
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


@pytest.fixture
def offline_keras(tmp_path, monkeypatch):
    """An empty Keras cache, and a download that fails the way keras.utils.get_file does offline."""
    calls = []

    def no_network(fname, origin, **kwargs):
        calls.append(origin)
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] no network")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(keras.utils, "get_file", no_network)
    return tmp_path / "keras", calls


def test_resnet50_keras_imagenet_offline_says_which_file_goes_where(offline_keras):
    cache, calls = offline_keras
    with pytest.raises(weights_lib.WeightsNotFoundError) as info:
        backbones.build_backbone("resnet50_keras", weights="imagenet")
    message = str(info.value)
    assert calls == [weights_lib.RESNET50_WEIGHTS_URL]
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert weights_lib.RESNET50_WEIGHTS_URL in message
    assert str(cache / "models") in message and "--weights" in message


def test_resnet50_keras_imagenet_from_keras_cache_downloads_nothing(offline_keras, monkeypatch):
    cache, calls = offline_keras
    cached = cache / "models" / weights_lib.RESNET50_WEIGHTS_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"h5")
    built = {}

    class FakeModel:
        def load_weights(self, path):
            built["weights"] = path

    def fake_resnet(input_shape):
        built["input_shape"] = input_shape
        return FakeModel()

    entry = backbones.BACKBONES["resnet50_keras"]
    monkeypatch.setitem(backbones.BACKBONES, "resnet50_keras", backbones.dataclasses.replace(entry, build=fake_resnet))
    model, dim = backbones.build_backbone("resnet50_keras", (64, 64, 3), weights="imagenet")
    assert isinstance(model, FakeModel) and dim == 2048
    assert built == {"input_shape": (64, 64, 3), "weights": str(cached)}
    assert calls == []


@pytest.mark.parametrize("backbone", ["inception_v1", "resnet50", "resnet50_keras"])
@pytest.mark.parametrize("value", [None, "none", "None", ""])
def test_none_means_random_initialisation(backbone, value):
    assert backbones.resolve_weights(backbone, value) is None
    assert backbones.backbone_preprocessing(backbone, value) == "imagenet_mean_std"


@pytest.mark.parametrize(
    "backbone, weights, expected",
    [
        ("inception_v1", "imagenet", "inception"),
        ("resnet50_keras", "imagenet", "caffe"),
        ("resnet50", "imagenet", "imagenet_mean_std"),
        ("inception_v1", "/w/inception_v1_imagenet.weights.h5", "inception"),
    ],
)
def test_pretrained_preprocessing(backbone, weights, expected):
    assert backbones.backbone_preprocessing(backbone, weights) == expected


@pytest.mark.parametrize("backbone", ["inception_v1", "resnet50", "resnet50_keras"])
def test_missing_file_names_it(backbone, tmp_path):
    path = str(tmp_path / "missing.weights.h5")
    with pytest.raises(weights_lib.WeightsNotFoundError, match="missing.weights.h5"):
        backbones.resolve_weights(backbone, path)


def test_unknown_backbone_lists_allowed_values():
    with pytest.raises(ValueError, match=r"inception_v1.*resnet50.*Received: name='vgg16'"):
        backbones.resolve_weights("vgg16", "imagenet")


def test_converters_table_and_unknown_format():
    assert weights_lib.CONVERTERS["slim-checkpoint"].convert is weights_lib.convert_slim_checkpoint
    assert weights_lib.CONVERTERS["torchvision"].default_output("/d") == weights_lib.resnet50_imagenet_path("/d")
    allowed = r"Allowed values: torchvision, slim-checkpoint\. Received: source_format='keras'"
    with pytest.raises(ValueError, match=allowed):
        weights_lib.convert_weights("keras", "x.pth")
