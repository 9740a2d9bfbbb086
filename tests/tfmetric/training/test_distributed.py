"""Training under MirroredStrategy over two logical CPU devices, in a fresh interpreter.

Logical devices must be configured before TensorFlow initialises, hence the subprocess. The step
tests check the data-parallel arithmetic (loss divided by the *global* batch, gradients summed
across replicas, one optimizer update, BatchNorm statistics over the global batch with
synchronized BatchNorm) against the same model trained on one device; the end-to-end tests run the
trainer with ``train.distribute=mirrored`` (the global batch split across replicas, or with
``train.per_replica_batch`` one batch per replica) and resume it.
"""

import json
import os

import numpy as np
import pytest

from tests import fixtures
from tests.fixtures import tiny_config
from tfmetric import config as config_lib

pytestmark = pytest.mark.slow

# Shared by the step scripts: train steps over global batches, through one device or split across
# a strategy's replicas.
TRAIN_STEPS = (
    fixtures.TWO_LOGICAL_CPUS
    + r"""
from tfmetric.training.steps import make_train_step

def train_steps(strategy, model, optimizer, batches):
    # The loss of one train step per (images, labels) global batch; with several replicas,
    # replica r gets examples r*s..r*s+s-1 of the global batch (s = its size / replicas).
    size = len(batches[0][1])
    step = make_train_step(strategy, model, optimizer, model.trainable_variables, size)
    share = size // strategy.num_replicas_in_sync
    losses = []
    for x, y in batches:
        if share == size:
            losses.append(float(step(x, y)))
            continue
        values = strategy.experimental_distribute_values_from_function(
            lambda ctx: (x[share * ctx.replica_id_in_sync_group:][:share],
                         y[share * ctx.replica_id_in_sync_group:][:share]))
        losses.append(float(step(*values)))
    return losses
"""
)

STEPS = (
    TRAIN_STEPS
    + r"""
import keras
from tfmetric.models.embedding import build_training_model
from tfmetric.optimizers import TorchSGD
from tfmetric.training.precision import make_strategy

def build():
    # No BatchNorm: its per-replica batch statistics would legitimately differ from one device's.
    embedding = keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(6, 3), keras.layers.GlobalAveragePooling2D(),
        keras.layers.LayerNormalization(center=False, scale=False),
        keras.layers.Dense(5, use_bias=False), keras.layers.UnitNormalization()])
    model = build_training_model(embedding, num_classes=4, temperature=0.05)
    optimizer = TorchSGD(0.05, momentum=0.9, l2_decay=1e-3)
    optimizer.build(model.trainable_variables)
    return model, optimizer

rng = np.random.default_rng(0)
batches = [(rng.normal(size=(8, 8, 8, 3)).astype("float32"), rng.integers(0, 4, 8).astype("int64"))
           for _ in range(3)]
keras.utils.set_random_seed(0)
single_model, single_opt = build()
initial = single_model.get_weights()
single_losses = train_steps(tf.distribute.get_strategy(), single_model, single_opt, batches)

strategy = make_strategy("mirrored")
with strategy.scope():
    model, opt = build()
model.set_weights(initial)
losses = train_steps(strategy, model, opt, batches)  # replica r gets examples 4r..4r+3
print("RESULT " + json.dumps({
    "replicas": strategy.num_replicas_in_sync, "single_losses": single_losses, "losses": losses,
    "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(single_model.get_weights(),
                                                                      model.get_weights())),
    "moved": max(float(np.abs(a - b).max()) for a, b in zip(initial, model.get_weights()))}))
"""
)

