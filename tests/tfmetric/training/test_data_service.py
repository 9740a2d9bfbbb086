"""Training input through a tf.data service dispatcher and 2 workers, in-process on localhost:
the served batches are the local ones (each once, whole classes) and training runs on them."""

import collections
import json
import os
import socket

import numpy as np
import pytest
import tensorflow as tf

from tests.fixtures import tiny_config
from tfmetric import config as config_lib
from tfmetric.data import service
from tfmetric.training import trainer
from tfmetric.training.precision import make_strategy


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dispatcher_address():
    """A dispatcher that knows its 2 workers (DATA sharding needs the fixed list)."""
    ports = [_free_port() for _ in range(3)]
    workers = [f"localhost:{p}" for p in ports[1:]]
    dispatcher = tf.data.experimental.service.DispatchServer(
        tf.data.experimental.service.DispatcherConfig(port=ports[0], worker_addresses=workers)
    )
    servers = [
        tf.data.experimental.service.WorkerServer(
            tf.data.experimental.service.WorkerConfig(
                dispatcher_address=f"localhost:{ports[0]}", worker_address=w, port=p
            )
        )
        for w, p in zip(workers, ports[1:])
    ]
    yield f"grpc://localhost:{ports[0]}"
    for server in servers:
        server.stop()
    dispatcher.stop()


def _label_batches(config):
    data = trainer._Data(config, make_strategy("none"))
    return [tuple(labels.numpy().tolist()) for _, labels in data.epoch(0, 0)], config.data


def test_served_batches_are_the_local_batches_each_once(digits_data_dir, dispatcher_address):
    local_config = tiny_config(digits_data_dir, steps_per_epoch=6)
    served_config = config_lib.apply_overrides(
        tiny_config(digits_data_dir, steps_per_epoch=6), [f"data.service={dispatcher_address}"]
    )
    local, d = _label_batches(local_config)
    served, _ = _label_batches(served_config)

    assert len(local) == 6
    assert collections.Counter(served) == collections.Counter(local)  # same batches, each once
    classes, k = d.batch_size // d.images_per_class, d.images_per_class
    for batch in served:  # P whole classes of K images each
        counts = collections.Counter(batch)
        assert len(counts) == classes and set(counts.values()) == {k}


def test_trains_through_the_service(digits_data_dir, dispatcher_address, tmp_path):
    config = config_lib.apply_overrides(
        tiny_config(digits_data_dir, num_steps=1), [f"data.service={dispatcher_address}"]
    )
    result = trainer.train_and_evaluate(config, str(tmp_path / "run"), verbose=0)
    history = json.load(open(os.path.join(tmp_path, "run", "metrics.json")))["history"]
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
    assert 0.0 <= result["test"]["recall@1"] <= 1.0


def test_bad_address_is_a_config_error():
    with pytest.raises(config_lib.ConfigError, match="data.service must be a dispatcher address"):
        config_lib.validate(config_lib.apply_overrides(config_lib.preset("digits"), ["data.service=localhost:5000"]))
    with pytest.raises(ValueError, match="Received: service='http://x:1'"):
        service.served(tf.data.Dataset.range(3), "http://x:1")
