"""python -m tfmetric.weights convert: writes the file `--weights imagenet` loads; one-line errors."""
import os
import subprocess
import sys

import pytest

from tests.tfmetric.models.test_weights import slim_imagenet_tensors, write_slim_checkpoint
from tfmetric import weights as cli

PROG = "python -m tfmetric.weights"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_slim_checkpoint(tmp_path_factory.mktemp("slim") / "inception_v1.ckpt",
                                 slim_imagenet_tensors(seed=3))


def test_convert_to_the_default_imagenet_path(checkpoint, tmp_path, capsys):
    assert cli.main(["convert", "--from", "slim-checkpoint", checkpoint,
                     "--data-dir", str(tmp_path)]) == 0
    expected = tmp_path / "weights" / "inception_v1_imagenet.weights.h5"
    assert expected.is_file()
    out = capsys.readouterr().out
    assert f"Wrote 228 InceptionV1 variables to {expected}" in out and "global_step" in out


def test_convert_to_an_explicit_file(checkpoint, tmp_path):
    output = tmp_path / "sub" / "v1.weights.h5"
    assert cli.main(["convert", "--from", "slim-checkpoint", checkpoint, "--to", str(output)]) == 0
    assert os.listdir(output.parent) == ["v1.weights.h5"]


@pytest.mark.parametrize("args, needle", [
    (["--from", "slim-checkpoint", "{tmp}/missing.ckpt", "--to", "{tmp}/x.weights.h5"],
     "missing.ckpt is neither a TF-Slim checkpoint"),
    (["--from", "slim-checkpoint", "{ckpt}", "--to", "{tmp}/x.h5"], "ending in '.weights.h5'"),
])
def test_user_errors_are_one_line_exit_2(checkpoint, tmp_path, capsys, args, needle):
    args = [a.format(tmp=tmp_path, ckpt=checkpoint) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["convert", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{PROG}: error: ") and needle in err and len(err.splitlines()) == 1


def test_unknown_format_lists_allowed_values(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["convert", "--from", "keras", "x", "--to", "y.weights.h5"])
    assert exit_info.value.code == 2
    assert "unknown format 'keras'. Allowed values: slim-checkpoint" in capsys.readouterr().err


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "tfmetric.weights", "convert", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--from FORMAT PATH" in result.stdout and "--to FILE" in result.stdout