SYNC_BN = (
    TRAIN_STEPS
    + r"""
import keras
from tfmetric.models.embedding import build_training_model, configure_batch_norm
from tfmetric.optimizers import TorchSGD
from tfmetric.training.precision import make_strategy

def build(synchronized):
    images = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, use_bias=False)(images)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.LayerNormalization(center=False, scale=False)(x)
    x = keras.layers.Dense(5, use_bias=False)(x)
    embedding = keras.Model(images, keras.layers.UnitNormalization()(x))
    configure_batch_norm(embedding, 0.9, synchronized)  # what the trainer does on several replicas
    model = build_training_model(embedding, num_classes=4, temperature=0.05)
    optimizer = TorchSGD(0.05, momentum=0.9, l2_decay=1e-3)
    optimizer.build(model.trainable_variables)
    return model, optimizer

def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))

rng = np.random.default_rng(0)
# Replica 0 and replica 1 see differently distributed halves: local statistics would differ.
batches = [(np.concatenate([rng.normal(0, 1, (4, 8, 8, 3)), rng.normal(2, 3, (4, 8, 8, 3))]).astype("float32"),
            rng.integers(0, 4, 8).astype("int64")) for _ in range(3)]
keras.utils.set_random_seed(0)
single_model, single_opt = build(False)
initial = single_model.get_weights()
single_losses = train_steps(tf.distribute.get_strategy(), single_model, single_opt, batches)
strategy = make_strategy("mirrored")
result = {"replicas": strategy.num_replicas_in_sync, "single_losses": single_losses,
          "moved": max_diff(initial, single_model.get_weights())}
for synchronized in (True, False):
    with strategy.scope():
        model, opt = build(synchronized)
    model.set_weights(initial)
    losses = train_steps(strategy, model, opt, batches)  # replica r gets examples 4r..4r+3
    # get_weights() includes BatchNorm's moving mean and variance.
    result["sync" if synchronized else "local"] = {
        "losses": losses, "max_weight_diff": max_diff(single_model.get_weights(), model.get_weights())}
make_train_step(strategy, model, opt, model.trainable_variables, 8, jit_compile=True)  # local BN: fine
try:
    with strategy.scope():
        sync_model, sync_opt = build(True)
    make_train_step(strategy, sync_model, sync_opt, sync_model.trainable_variables, 8, jit_compile=True)
    result["jit_error"] = None
except ValueError as e:
    result["jit_error"] = str(e)
print("RESULT " + json.dumps(result))
"""
)

TRAIN = (
    fixtures.TWO_LOGICAL_CPUS
    + r"""
from tfmetric import config as config_lib
from tfmetric.training.trainer import train_and_evaluate
config = config_lib.ExperimentConfig.from_dict(json.loads(sys.argv[1]))
result = train_and_evaluate(config, sys.argv[2], verbose=2)
print("RESULT " + json.dumps(result))
"""
)


def test_two_replicas_take_the_same_steps_as_one_device():
    result, _ = fixtures.run_script(STEPS)
    assert result["replicas"] == 2
    # The sum of the replicas' losses is the global-batch mean, and the update equals one device's.
    np.testing.assert_allclose(result["losses"], result["single_losses"], rtol=1e-5)
    assert result["moved"] > 1e-3
    assert result["max_weight_diff"] < 1e-5


def test_two_replicas_with_sync_batch_norm_take_one_devices_steps():
    result, _ = fixtures.run_script(SYNC_BN)
    assert result["replicas"] == 2 and result["moved"] > 1e-1
    # Statistics over the global batch: the same losses, weights and moving statistics as one
    # device (E[x^2] - E[x]^2 across replicas vs. one device's two-pass moments: float rounding).
    np.testing.assert_allclose(result["sync"]["losses"], result["single_losses"], rtol=1e-4)
    assert result["sync"]["max_weight_diff"] < 1e-4
    # Each replica's own statistics (train.per_replica_batch) is a different computation.
    assert result["local"]["max_weight_diff"] > 1e-2
    assert "train.jit_compile cannot compile synchronized BatchNorm" in result["jit_error"]


