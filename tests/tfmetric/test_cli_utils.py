"""cli_utils: a library error led by the flag of the argument it names; --set errors led by the value."""

import pytest

from tfmetric import config as config_lib
from tfmetric.cli_utils import apply_set_flags, name_flags, run_main

FLAGS = {"index_dir": "--index", "model_dir": "--model", "k": "--k", "train.lr": "--lr"}


@pytest.mark.parametrize(
    "message, expected",
    [
        ("k must be a positive integer. Received: k=0", "--k: k must be a positive integer. Received: k=0"),
        (
            "Other models. Received: model_dir=/m/1, index_dir=/i",
            "--model, --index: Other models. Received: model_dir=/m/1, index_dir=/i",
        ),
        ("x. Received: train.lr=nan", "--lr: x. Received: train.lr=nan"),
        ("x. Received: seed=3", "x. Received: seed=3"),  # an argument the CLI has no flag for
        ("k=0 is mentioned, nothing received", "k=0 is mentioned, nothing received"),
    ],
)
def test_name_flags(message, expected):
    assert name_flags(message, FLAGS) == expected


def test_run_main_prints_the_flag_and_exits_2(capsys):
    def fail():
        raise ValueError("k must be a positive integer. Received: k=0")

    with pytest.raises(SystemExit) as e:
        run_main("prog", fail, FLAGS)
    assert e.value.code == 2
    assert capsys.readouterr().err == "prog: error: --k: k must be a positive integer. Received: k=0\n"


def test_apply_set_flags_names_the_bad_value():
    config = config_lib.preset("digits")
    assert apply_set_flags(config, ["train.lr=0.5"]).train.lr == 0.5
    with pytest.raises(config_lib.ConfigError) as e:
        apply_set_flags(config, ["train.lr=0.1", "train.nope=1"])
    assert str(e.value).startswith("--set train.nope=1: Unknown config field 'train.nope'. Fields of train: ")
    assert str(e.value).endswith("Received: train.nope='1'")
