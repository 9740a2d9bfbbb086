"""torchvision ResNet50 weights for the resnet50 backbone: convert, "imagenet", a .pth directly.

A full-size ResNet50 state_dict with torchvision's keys and shapes (data/resnet50_state_dict.json)
is written without torch, every tensor filled with its own index (exact in float16), so that each
Keras variable shows which state_dict entry it received.
"""

import json
import os

import numpy as np
import pytest

from tests.tfmetric.models import torch_files
from tfmetric.models import backbones, resnet50
from tfmetric.models import weights as weights_lib

DATA = os.path.join(os.path.dirname(__file__), "data")


def resnet50_tensors(with_fc=True):
    with open(os.path.join(DATA, "resnet50_state_dict.json")) as f:
        shapes = json.load(f)
    tensors = {}
    for index, (key, shape) in enumerate(shapes.items()):
        if key.endswith("num_batches_tracked"):
            tensors[key] = np.array(100, np.int64)
        elif with_fc or not key.startswith("fc."):
            tensors[key] = np.full(shape, index, np.float16)
    return tensors


@pytest.fixture(scope="module")
def pth(tmp_path_factory):
    tensors = resnet50_tensors()
    return torch_files.write_torch_zip(tmp_path_factory.mktemp("pth") / "resnet50-0676ba61.pth", tensors), tensors


def assert_holds(model, tensors):
    for key, (variable, transform) in resnet50.torchvision_variable_map(model).items():
        np.testing.assert_array_equal(variable.numpy(), transform(tensors[key].astype(np.float32)), err_msg=key)


def test_convert_then_imagenet_loads_it(pth, tmp_path):
    path, tensors = pth
    output = weights_lib.resnet50_imagenet_path(str(tmp_path))
    assert output == str(tmp_path / "weights" / "resnet50_torchvision_imagenet.weights.h5")
    result = weights_lib.convert_torchvision_state_dict(path, output)
    assert result["output"] == output and result["variables"] == 53 + 53 * 4  # 53 convolutions, 4 tensors per BatchNorm
    assert result["ignored"][:2] == ["bn1.num_batches_tracked", "fc.bias"] and len(result["ignored"]) == 55
    assert os.listdir(os.path.dirname(output)) == ["resnet50_torchvision_imagenet.weights.h5"]
    model, dim = backbones.build_backbone("resnet50", (64, 64, 3), weights="imagenet", data_dir=str(tmp_path))
    assert dim == 2048
    assert_holds(model, tensors)


def test_a_pth_without_fc_is_the_weights_directly(tmp_path):
    tensors = resnet50_tensors(with_fc=False)
    path = torch_files.write_torch_zip(tmp_path / "no_fc.pth", tensors)
    model, _ = backbones.build_backbone("resnet50", (32, 32, 3), weights=path)
    assert_holds(model, tensors)


def test_imagenet_missing_says_what_to_download_and_run(tmp_path, monkeypatch):
    monkeypatch.setenv("TFMETRIC_DATA_DIR", str(tmp_path))
    expected = str(tmp_path / "weights" / "resnet50_torchvision_imagenet.weights.h5")
    with pytest.raises(weights_lib.WeightsNotFoundError) as info:
        backbones.build_backbone("resnet50", weights="imagenet")
    message = str(info.value)
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    assert (f"python -m tfmetric.weights convert --from torchvision resnet50-0676ba61.pth --to {expected}") in message
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_a_state_dict_of_another_network_is_named(tmp_path):
    output = tmp_path / "out" / "x.weights.h5"
    tiny = os.path.join(DATA, "tiny_resnet.pth")
    needle = r"tiny_resnet.pth does not match resnet50: missing keys \['layer1.0.downsample"
    with pytest.raises(ValueError, match=needle):
        weights_lib.convert_torchvision_state_dict(tiny, output)
    assert not output.parent.exists()
    with pytest.raises(ValueError, match="ending in '.weights.h5'"):
        weights_lib.convert_torchvision_state_dict(tiny, tmp_path / "x.h5")
