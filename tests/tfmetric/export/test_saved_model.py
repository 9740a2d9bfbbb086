"""The serving contract as tested API: a training workdir exported with the CLI, reloaded with
tf.saved_model.load and with the TF1 loader TF Serving uses (in-process and via saved_model_cli),
each signature compared with the in-memory Keras model."""

import base64
import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures as fx
from tfmetric import config as config_lib
from tfmetric.data import preprocessing
from tfmetric.export import __main__ as export_cli
from tfmetric.export import model_card, warmup
from tfmetric.models.embedding import build_embedding_model

DIM, SIZE, RESIZE = 12, 32, 36  # 12 is not a multiple of 8: the last byte carries 4 padding bits
CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
METRICS = {"recall@1": 0.25, "map@r": 0.125}


def _config():
    config = config_lib.preset("digits")
    config.data.image_size, config.data.resize_size = SIZE, RESIZE
    config.model.embedding_dim = DIM
    return config


def _images():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((40, 30), (32, 32), (57, 64))]
    encoded = [
        tf.io.encode_jpeg(arrays[0], quality=90).numpy(),
        tf.io.encode_png(arrays[1]).numpy(),
        tf.io.encode_png(arrays[2]).numpy(),
    ]
    return arrays, encoded


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(keras model, version dir): a fake finished run exported through the CLI."""
    workdir = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(0)
    model = build_embedding_model("inception_v1", DIM, SIZE)
    model.save(str(workdir / "embedding_model.keras"))
    (workdir / "config.json").write_text(_config().to_json())
    (workdir / "metrics.json").write_text(json.dumps({"test": METRICS}))
    out = tmp_path_factory.mktemp("saved_models")
    assert export_cli.main(["--workdir", str(workdir), "--output-dir", str(out), "--name", "tiny"]) == 0
    return model, str(out / "tiny" / "1")


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported[1])


@pytest.fixture(scope="module")
def expected(exported):
    """The in-memory model on the evaluation preprocessing of the test images."""
    model = exported[0]
    _, encoded = _images()
    prep = tf.function(lambda b: preprocessing.eval_preprocess(b, SIZE, RESIZE, "imagenet_mean_std"))
    images = tf.stack([prep(tf.constant(e)) for e in encoded])
    return model(images, training=False).numpy()


def test_layout(exported):
    path = exported[1]
    assert sorted(os.listdir(path)) == [
        "assets",
        "assets.extra",
        "fingerprint.pb",
        "model_card.json",
        "saved_model.pb",
        "variables",
    ]
    assert os.listdir(os.path.dirname(path)) == ["1"]  # no temporary directory left behind


def test_each_variable_is_stored_once(exported, tmp_path):
    """variables/ holds the model's weights once: as many entries as the model has variables, and
    about the size of the same model saved as .keras (ExportArchive.track would double both)."""
    model, path = exported
    stored = [
        name
        for name, _ in tf.train.list_variables(os.path.join(path, "variables", "variables"))
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    ]
    assert len(stored) == len(model.weights)
    variables_dir = os.path.join(path, "variables")
    size = sum(os.path.getsize(os.path.join(variables_dir, f)) for f in os.listdir(variables_dir))
    model.save(str(tmp_path / "embedding_model.keras"))
    keras_size = os.path.getsize(tmp_path / "embedding_model.keras")
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    assert weight_bytes <= size <= 1.1 * keras_size, (weight_bytes, size, keras_size)


def test_bytes_signatures_equal_the_keras_model(loaded, expected):
    _, encoded = _images()
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(encoded))
    assert list(out) == ["embedding"]
    np.testing.assert_allclose(out["embedding"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"].numpy(), axis=1), 1.0, atol=1e-5)
    bits = loaded.signatures["serving_binary"](image_bytes=tf.constant(encoded))
    assert list(bits) == ["embedding_bits"] and bits["embedding_bits"].dtype == tf.uint8
    np.testing.assert_array_equal(bits["embedding_bits"].numpy(), np.packbits(out["embedding"].numpy() > 0, axis=-1))
    assert bits["embedding_bits"].shape == (3, 2)


def test_images_signature_equals_the_keras_model(exported, loaded):
    model = exported[0]
    arrays, _ = _images()
    for array in arrays:  # any H x W; one size per call
        out = loaded.signatures["serving_images"](images=tf.constant(array[None]))
        want = model(preprocessing.eval_preprocess_image(array[None], SIZE, RESIZE), training=False).numpy()
        np.testing.assert_allclose(out["embedding"].numpy(), want, atol=1e-5)
        np.testing.assert_array_equal(out["embedding_bits"].numpy(), np.packbits(want > 0, axis=-1))


def test_batch_dimension_is_dynamic(loaded, expected):
    _, encoded = _images()
    fn = loaded.signatures["serving_default"]
    for n in (1, 2):
        np.testing.assert_allclose(
            fn(image_bytes=tf.constant(encoded[:n]))["embedding"].numpy(), expected[:n], atol=1e-5
        )
    assert fn(image_bytes=tf.constant(encoded * 3))["embedding"].shape == (9, DIM)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty image bytes"),
        (b"GIF89a" + b"\x00" * 40, r"unsupported image format \(gif\)"),
        (b"not an image", "unsupported image format"),
        (b"\xff\xd8\xff" + b"\x00" * 20, "Invalid JPEG data"),
    ],
)
def test_bad_input_through_the_signature(loaded, data, message):
    _, encoded = _images()
    for name in ("serving_default", "serving_binary"):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            loaded.signatures[name](image_bytes=tf.constant([encoded[0], data]))


def test_model_card(exported):
    card = model_card.read_model_card(exported[1])
    config = _config()
    assert card["dataset"] == "digits" and card["backbone"] == "inception_v1"
    assert card["embedding_dim"] == DIM and card["embedding_bytes"] == 2
    assert card["temperature"] == config.model.temperature
    assert card["preprocessing"]["image_size"] == SIZE and card["preprocessing"]["resize_size"] == RESIZE
    assert card["preprocessing"]["normalization"] == "imagenet_mean_std"
    assert card["config_sha256"] == model_card.config_hash(config)
    assert config_lib.ExperimentConfig.from_dict(card["config"]) == config
    assert card["test_metrics"] == METRICS
    assert card["signatures"]["serving_binary"]["outputs"] == {"embedding_bits": {"dtype": "uint8", "shape": [-1, 2]}}


def test_warmup_requests_run_through_their_signatures(exported, loaded):
    requests = warmup.read_warmup_requests(os.path.join(exported[1], warmup.WARMUP_FILE))
    assert [sig for _, sig, _ in requests] == ["serving_default", "serving_binary", "serving_images"]
    for name, signature, inputs in requests:
        assert name == "tiny"
        outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        assert all(v.shape[0] == 1 for v in outputs.values())


def test_tf1_loader_runs_every_signature(exported, expected):
    """The loader of saved_model_cli and TF Serving: a Session restoring the variables by name."""
    arrays, encoded = _images()
    feeds = {"image_bytes": np.array(encoded, dtype=object), "images": arrays[1][None]}
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], exported[1])
        results = {}
        for name in ("serving_default", "serving_binary", "serving_images"):
            sig = meta.signature_def[name]
            fetches = {k: v.name for k, v in sig.outputs.items()}
            results[name] = sess.run(fetches, {v.name: feeds[k] for k, v in sig.inputs.items()})
    np.testing.assert_allclose(results["serving_default"]["embedding"], expected, atol=1e-5)
    np.testing.assert_array_equal(results["serving_binary"]["embedding_bits"], np.packbits(expected > 0, axis=-1))
    np.testing.assert_allclose(results["serving_images"]["embedding"][0], expected[1], atol=1e-5)


def _cli(*args):
    result = subprocess.run([CLI, *args], capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_saved_model_cli_show_lists_the_signatures(exported):
    out = _cli("show", "--dir", exported[1], "--all")
    blocks = {b.split("']")[0]: b for b in out.split("signature_def['")[1:]}
    assert {"serving_default", "serving_binary", "serving_images"} <= set(blocks)
    for name, inputs, outputs in [
        ("serving_default", [("image_bytes", "DT_STRING", "(-1)")], [("embedding", "DT_FLOAT", f"(-1, {DIM})")]),
        ("serving_binary", [("image_bytes", "DT_STRING", "(-1)")], [("embedding_bits", "DT_UINT8", "(-1, 2)")]),
        (
            "serving_images",
            [("images", "DT_UINT8", "(-1, -1, -1, 3)")],
            [("embedding", "DT_FLOAT", f"(-1, {DIM})"), ("embedding_bits", "DT_UINT8", "(-1, 2)")],
        ),
    ]:
        block = blocks[name]
        for key, dtype, shape in inputs + outputs:
            kind = "inputs" if (key, dtype, shape) in inputs else "outputs"
            assert f"{kind}['{key}'] tensor_info:\n        dtype: {dtype}\n        shape: {shape}" in block, block
        assert "Method name is: tensorflow/serving/predict" in block


def test_saved_model_cli_run_on_serialized_bytes(exported, expected, tmp_path):
    _, encoded = _images()
    npy = tmp_path / "image_bytes.npy"
    np.save(npy, np.array(encoded, dtype=object), allow_pickle=True)
    out_dir = tmp_path / "out"
    _cli(
        "run",
        "--dir",
        exported[1],
        "--tag_set",
        "serve",
        "--signature_def",
        "serving_binary",
        "--inputs",
        f"image_bytes={npy}",
        "--outdir",
        str(out_dir),
    )
    np.testing.assert_array_equal(np.load(out_dir / "embedding_bits.npy"), np.packbits(expected > 0, axis=-1))


def test_export_cli_user_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        export_cli.main(["--workdir", str(tmp_path / "missing")])
    assert e.value.code == 2
    assert "python -m tfmetric.export: error: --workdir: workdir is not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        export_cli.main(["--workdir", str(tmp_path)])
    assert e.value.code == 2
    assert f"error: --workdir: {tmp_path / 'config.json'} not found" in capsys.readouterr().err


def test_export_errors_name_arguments_not_flags(tmp_path):
    from tfmetric.export import export_from_workdir

    with pytest.raises(NotADirectoryError, match=f"^workdir is not a directory. Received: workdir={tmp_path / 'x'}$"):
        export_from_workdir(str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError, match="config.json not found: workdir must be a finished training run") as e:
        export_from_workdir(str(tmp_path))
    assert "--" not in str(e.value)


def _load_example_client():
    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "serving_client.py")
    spec = importlib.util.spec_from_file_location("serving_client", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def rest_server(loaded):
    """A stand-in for TF Serving's REST predict API (row format) in front of the loaded SavedModel."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not re.fullmatch(r"/v1/models/tiny(/versions/1)?:predict", self.path):
                return self._reply(404, {"error": f"Servable not found for request: {self.path}"})
            images = [base64.b64decode(instance["b64"]) for instance in body["instances"]]
            try:
                outputs = loaded.signatures[body["signature_name"]](image_bytes=tf.constant(images))
            except tf.errors.InvalidArgumentError as e:
                return self._reply(400, {"error": e.message})
            (output,) = outputs.values()
            self._reply(200, {"predictions": output.numpy().tolist()})

        def _reply(self, code, payload):
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _image_files(tmp_path):
    _, encoded = _images()
    paths = []
    for i, data in enumerate(encoded):
        path = tmp_path / f"image{i}.{'jpg' if i == 0 else 'png'}"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def test_example_client_over_rest(rest_server, expected, tmp_path, capsys):
    client = _load_example_client()
    paths = _image_files(tmp_path)
    assert client.main(["--url", rest_server, "--model", "tiny", "--json", *paths]) == 0
    rows = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose([rows[p] for p in paths], expected, atol=1e-5)
    assert (
        client.main(
            ["--url", rest_server, "--model", "tiny", "--version", "1", "--signature", "serving_binary", *paths]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    codes = np.packbits(expected > 0, axis=-1)
    assert lines == [f"{p}: 16-bit code {bytes(c).hex()}" for p, c in zip(paths, codes)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"GIF89a" + b"\x00" * 40)
    assert client.main(["--url", rest_server, "--model", "tiny", str(bad)]) == 1
    assert "HTTP 400" in capsys.readouterr().err


def test_example_client_over_grpc(loaded, expected, tmp_path, capsys):
    """A gRPC PredictionService stand-in decoding the request with the same runtime protos."""
    client = _load_example_client()
    with fx.stand_in_tf_serving(loaded) as (target, _):
        paths = _image_files(tmp_path)
        assert client.main(["--grpc", target, "--model", "tiny", "--json", *paths]) == 0
        rows = json.loads(capsys.readouterr().out)
        np.testing.assert_allclose([rows[p] for p in paths], expected, atol=1e-5)
        bad = tmp_path / "empty.png"
        bad.write_bytes(b"")
        assert client.main(["--grpc", target, "--model", "tiny", "--signature", "serving_binary", str(bad)]) == 1
        assert "INVALID_ARGUMENT" in capsys.readouterr().err
