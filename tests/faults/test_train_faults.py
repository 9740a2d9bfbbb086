"""Faults of python -m tfmetric.train: each test creates its fault and checks that nothing else was lost."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.fixtures import REPO_ROOT, tiny_config
from tfmetric import config as config_lib
from tfmetric import train
from tfmetric.training import trainer
from tfmetric.training import workdir as workdir_lib

PREFIX = "python -m tfmetric.train: error: "


def main_error(capsys, *argv):
    """Runs the CLI in-process; its one stderr line (the exit status must be 2)."""
    with pytest.raises(SystemExit) as e:
        train.main(list(argv))
    assert e.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(PREFIX)]
    assert len(lines) == 1
    return lines[0][len(PREFIX) :]


def cli(*argv, preexec_fn=None, env=None, **popen):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "tfmetric.train", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=preexec_fn,
        **popen,
    )


def snapshot(directory):
    """{relative path: bytes} of every file under ``directory``."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = f.read()
    return out


def fake_run(workdir, config):
    """A workdir as a run leaves it: config.json and checkpoint files (contents irrelevant here)."""
    os.makedirs(os.path.join(workdir, "checkpoints"))
    trainer.write_json(os.path.join(workdir, "config.json"), config.to_dict())
    for name in ("checkpoint", "ckpt-1.index", "ckpt-1.data-00000-of-00001"):
        with open(os.path.join(workdir, "checkpoints", name), "w") as f:
            f.write(name)
    return snapshot(workdir)


# --- The bad ones -------------------------------------------------------------------------------


