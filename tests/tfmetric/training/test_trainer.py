"""train_and_evaluate end to end on digits TFRecords: outputs, resume after SIGKILL, NaN stop."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import tfmetric.layers  # noqa: F401  (registers CosineProxy for load_model)
from tests.fixtures import tiny_config
from tfmetric.training import trainer

pytestmark = pytest.mark.slow


def test_writes_config_checkpoints_metrics_models_and_tensorboard(digits_data_dir, tmp_path):
    config = tiny_config(digits_data_dir)
    workdir = str(tmp_path / "run")
    exported = []

    def export(run_dir):  # called once the models are saved, before metrics.json marks the run finished
        exported.append((run_dir, sorted(os.listdir(run_dir))))
        return "saved_models/digits/7"

    result = trainer.train_and_evaluate(config, workdir, verbose=0, export=export)
    [(run_dir, files)] = exported
    assert run_dir == workdir and "embedding_model.keras" in files and "metrics.json" not in files
    assert result["saved_model"] == "saved_models/digits/7"

    saved = json.load(open(os.path.join(workdir, "config.json")))
    assert saved == json.loads(config.to_json())
    metrics = json.load(open(os.path.join(workdir, "metrics.json")))
    assert metrics == json.loads(json.dumps(result))
    test = metrics["test"]
    for key in (
        "recall@1",
        "recall@2",
        "recall@4",
        "recall@8",
        "map@r",
        "r_precision",
        "binary/recall@1",
        "binary/map@r",
    ):
        assert 0.0 <= test[key] <= 1.0
    assert metrics["raw_pixels"]["recall@1"] > 0.9  # digits: raw pixels are already good
    history = metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert [h["phase"] for h in history] == ["warmup", "main", "main"]
    assert [h["lr"] for h in history] == pytest.approx(
        [config.train.lr * config.train.lr_mult, config.train.lr, config.train.lr * 0.1]
    )
    assert "test" in history[1] and "test" in history[2] and "test" not in history[0]

    assert os.path.exists(os.path.join(workdir, "checkpoints", "checkpoint"))
    events = os.listdir(os.path.join(workdir, "tensorboard"))
    assert any(name.startswith("events.out.tfevents") for name in events)
    projector = os.path.join(workdir, "tensorboard")  # the logdir itself, beside the event file
    metadata = open(os.path.join(projector, "metadata.tsv")).read().splitlines()
    assert metadata[0] == "label\tclass" and len(metadata) == 1 + 64
    assert {row.split("\t")[1] for row in metadata[1:]} == {"5", "6", "7", "8", "9"}  # digit names
    assert os.path.exists(os.path.join(projector, "sprite.png"))
    assert "sprite" in open(os.path.join(projector, "projector_config.pbtxt")).read()
    assert metrics["retrieval_grid"] == os.path.join(workdir, "retrieval.png")
    assert open(metrics["retrieval_grid"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    # The saved embedding model reloads and reproduces the reported test metrics.
    model = keras.models.load_model(os.path.join(workdir, "embedding_model.keras"))
    from tfmetric.data.sources import open_source
    from tfmetric.metrics import evaluation

    source, module = open_source(config.data)
    data = source.eval_dataset(module.QUERY_SPLIT, config.data, "imagenet_mean_std")
    emb, labels = evaluation.embed(evaluation.compiled_embedder(model), data)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    again = evaluation.score(emb, labels, eval_config=config.eval)
    assert again["recall@1"] == pytest.approx(test["recall@1"], abs=1e-6)

    # A rerun of the finished run trains nothing and exports nothing; it returns the result.
    before = {name: os.path.getmtime(os.path.join(workdir, name)) for name in os.listdir(workdir)}
    rerun = trainer.train_and_evaluate(config, workdir, verbose=0, export=lambda w: pytest.fail("exported"))
    assert rerun.pop("already_finished") is True and rerun == metrics
    assert {name: os.path.getmtime(os.path.join(workdir, name)) for name in os.listdir(workdir)} == before


def test_warmup_trains_only_the_new_parameters(digits_data_dir, tmp_path):
    config = tiny_config(digits_data_dir, num_steps=1)
    config.train.epochs_per_step = 1
    workdir = str(tmp_path / "run")
    import tensorflow as tf

    from tfmetric.training.run_state import RunState

    keras.utils.set_random_seed(0)
    initial = RunState(config, 5, str(tmp_path / "init"), tf.distribute.get_strategy())
    before = {v.path: v.numpy() for v in initial.model.trainable_variables}
    config.train.num_steps = 1
    config.train.epochs_per_step = 1
    # Only the warm-up epoch: stop after it by running with zero main epochs is not allowed,
    # so compare the checkpoint written after epoch 1.
    trainer.train_and_evaluate(config, workdir, verbose=0)
    state = RunState(config, 5, str(tmp_path / "load"), tf.distribute.get_strategy())
    ckpt = tf.train.Checkpoint(model=state.model)
    ckpt.restore(os.path.join(workdir, "checkpoints", "ckpt-1")).expect_partial()
    head = {v.path for v in state.head_vars}
    changed = {v.path for v in state.model.trainable_variables if not np.array_equal(v.numpy(), before[v.path])}
    assert changed == head


def _run_cli(workdir, data_dir, extra=()):
    args = [
        sys.executable,
        "-m",
        "tfmetric.train",
        "--dataset",
        "digits",
        "--workdir",
        workdir,
        "--quiet",
        "--data-dir",
        data_dir,
        "--set",
        "data.batch_size=20",
        "--set",
        "data.images_per_class=4",
        "--set",
        "model.embedding_dim=16",
        "--set",
        "train.steps_per_epoch=6",
        "--set",
        "train.epochs_per_step=1",
        "--set",
        "train.num_steps=2",
        "--set",
        "train.warmup_epochs=1",
        "--set",
        "eval.nmi=false",
        "--set",
        "train.checkpoint_every_n_steps=1",
        "--set",
        "eval.projector=false",
        "--no-export",
        *extra,
    ]
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(digits_data_dir, tmp_path):
    reference = _run_cli(str(tmp_path / "ref"), digits_data_dir)
    reference.communicate(timeout=600)
    assert reference.returncode == 0

    workdir = str(tmp_path / "killed")
    proc = _run_cli(workdir, digits_data_dir)
    ckpt_file = os.path.join(workdir, "checkpoints", "checkpoint")
    deadline = time.time() + 300
    # Kill once a checkpoint inside the second epoch exists: epoch 1 (warm-up) is done.
    while time.time() < deadline:
        history = os.path.join(workdir, "history.json")
        if (
            os.path.exists(history)
            and os.path.exists(ckpt_file)
            and len(json.load(open(history))) == 1
            and "ckpt-9" in open(ckpt_file).read()
        ):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not os.path.exists(os.path.join(workdir, "metrics.json"))

    resumed = _run_cli(workdir, digits_data_dir)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    ref = json.load(open(os.path.join(tmp_path, "ref", "metrics.json")))
    got = json.load(open(os.path.join(workdir, "metrics.json")))
    assert got["epochs"] == ref["epochs"] == 3
    assert [h["epoch"] for h in got["history"]] == [1, 2, 3]
    assert any(h["resumed_at_step"] > 0 for h in got["history"])
    # Same seed, same batches, same augmentation: equal up to CPU floating-point reordering.
    for key in ("recall@1", "recall@2", "map@r", "binary/recall@1"):
        assert got["test"][key] == pytest.approx(ref["test"][key], abs=0.02), key
    assert got["history"][-1]["loss"] == pytest.approx(ref["history"][-1]["loss"], rel=0.05)


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(digits_data_dir, tmp_path, monkeypatch):
    import tensorflow as tf

    real = trainer.make_train_step

    def poisoned(strategy, model, optimizer, variables, batch, jit=False):
        step = real(strategy, model, optimizer, variables, batch, jit)
        if optimizer.name == "optimizer":  # the main phase: NaN after the warm-up checkpoint
            return lambda images, labels: step(images, labels) * tf.constant(float("nan"))
        return step

    monkeypatch.setattr(trainer, "make_train_step", poisoned)
    workdir = str(tmp_path / "run")
    with pytest.raises(FloatingPointError, match="Loss became nan at epoch 2, step 1"):
        trainer.train_and_evaluate(tiny_config(digits_data_dir), workdir, verbose=0)
    ckpt = open(os.path.join(workdir, "checkpoints", "checkpoint")).read()
    assert "ckpt-1" in ckpt and not os.path.exists(os.path.join(workdir, "metrics.json"))


def test_mixed_float16_run_checkpoints_resumes_and_saves_a_float32_embedding(digits_data_dir, tmp_path):
    config = tiny_config(digits_data_dir, precision="mixed_float16")
    config.eval.projector = False
    workdir = str(tmp_path / "run")
    result = trainer.train_and_evaluate(config, workdir, verbose=0)
    assert all(np.isfinite(h["loss"]) for h in result["history"])
    model = keras.models.load_model(os.path.join(workdir, "embedding_model.keras"))
    assert model.get_layer("embedding").compute_dtype == "float32"
    assert any(layer.compute_dtype == "float16" for layer in model.layers[1].layers)
    out = model(np.zeros((2, 32, 32, 3), np.float32))
    assert out.dtype == "float32" and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)
    # Rerunning restores the LossScaleOptimizer's state from the checkpoint and scores the same
    # (without metrics.json the finished run is evaluated once more).
    os.remove(os.path.join(workdir, "metrics.json"))
    again = trainer.train_and_evaluate(config, workdir, verbose=0)
    assert again["test"]["recall@1"] == pytest.approx(result["test"]["recall@1"], abs=1e-6)


def test_the_run_iterator_yields_each_epochs_batches_resumed_mid_epoch(digits_data_dir):
    """One device trains from one dataset over every epoch (``_Data.batches``): the batches of
    building each epoch on its own, the first epoch after its skipped steps."""
    from tfmetric.training.precision import make_strategy

    data = trainer._Data(tiny_config(digits_data_dir), make_strategy("none"))
    together = list(data.batches(1, 2, 3))
    one_by_one = list(data.epoch(1, 2)) + list(data.epoch(2, 0))
    assert len(together) == len(one_by_one) == (data.steps - 2) + data.steps
    for (xa, ya), (xb, yb) in zip(one_by_one, together):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
