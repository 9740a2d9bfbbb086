"""tfmetric.export.loader: the one SavedModel loader, its signatures, and the errors naming the directory."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tfmetric.export import loader


class Scaler(tf.Module):
    def __init__(self):
        super().__init__()
        self.scale = tf.Variable(np.arange(1, 65, dtype=np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32)])
    def scaled(self, x):
        return {"y": x * self.scale}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("scaler") / "1")
    module = Scaler()
    tf.saved_model.save(module, path, signatures={"serving_default": module.scaled})
    return path


def test_loads_and_calls_a_signature(model_dir):
    fn = loader.signature(loader.load_saved_model(model_dir), "serving_default", model_dir)
    np.testing.assert_array_equal(fn(x=tf.ones([2, 64]))["y"].numpy(), np.tile(np.arange(1, 65), (2, 1)))


def test_missing_signature_names_the_model_and_its_signatures(model_dir):
    loaded = loader.load_saved_model(model_dir)
    with pytest.raises(
        ValueError,
        match="The SavedModel has no 'serving_binary' signature "
        r"\(has: serving_default\)",
    ):
        loader.signature(loaded, "serving_binary", model_dir)


def test_no_saved_model_there(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"model_dir has no saved_model.pb; .* Received: model_dir={tmp_path}$"):
        loader.load_saved_model(str(tmp_path))


def test_truncated_variables(tmp_path, model_dir):
    cut = str(tmp_path / "1")
    tf.io.gfile.makedirs(os.path.join(cut, "variables"))
    for root, _, files in os.walk(model_dir):
        for name in files:
            source = os.path.join(root, name)
            data = open(source, "rb").read()
            if name.startswith("variables.data"):
                data = data[: len(data) // 2]
            target = os.path.join(cut, os.path.relpath(source, model_dir))
            tf.io.gfile.makedirs(os.path.dirname(target))
            open(target, "wb").write(data)
    with pytest.raises(
        ValueError, match=f"The SavedModel cannot be loaded .*export it again. Received: model_dir={cut}$"
    ):
        loader.load_saved_model(cut)
