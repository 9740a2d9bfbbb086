"""Training under MirroredStrategy over two logical CPU devices, in a fresh interpreter.

Logical devices must be configured before TensorFlow initialises, hence the subprocess. The step
test checks the data-parallel arithmetic (loss divided by the *global* batch, gradients summed
across replicas, one optimizer update) against the same model trained on one device; the
end-to-end test runs the trainer with ``train.distribute=mirrored`` and resumes it.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.tfmetric.training.conftest import tiny_config
from tfmetric import config as config_lib

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

PRELUDE = r"""
import json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""

STEPS = PRELUDE + r"""
import keras
from tfmetric.models.embedding import build_training_model
from tfmetric.training.optimizer import TorchSGD
from tfmetric.training.precision import make_strategy
from tfmetric.training.steps import make_train_step

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
single_step = make_train_step(tf.distribute.get_strategy(), single_model, single_opt,
                              single_model.trainable_variables, 8)
single_losses = [float(single_step(x, y)) for x, y in batches]

strategy = make_strategy("mirrored")
with strategy.scope():
    model, opt = build()
model.set_weights(initial)
step = make_train_step(strategy, model, opt, model.trainable_variables, 8)
losses = []
for x, y in batches:  # replica r gets examples 4r..4r+3 of the global batch
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: (x[4 * ctx.replica_id_in_sync_group:][:4], y[4 * ctx.replica_id_in_sync_group:][:4]))
    losses.append(float(step(*values)))
print("RESULT " + json.dumps({
    "replicas": strategy.num_replicas_in_sync, "single_losses": single_losses, "losses": losses,
    "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(single_model.get_weights(),
                                                                      model.get_weights())),
    "moved": max(float(np.abs(a - b).max()) for a, b in zip(initial, model.get_weights()))}))
"""

TRAIN = PRELUDE + r"""
from tfmetric import config as config_lib
from tfmetric.training.trainer import train_and_evaluate
config = config_lib.ExperimentConfig.from_dict(json.loads(sys.argv[1]))
result = train_and_evaluate(config, sys.argv[2], verbose=0)
print("RESULT " + json.dumps(result))
"""


def _run(script, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[0][len("RESULT "):]), proc.stdout


def test_two_replicas_take_the_same_steps_as_one_device():
    result, _ = _run(STEPS)
    assert result["replicas"] == 2
    # The sum of the replicas' losses is the global-batch mean, and the update equals one device's.
    np.testing.assert_allclose(result["losses"], result["single_losses"], rtol=1e-5)
    assert result["moved"] > 1e-3
    assert result["max_weight_diff"] < 1e-5


def test_trainer_runs_and_resumes_under_mirrored_strategy(digits_data_dir, tmp_path):
    config = config_lib.apply_overrides(tiny_config(digits_data_dir, distribute="mirrored"),
                                        ["data.batch_size=8", "data.images_per_class=4"])
    workdir = str(tmp_path / "run")
    result, out = _run(TRAIN, config.to_json(), workdir)
    assert "2 replica(s), global batch 16" in out
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3]
    assert all(np.isfinite(h["loss"]) for h in result["history"])
    for key in ("recall@1", "map@r", "binary/recall@1"):
        assert 0.0 <= result["test"][key] <= 1.0
    assert os.path.exists(os.path.join(workdir, "embedding_model.keras"))

    # Same command again: restores the mirrored variables from the last checkpoint, trains nothing
    # more and evaluates the restored model, which must score what the trained one did.
    again, out = _run(TRAIN, config.to_json(), workdir)
    assert [h["epoch"] for h in again["history"]] == [1, 2, 3]
    for key in ("recall@1", "map@r", "binary/recall@1"):
        assert again["test"][key] == pytest.approx(result["test"][key], abs=1e-6), key

