"""Makes the torchvision reference the Keras ResNet is tested against (needs torch; not a test).

Run in a scratch environment outside the repository, never as a project dependency:

    python3 -m venv /work/scratch-torch
    /work/scratch-torch/bin/pip install torch==2.14.1 torchvision==0.29.1
    /work/scratch-torch/bin/python tests/tfmetric/models/data/make_torchvision_reference.py

Writes, next to this script:
- ``tiny_resnet.pth``: the state_dict (torch.save, zip format) of torchvision's own
  ``ResNet(ThinBottleneck, [1, 1, 1, 1], width_per_group=8)``: ResNet50's code, names and layout
  with one bottleneck per stage and thin 3x3 convolutions, seeded, BatchNorm affine parameters
  and running statistics randomised so that eval mode is not the identity. ``ThinBottleneck`` is
  torchvision's ``Bottleneck`` with ``expansion = 1`` (stage outputs 64..512 channels instead of
  256..2048): with ``Bottleneck`` itself the file would be 12.6 MB, 2.9 M parameters, almost all
  in the 1x1 convolutions to 1024 and 2048 channels; this one is about 1 MB. The channel-changing
  stride-1 ``layer1.0.downsample`` that expansion 4 adds is covered by the key list below.
- ``resnet50_state_dict.json``: every key and shape of torchvision's ``resnet50()`` state_dict.
- ``tiny_resnet_reference.npz``: a fixed input (NCHW, odd and even sizes so that padding
  asymmetries would show) and torchvision's pool5 features and logits for it in eval mode and in
  train mode (batch statistics), plus running statistics after that train-mode forward.
- ``legacy_tensors.pth``: a few tensors in torch's legacy (non-zip) format, with float16,
  bfloat16, int64, a scalar, a transposed and an offset, strided view, and their values in the npz
  under ``legacy/<name>``.
"""

import collections
import json
import os

import numpy as np
import torch
import torchvision
from torchvision.models.resnet import Bottleneck, ResNet

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0
INPUT_SHAPE = (3, 3, 61, 70)  # batch, channels, height, width
BN_CHECKED = ("bn1", "layer2.0.bn2", "layer4.0.downsample.1")


class ThinBottleneck(Bottleneck):
    expansion = 1


def tiny_resnet():
    torch.manual_seed(SEED)
    model = ResNet(ThinBottleneck, [1, 1, 1, 1], width_per_group=8, num_classes=10)
    generator = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.num_batches_tracked.fill_(7)
    return model


def pool5(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


def main():
    model = tiny_resnet()
    state_dict = model.state_dict()
    torch.save(state_dict, os.path.join(HERE, "tiny_resnet.pth"))
    x = torch.randn(*INPUT_SHAPE, generator=torch.Generator().manual_seed(SEED + 2))
    out = {
        "input": x.numpy(),
        "torch_version": np.array(torch.__version__),
        "torchvision_version": np.array(torchvision.__version__),
    }
    model.eval()
    with torch.no_grad():
        out["pool5_eval"] = pool5(model, x).numpy()
        out["logits_eval"] = model(x).numpy()
    model.train()
    with torch.no_grad():
        out["pool5_train"] = pool5(model, x).numpy()  # one forward: running stats move once
    modules = dict(model.named_modules())
    for name in BN_CHECKED:
        out[f"{name}.running_mean_after"] = modules[name].running_mean.numpy().copy()
        out[f"{name}.running_var_after"] = modules[name].running_var.numpy().copy()

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    legacy = collections.OrderedDict(
        [
            ("conv1.weight", state_dict["conv1.weight"][:4].clone()),
            ("transposed", base.t()),
            ("view", base[1:, 1::2]),
            ("half", torch.linspace(-2, 2, 5).half()),
            ("bfloat16", torch.linspace(-3, 3, 7).bfloat16()),
            ("count", torch.tensor(7, dtype=torch.int64)),
        ]
    )
    torch.save(legacy, os.path.join(HERE, "legacy_tensors.pth"), _use_new_zipfile_serialization=False)
    for name, tensor in legacy.items():
        out[f"legacy/{name}"] = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
    shapes = {k: list(v.shape) for k, v in torchvision.models.resnet50().state_dict().items()}
    with open(os.path.join(HERE, "resnet50_state_dict.json"), "w") as f:
        f.write("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in shapes.items()) + "\n}\n")
    np.savez_compressed(os.path.join(HERE, "tiny_resnet_reference.npz"), **out)


if __name__ == "__main__":
    main()
