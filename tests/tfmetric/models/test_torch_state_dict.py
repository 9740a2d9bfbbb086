"""Reading torch.save files without torch (tfmetric.models.torch_state_dict).

The real files in data/ were written by torch 2.14.1 (data/make_torchvision_reference.py): the
zip format (tiny_resnet.pth) and the legacy format (legacy_tensors.pth). Nothing from a pickle may
run: a global other than tensor data is refused before it is called.
"""

import os
import pickle
import zipfile

import numpy as np
import pytest

from tests.tfmetric.models import torch_files
from tfmetric.models import torch_state_dict

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(scope="module")
def reference():
    return np.load(os.path.join(DATA, "tiny_resnet_reference.npz"))


def test_legacy_format_file_from_torch(reference):
    state = torch_state_dict.read_state_dict(os.path.join(DATA, "legacy_tensors.pth"))
    assert list(state) == ["conv1.weight", "transposed", "view", "half", "bfloat16", "count"]
    for name, value in state.items():
        expected = reference[f"legacy/{name}"]
        assert value.dtype == expected.dtype and value.shape == expected.shape, name
        np.testing.assert_array_equal(value, expected, err_msg=name)
    # A transposed tensor and an offset, strided view of one storage came back as views do.
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.testing.assert_array_equal(state["transposed"], base.T)
    np.testing.assert_array_equal(state["view"], base[1:, 1::2])
    assert state["count"].shape == () and state["count"] == 7


def test_zip_format_file_from_torch():
    state = torch_state_dict.read_state_dict(os.path.join(DATA, "tiny_resnet.pth"))
    assert list(state)[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert state["conv1.weight"].shape == (64, 3, 7, 7) and state["conv1.weight"].dtype == np.float32
    assert state["bn1.num_batches_tracked"] == 7 and state["fc.weight"].shape == (10, 512)


def test_the_test_writer_matches_torch(tmp_path):
    """torch_files writes what torch writes: reading both gives the same arrays."""
    real = torch_state_dict.read_state_dict(os.path.join(DATA, "tiny_resnet.pth"))
    subset = {k: real[k] for k in ("conv1.weight", "bn1.running_var", "bn1.num_batches_tracked")}
    again = torch_state_dict.read_state_dict(torch_files.write_torch_zip(tmp_path / "w.pth", subset))
    assert list(again) == list(subset)
    for name in subset:
        np.testing.assert_array_equal(again[name], subset[name])


@pytest.mark.parametrize("container", ["zip", "raw"])
def test_malicious_global_is_refused_and_not_executed(tmp_path, container):
    marker = tmp_path / "pwned"
    payload = torch_files.malicious_pickle(os.system, f"touch {marker}")
    path = tmp_path / "evil.pth"
    if container == "zip":
        torch_files.write_torch_zip(path, {}, data_pkl=payload)
    else:
        path.write_bytes(payload)
    with pytest.raises(torch_state_dict.UnsafePickleError) as info:
        torch_state_dict.read_state_dict(path)
    message = str(info.value)
    assert str(path) in message and f"{os.system.__module__}.system" in message
    assert "nothing was executed" in message
    assert not marker.exists()
    # The standard library really would have run it: the test payload is live.
    pickle.loads(payload)
    assert marker.exists()


def test_a_pickled_model_class_is_refused(tmp_path):
    payload = b"\x80\x02ctorchvision.models.resnet\nResNet\n)\x81."  # NEWOBJ of a model class
    path = torch_files.write_torch_zip(tmp_path / "model.pth", {}, data_pkl=payload)
    with pytest.raises(ValueError, match=r"torchvision\.models\.resnet\.ResNet.*state_dict"):
        torch_state_dict.read_state_dict(path)


def test_not_a_torch_file_truncated_and_missing(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="garbage.pth is not a torch.save file"):
        torch_state_dict.read_state_dict(garbage)
    with open(os.path.join(DATA, "legacy_tensors.pth"), "rb") as f:
        data = f.read()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[:-40])
    with pytest.raises(ValueError, match="cut.pth.*truncated"):
        torch_state_dict.read_state_dict(cut)
    broken = tmp_path / "broken.pth"
    with zipfile.ZipFile(broken, "w") as archive:  # a storage shorter than its tensor
        archive.writestr("archive/data.pkl", torch_files.state_dict_pickle({"w": np.ones((4, 4), np.float32)}))
        archive.writestr("archive/data/0", b"\0" * 8)
    with pytest.raises(ValueError, match="broken.pth: a storage of 16 elements holds only 8 bytes"):
        torch_state_dict.read_state_dict(broken)
    with pytest.raises(FileNotFoundError):
        torch_state_dict.read_state_dict(tmp_path / "missing.pth")


def test_old_tar_format_says_how_to_resave(tmp_path):
    import tarfile

    path = tmp_path / "old.pth"
    with tarfile.open(path, "w") as archive:
        archive.add(os.path.join(DATA, "legacy_tensors.pth"), arcname="storages")
    with pytest.raises(ValueError, match=r"pre-2017 tar serialization.*torch\.save\(torch\.load"):
        torch_state_dict.read_state_dict(path)


def test_something_other_than_tensors(tmp_path):
    path = tmp_path / "list.pth"
    path.write_bytes(b"")
    torch_files.write_torch_zip(path, {}, data_pkl=pickle.dumps([1, 2], protocol=2))
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        torch_state_dict.read_state_dict(path)