def test_overwrite_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "thesis.tex").write_text("\\chapter{Results}")
    (mine / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    before = snapshot(mine)
    message = main_error(capsys, "--dataset", "digits", "--workdir", str(mine), "--overwrite")
    assert message.startswith(f"Refusing to delete {mine}: it is not a tfmetric run (it has no config.json)")
    assert snapshot(mine) == before
    # A checkout-like folder with a config.json among foreign files is not a run either.
    (mine / "config.json").write_text(json.dumps(tiny_config("").to_dict()))
    message = main_error(capsys, "--dataset", "digits", "--workdir", str(mine), "--overwrite")
    assert "it holds photos, thesis.tex, which a run never writes" in message
    assert os.path.exists(mine / "thesis.tex")


def test_overwrite_deletes_a_recognisable_run(tmp_path):
    run = str(tmp_path / "run")
    fake_run(run, tiny_config(""))
    workdir_lib.remove_run(run)
    assert not os.path.exists(run)
    workdir_lib.remove_run(run)  # nothing there: nothing to do


def _run_state(config, workdir):
    import tensorflow as tf

    from tfmetric.training.run_state import RunState

    return RunState(config, 5, workdir, tf.distribute.get_strategy())


def test_damaged_checkpoint_index_resumes_from_the_newest_ckpt(tmp_path, capsys):
    config, workdir = tiny_config(""), str(tmp_path / "run")
    state = _run_state(config, workdir)
    state.save(1, 0)
    state.save(2, 3)
    ckpts = os.path.join(workdir, "checkpoints")
    with open(os.path.join(ckpts, "checkpoint"), "w") as f:
        f.write("model_checkpoint_path: {{{ garbage")
    files = {k: v for k, v in snapshot(ckpts).items() if k != "checkpoint"}

    resumed = _run_state(config, workdir)
    assert resumed.restore() == (2, 3)  # not (0, 0): never from scratch
    assert "Resuming from " + os.path.join(ckpts, "ckpt-2") in capsys.readouterr().out
    assert {k: v for k, v in snapshot(ckpts).items() if k != "checkpoint"} == files


def test_truncated_checkpoint_falls_back_to_the_older_intact_one(tmp_path, capsys):
    config, workdir = tiny_config(""), str(tmp_path / "run")
    state = _run_state(config, workdir)
    state.save(1, 0)
    expected = {v.path: v.numpy() for v in state.model.trainable_variables}
    state.save(2, 0)
    data = os.path.join(workdir, "checkpoints", "ckpt-2.data-00000-of-00001")
    with open(data, "rb") as f:
        content = f.read()
    with open(data, "wb") as f:
        f.write(content[: len(content) // 2])

    resumed = _run_state(config, workdir)
    assert resumed.restore() == (1, 0)
    out = capsys.readouterr().out
    assert f"Resuming from {os.path.join(workdir, 'checkpoints', 'ckpt-1')}: " in out and "ckpt-2 (" in out
    got = {v.path: v.numpy() for v in resumed.model.trainable_variables}
    assert all((got[k] == expected[k]).all() for k in expected)
    # Every checkpoint unreadable: an error naming them, never a silent start from scratch.
    with open(os.path.join(workdir, "checkpoints", "ckpt-1.data-00000-of-00001"), "wb") as f:
        f.write(b"")
    with pytest.raises(ValueError, match="No checkpoint in .* reads back: .*ckpt-2 .*ckpt-1"):
        _run_state(config, workdir).restore()


def test_resume_with_changed_config_is_refused_and_config_json_kept(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    before = fake_run(workdir, tiny_config("/data"))
    for change in ("model.embedding_dim=32", "train.lr=1e30"):
        changed = tiny_config("/data")
        changed = type(changed).from_dict(changed.to_dict())
        from tfmetric import config as config_lib

        config_lib.apply_overrides(changed, [change])
        with pytest.raises(ValueError, match=f"differs: {change.split('=')[0]} .* -> .*nothing was changed"):
            trainer.train_and_evaluate(changed, workdir, verbose=0)
        assert snapshot(workdir) == before
    # The same refusal from the CLI, before anything is touched.
    config_path = os.path.join(workdir, "config.json")
    message = main_error(capsys, "--config", config_path, "--workdir", workdir, "--set", "train.gamma=0.5")
    assert "train.gamma 0.1 -> 0.5" in message and f"--config {config_path}" in message
    assert snapshot(workdir) == before
    # Where the data lives may change; the change is reported and recorded.
    moved = tiny_config("/moved")
    assert workdir_lib.check_resume(workdir, moved) == {"data.data_dir": ("/data", "/moved")}


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("train.gamma", "-0.5", "train.gamma must be a finite number > 0. Received: train.gamma=-0.5"),
        ("train.gamma", "0", "train.gamma must be a finite number > 0. Received: train.gamma=0.0"),
        ("train.momentum", "1.5", "train.momentum must be in [0, 1). Received: train.momentum=1.5"),
        ("train.momentum", "-0.1", "train.momentum must be in [0, 1). Received: train.momentum=-0.1"),
        ("train.lr", "nan", "train.lr must be a finite number > 0. Received: train.lr=nan"),
        ("train.lr", "inf", "train.lr must be a finite number > 0. Received: train.lr=inf"),
        (
            "train.weight_decay",
            "-1",
            "train.weight_decay must be a finite number >= 0. Received: train.weight_decay=-1.0",
        ),
        ("data.eval_batch_size", "0", "data.eval_batch_size must be >= 1. Received: data.eval_batch_size=0"),
    ],
)
def test_bad_hyperparameters_are_refused_before_any_work(field, value, needle, tmp_path, capsys):
    workdir = tmp_path / "run"
    assert (
        main_error(capsys, "--dataset", "digits", "--workdir", str(workdir), "--set", f"{field}={value}")
        == f"--set {field}={value}: {needle}"
    )
    assert not workdir.exists()
    with pytest.raises(config_lib.ConfigError) as e:  # from Python: the config's words, no flags
        config_lib.validate(config_lib.apply_overrides(config_lib.preset("digits"), [f"{field}={value}"]))
    assert str(e.value) == needle


def test_dedicated_flag_contradicting_set_is_an_error(capsys):
    message = main_error(capsys, "--dataset", "digits", "--seed", "3", "--set", "train.seed=4", "--print-config")
    assert message == "--seed 3 contradicts --set train.seed=4; pass one of them."
    assert train.main(["--dataset", "digits", "--seed", "3", "--set", "train.seed=3", "--print-config"]) == 0


# --- OS errors ----------------------------------------------------------------------------------


def test_directory_as_config_is_one_line(tmp_path, capsys):
    message = main_error(capsys, "--config", str(tmp_path))
    assert message == f"{tmp_path}: Is a directory (pass a file, not a directory)"


def test_json_error_in_config_names_the_file(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text('{"train": {"lr": 0.1,}}')
    assert main_error(capsys, "--config", str(bad)).startswith(f"--config {bad} is not valid JSON (")


def test_truncated_json_files_are_named(tmp_path):
    from tfmetric.export import export_from_workdir
    from tfmetric.search.index import read_index_manifest

    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(tiny_config("").to_json())
    (workdir / "embedding_model.keras").write_bytes(b"")
    (workdir / "metrics.json").write_text('{"test": {"recall@1": 0.5')  # cut short
    with pytest.raises(ValueError, match=f"{workdir / 'metrics.json'} is not valid JSON .*may be truncated"):
        export_from_workdir(str(workdir), str(tmp_path / "saved_models"))
    (workdir / "config.json").write_text("")
    with pytest.raises(ValueError, match=f"{workdir / 'config.json'} is not valid JSON"):
        workdir_lib.check_resume(str(workdir), tiny_config(""))
    index = tmp_path / "index"
    index.mkdir()
    (index / "manifest.json").write_text('{"kind": "fl')
    with pytest.raises(ValueError, match=f"{index / 'manifest.json'} is not valid JSON"):
        read_index_manifest(str(index))


def test_file_as_workdir_is_one_line_and_the_file_is_kept(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    message = main_error(capsys, "--dataset", "digits", "--workdir", str(path))
    assert message == f"--workdir: workdir is a file, not a directory; choose another. Received: workdir={path}"
    assert path.read_text() == "keep me"


def _read_only_mount_works(directory):
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount --bind -o ro {directory} {directory}"], capture_output=True
    )
    return probe.returncode == 0


def test_read_only_file_system_is_one_line_naming_the_directory(digits_data_dir, tmp_path):
    readonly = tmp_path / "readonly"
    (readonly / "kept").mkdir(parents=True)
    if shutil.which("unshare") is None or not _read_only_mount_works(readonly):
        pytest.skip("needs unshare -rm (user and mount namespaces) for a read-only bind mount")
    workdir = readonly / "run"
    # A read-only bind mount of the directory, seen only by the command (a private mount namespace).
    command = (
        f"mount --bind -o ro {readonly} {readonly} && exec {sys.executable} -m tfmetric.train "
        f"--dataset digits --data-dir {digits_data_dir} --workdir {workdir}"
    )
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"{PREFIX}{workdir}: Read-only file system (the file system is read-only; write elsewhere)"
    )
    assert os.listdir(readonly) == ["kept"] and "Traceback" not in result.stderr


def _file_size_limit(limit):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return set_limit


def test_full_disk_is_one_line_naming_the_file_and_leaves_no_partial_file(digits_data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    # The converted data is read, not written: the first write is the workdir's config.json.
    proc = cli(
        "--dataset", "digits", "--data-dir", digits_data_dir, "--workdir", workdir, preexec_fn=_file_size_limit(256)
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert err.strip().splitlines()[-1] == (
        f"{PREFIX}{os.path.join(workdir, 'config.json')}: File too large (the file size limit was reached; "
        f"free some space, raise the limit or write elsewhere)"
    )
    assert os.listdir(workdir) == [] and "Traceback" not in err


# --- Interruptions ------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_says_where_the_checkpoint_is_and_how_to_resume(digits_data_dir, tmp_path):
    workdir = str(tmp_path / "run")
    proc = cli(
        "--dataset",
        "digits",
        "--data-dir",
        digits_data_dir,
        "--workdir",
        workdir,
        "--no-export",
        "--quiet",
        "--set",
        "train.steps_per_epoch=200",
        "--set",
        "model.embedding_dim=16",
        "--set",
        "data.batch_size=20",
        "--set",
        "data.images_per_class=4",
    )
    deadline = time.time() + 300
    while time.time() < deadline and not os.path.exists(os.path.join(workdir, "tensorboard")):
        time.sleep(0.2)
    time.sleep(3)  # inside the first epoch
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("python -m tfmetric.train: interrupted: Interrupted at epoch 1, step ")
    assert line.endswith("Rerun the same command to resume.")
    checkpoint = line.split("checkpoint ")[1].split(".")[0]
    assert os.path.exists(checkpoint + ".index")
    assert json.load(open(os.path.join(workdir, "config.json")))["data"]["dataset"] == "digits"


# --- Corrupt artifacts and late validation --------------------------------------------------------


def test_garbage_weights_file_names_the_file(tmp_path):
    from tfmetric.models.backbones import build_backbone

    garbage = tmp_path / "backbone.weights.h5"
    garbage.write_bytes(b"these are not weights" * 10)
    with pytest.raises(ValueError, match=f"weights file {garbage} cannot be read .*truncated or not a Keras"):
        build_backbone("inception_v1", (32, 32, 3), weights=str(garbage))
    assert garbage.read_bytes() == b"these are not weights" * 10


def test_corrupt_keras_model_is_not_reported_as_missing(tmp_path):
    from tfmetric.export import export_from_workdir

    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(tiny_config("").to_json())
    (workdir / "embedding_model.keras").write_bytes(b"PK\x03\x04" + b"\x00" * 40)  # a cut zip archive
    with pytest.raises(ValueError, match=r"embedding_model.keras exists but is not a readable .keras model"):
        export_from_workdir(str(workdir), str(tmp_path / "saved_models"))
    assert not (tmp_path / "saved_models").exists() or not os.listdir(tmp_path / "saved_models")


@pytest.mark.slow
def test_test_split_too_small_for_the_largest_k_is_refused_before_training(digits_data_dir, tmp_path):
    config = tiny_config(digits_data_dir)
    config.eval.recall_ks = (1, 2000)
    workdir = tmp_path / "run"
    with pytest.raises(
        ValueError,
        match=r"eval.recall_ks asks for 2000 neighbours but the test split minus the "
        r"query holds only 895 images",
    ):
        trainer.train_and_evaluate(config, str(workdir), verbose=0)
    assert not (workdir / "checkpoints").exists()
