"""python -m tfmetric.weights convert: writes the file `--weights imagenet` loads; one-line errors."""

import os
import subprocess
import sys

import pytest

from tests.tfmetric.models import torch_files
from tests.tfmetric.models.test_torchvision_weights import resnet50_tensors
from tests.tfmetric.models.test_weights import slim_imagenet_tensors, write_slim_checkpoint
from tfmetric import weights as cli

PROG = "python -m tfmetric.weights"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_slim_checkpoint(tmp_path_factory.mktemp("slim") / "inception_v1.ckpt", slim_imagenet_tensors(seed=3))


def test_convert_to_the_default_imagenet_path(checkpoint, tmp_path, capsys):
    assert cli.main(["convert", "--from", "slim-checkpoint", checkpoint, "--data-dir", str(tmp_path)]) == 0
    expected = tmp_path / "weights" / "inception_v1_imagenet.weights.h5"
    assert expected.is_file()
    out = capsys.readouterr().out
    assert f"Wrote 228 variables from {checkpoint} to {expected}" in out and "global_step" in out


def test_convert_to_an_explicit_file(checkpoint, tmp_path):
    output = tmp_path / "sub" / "v1.weights.h5"
    assert cli.main(["convert", "--from", "slim-checkpoint", checkpoint, "--to", str(output)]) == 0
    assert os.listdir(output.parent) == ["v1.weights.h5"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (
            ["--from", "slim-checkpoint", "{tmp}/missing.ckpt", "--to", "{tmp}/x.weights.h5"],
            "missing.ckpt is neither a TF-Slim checkpoint",
        ),
        (["--from", "slim-checkpoint", "{ckpt}", "--to", "{tmp}/x.h5"], "ending in '.weights.h5'"),
    ],
)
def test_user_errors_are_one_line_exit_2(checkpoint, tmp_path, capsys, args, needle):
    args = [a.format(tmp=tmp_path, ckpt=checkpoint) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["convert", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{PROG}: error: ") and needle in err and len(err.splitlines()) == 1


def test_torchvision_to_the_default_imagenet_path(tmp_path, capsys):
    pth = torch_files.write_torch_zip(tmp_path / "resnet50-0676ba61.pth", resnet50_tensors())
    assert cli.main(["convert", "--from", "torchvision", pth, "--data-dir", str(tmp_path)]) == 0
    expected = tmp_path / "weights" / "resnet50_torchvision_imagenet.weights.h5"
    assert expected.is_file()
    out = capsys.readouterr().out
    assert f"Wrote 265 variables from {pth} to {expected}" in out and "(55 in all)" in out


def test_torchvision_unsafe_file_is_a_one_line_error(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = torch_files.write_torch_zip(
        tmp_path / "evil.pth", {}, data_pkl=torch_files.malicious_pickle(os.system, f"touch {marker}")
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["convert", "--from", "torchvision", evil, "--to", str(tmp_path / "x.weights.h5")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{PROG}: error: {evil}: refusing to load the pickled global")
    assert len(err.splitlines()) == 1 and not marker.exists()
    assert sorted(os.listdir(tmp_path)) == ["evil.pth"]


def test_unknown_format_lists_allowed_values(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["convert", "--from", "keras", "x", "--to", "y.weights.h5"])
    assert exit_info.value.code == 2
    assert "unknown format 'keras'. Allowed values: torchvision, slim-checkpoint" in capsys.readouterr().err


def test_module_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-m", "tfmetric.weights", "convert", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--from FORMAT PATH" in result.stdout and "--to FILE" in result.stdout


def test_help_names_every_converter():
    from tfmetric.models.weights import CONVERTERS

    assert all(name in cli.FORMATS_HELP for name in CONVERTERS)