def test_trainer_runs_and_resumes_under_mirrored_strategy(digits_data_dir, tmp_path):
    config = config_lib.apply_overrides(
        tiny_config(digits_data_dir, distribute="mirrored"), ["data.batch_size=8", "data.images_per_class=4"]
    )
    workdir = str(tmp_path / "run")
    result, out = fixtures.run_script(TRAIN, config.to_json(), workdir)
    assert "2 replica(s), global batch 8" in out  # data.batch_size is the global batch, split
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3]
    assert all(np.isfinite(h["loss"]) for h in result["history"])
    for key in ("recall@1", "map@r", "binary/recall@1"):
        assert 0.0 <= result["test"][key] <= 1.0
    assert os.path.exists(os.path.join(workdir, "embedding_model.keras"))

    # Same command again: restores the mirrored variables from the last checkpoint, trains nothing
    # more and evaluates the restored model, which must score what the trained one did.
    again, out = fixtures.run_script(TRAIN, config.to_json(), workdir)
    assert [h["epoch"] for h in again["history"]] == [1, 2, 3]
    for key in ("recall@1", "map@r", "binary/recall@1"):
        assert again["test"][key] == pytest.approx(result["test"][key], abs=1e-6), key


def test_trainer_with_per_replica_batches(digits_data_dir, tmp_path):
    config = config_lib.apply_overrides(
        tiny_config(digits_data_dir, distribute="mirrored"),
        ["data.batch_size=8", "data.images_per_class=4", "train.per_replica_batch=true", "train.num_steps=1"],
    )
    result, out = fixtures.run_script(TRAIN, config.to_json(), str(tmp_path / "run"))
    assert "2 replica(s), global batch 16" in out
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert all(np.isfinite(h["loss"]) for h in result["history"])


WORKER = r"""
import json, sys
import numpy as np
from tfmetric import config as config_lib
from tfmetric.training import run_state, trainer
weights = {}
save = run_state.RunState.save

def capture(self, epoch, step):  # the weights each worker has at its last checkpoint
    for key, variables in (("trainable", self.model.trainable_variables),
                           ("non_trainable", self.model.non_trainable_variables)):
        weights[key] = [float(np.abs(v.numpy()).sum()) for v in variables]
    return save(self, epoch, step)

run_state.RunState.save = capture
config = config_lib.ExperimentConfig.from_dict(json.loads(sys.argv[1]))
result = trainer.train_and_evaluate(config, sys.argv[2], verbose=2)
print("RESULT " + json.dumps({"test": result["test"], "epochs": [h["epoch"] for h in result["history"]],
                              **weights}))
"""


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_in_sync_and_only_the_chief_writes(tmp_path):
    from tfmetric.data import prepare

    data_dir = str(tmp_path / "data")
    prepare.ensure_tfrecords("digits", data_dir, num_shards=2)  # one shard per worker's input pipeline
    config = config_lib.apply_overrides(
        tiny_config(data_dir, distribute="auto"), ["data.batch_size=8", "data.images_per_class=4"]
    )
    workdir, scratch = str(tmp_path / "run"), tmp_path / "tmp"
    scratch.mkdir()
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    procs = [
        fixtures.start_script(
            WORKER,
            config.to_json(),
            workdir,
            TMPDIR=str(scratch),
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        )
        for index in range(2)
    ]
    results = []
    for proc in procs:
        result, out = fixtures.script_result(proc)
        assert "2 replica(s), global batch 8" in out
        results.append(result)
    chief, other = results
    assert chief["epochs"] == other["epochs"] == [1, 2, 3]
    # Synchronous data parallelism: the same trainable weights on both workers, and, with BatchNorm
    # statistics over the global batch (synchronized), the same moving statistics too.
    np.testing.assert_allclose(chief["trainable"], other["trainable"], rtol=1e-6)
    assert len(chief["non_trainable"]) == len(other["non_trainable"]) > 0
    np.testing.assert_allclose(chief["non_trainable"], other["non_trainable"], rtol=1e-5)
    assert other["test"] is None and 0.0 <= chief["test"]["recall@1"] <= 1.0
    assert sorted(os.listdir(workdir)) == [
        "checkpoints",
        "config.json",
        "embedding_model.keras",
        "history.json",
        "metrics.json",
        "model.keras",
        "retrieval.png",
        "tensorboard",
    ]
    assert json.load(open(os.path.join(workdir, "metrics.json")))["test"] == chief["test"]
    assert not [p for p in os.listdir(scratch) if p.startswith("tfmetric-worker-")]  # scratch deleted
