"""The train CLI: flags -> config, one-line errors with exit code 2, and a tiny end-to-end run."""

import json
import os
import subprocess
import sys

import pytest

from tfmetric import config as config_lib
from tfmetric import train

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "tfmetric.train", *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600
    )


def test_print_config_resolves_preset_and_overrides(capsys):
    assert train.main(["--dataset", "cub200", "--set", "train.seed=3", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["train"]["lr"] == 0.001 and config["train"]["seed"] == 3
    assert config["data"]["images_per_class"] == 25 and config["model"]["backbone"] == "resnet50"


def test_speed_flags_set_the_train_fields(capsys):
    train.main(["--dataset", "cars196", "--mixed-precision", "mixed_bfloat16", "--jit-compile", "--print-config"])
    config = json.loads(capsys.readouterr().out)["train"]
    assert config["precision"] == "mixed_bfloat16" and config["jit_compile"] is True
    train.main(["--dataset", "cars196", "--print-config"])
    config = json.loads(capsys.readouterr().out)["train"]
    assert config["precision"] == "float32" and config["jit_compile"] is False


def test_default_dataset_is_synthetic(capsys):
    train.main(["--print-config"])
    assert json.loads(capsys.readouterr().out)["data"]["dataset"] == "synthetic"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--dataset", "mnist"], "error: --dataset: Unknown dataset 'mnist'. Allowed values: cars196"),
        (["--set", "data.batch_size=61"], "must be a positive multiple of data.images_per_class"),
        (
            ["--set", "model.temperature=0"],
            "error: --set model.temperature=0: model.temperature must be > 0. Received: model.temperature=0.0",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle, tmp_path):
    result = run_cli(*args, "--workdir", str(tmp_path / "w"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("python -m tfmetric.train: error: ")
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--set", "train.epochs=5"], "--set train.epochs=5: Unknown config field 'train.epochs'. Fields of train: "),
        (["--set", "train.lr=fast"], "--set train.lr=fast: train.lr must be of type float. Received: train.lr='fast'"),
        (["--set", "train.lr"], "--set train.lr: An override must be section.field=value"),
    ],
)
def test_library_errors_are_led_by_the_flag(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        train.main([*args, "--print-config"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"python -m tfmetric.train: error: {message}"), err


def test_config_file_errors_name_the_file_not_set(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"train": {"epochs": 5}}))
    with pytest.raises(config_lib.ConfigError) as e:  # from Python: the config's own words
        config_lib.ExperimentConfig.from_dict(json.loads(path.read_text()))
    assert str(e.value).startswith("Unknown config field 'train.epochs'") and "--" not in str(e.value)
    assert str(e.value).endswith("Received: train.epochs=5")
    with pytest.raises(SystemExit):
        train.main(["--config", str(path), "--print-config"])
    assert capsys.readouterr().err.startswith(
        f"python -m tfmetric.train: error: --config {path}: Unknown config field 'train.epochs'"
    )


def test_more_classes_per_batch_than_the_split_has(digits_data_dir, tmp_path):
    result = run_cli(
        "--dataset",
        "digits",
        "--data-dir",
        digits_data_dir,
        "--workdir",
        str(tmp_path / "w"),
        "--set",
        "data.batch_size=60",
        "--set",
        "data.images_per_class=10",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "python -m tfmetric.train: error: A batch needs 6 distinct classes (batch_size=60 // "
        "images_per_class=10) but the split has only 5."
    ]


def test_missing_dataset_explains_what_to_get_where(tmp_path):
    result = run_cli("--dataset", "cars196", "--data-dir", str(tmp_path / "data"), "--workdir", str(tmp_path / "w"))
    assert result.returncode == 2
    first, *instructions = result.stderr.strip().splitlines()
    assert first.startswith("python -m tfmetric.train: error: ") and "cars_annos.mat" in first
    assert "car_ims" in "\n".join(instructions) and "Traceback" not in result.stderr
    assert not (tmp_path / "w").exists()  # a run that fails before training leaves no workdir


def test_config_file_reruns_exactly(tmp_path, capsys):
    path = tmp_path / "config.json"
    train.main(["--dataset", "digits", "--set", "train.lr=0.123", "--print-config"])
    path.write_text(capsys.readouterr().out)
    train.main(["--config", str(path), "--print-config"])
    assert json.loads(capsys.readouterr().out) == json.loads(path.read_text())


def test_summary_of_the_chief_and_of_another_worker():
    test = {
        "recall@1": 0.5,
        "recall@2": 0.75,
        "map@r": 0.25,
        "binary/recall@1": 0.4,
        "binary/recall@2": 0.6,
        "binary/map@r": 0.2,
    }
    text = train.summary({"dataset": "digits", "test": test}, (1, 2), "runs/x")
    assert "float : R@1 0.5000  R@2 0.7500  MAP@R 0.2500" in text
    assert "binary: R@1 0.4000  R@2 0.6000  MAP@R 0.2000" in text
    worker = train.summary({"worker": True, "epochs": 3, "test": None}, (1, 2), "runs/x")
    assert worker == "Worker done: 3 epochs trained; the chief writes the results to runs/x"


def test_imagefolder_small_preset_is_the_small_recipe(capsys):
    assert train.main(["--dataset", "imagefolder_small", "--print-config"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["data"]["dataset"] == "imagefolder" and (c["data"]["image_size"], c["data"]["resize_size"]) == (64, 72)
    assert (c["model"]["backbone"], c["model"]["weights"], c["model"]["layer_norm"]) == ("inception_v1", None, True)
    assert (c["train"]["optimizer"], c["data"]["batch_size"] // c["data"]["images_per_class"]) == ("adamw", 4)
    assert train.main(["--dataset", "imagefolder", "--print-config"]) == 0
    paper = json.loads(capsys.readouterr().out)
    assert (paper["model"]["backbone"], paper["model"]["weights"], paper["data"]["image_size"]) == (
        "resnet50",
        "imagenet",
        224,
    )


@pytest.mark.slow
def test_imagefolder_small_trains_on_a_folder_offline(tmp_path):
    """One's own folder, one flag: 8 classes x 5 images -> TFRecords -> 1 epoch -> metrics."""
    from tests import fixtures as fx

    root = tmp_path / "photos"
    for c in range(8):
        for i in range(5):
            fx.write_bytes(str(root / f"class_{c}" / f"{i}.jpg"), fx.noise_jpeg_bytes((48, 40), seed=10 * c + i))
    workdir = tmp_path / "run"
    env = dict(ENV, KERAS_HOME=str(tmp_path / "empty_keras_home"))  # no cached weights to lean on
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfmetric.train",
            "--dataset",
            "imagefolder_small",
            "--raw-dir",
            str(root),
            "--data-dir",
            str(tmp_path / "data"),
            "--workdir",
            str(workdir),
            "--set",
            "train.epochs_per_step=1",
            "--no-export",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["recall@1"] <= 1.0 and "binary/recall@1" in metrics["test"]
    history = json.loads((workdir / "history.json").read_text())
    assert [h["phase"] for h in history] == ["main"]  # small presets train from scratch: no warm-up
    manifest = json.loads((tmp_path / "data" / "tfrecords" / "imagefolder" / "manifest.json").read_text())
    assert {s: manifest["splits"][s]["num_classes"] for s in ("train", "test")} == {"train": 4, "test": 4}
    assert "Test (imagefolder, held-out classes):" in result.stdout


def test_train_then_export_is_composed_here(tmp_path, monkeypatch, capsys):
    """The CLI hands the trainer its export (the trainer does not import tfmetric.export)."""
    import functools

    import tfmetric.training
    from tfmetric.export import export_from_workdir

    calls = []

    def fake_train_and_evaluate(config, workdir, verbose, export):
        calls.append(export)
        test = {"recall@1": 0.5, "recall@2": 0.75, "recall@4": 1.0, "recall@8": 1.0, "map@r": 0.25}
        return {"dataset": "digits", "test": test, "saved_model": export and export.keywords["output_dir"]}

    monkeypatch.setattr(tfmetric.training, "train_and_evaluate", fake_train_and_evaluate)
    workdir = str(tmp_path / "run")
    assert train.main(["--dataset", "digits", "--workdir", workdir, "--export-dir", "out", "--export-name", "m"]) == 0
    assert train.main(["--dataset", "digits", "--workdir", workdir, "--no-export"]) == 0
    export, no_export = calls
    assert isinstance(export, functools.partial) and export.func is export_from_workdir
    assert export.keywords == {"output_dir": "out", "name": "m"} and no_export is None
    assert "Exported SavedModel for TF Serving: out" in capsys.readouterr().out
