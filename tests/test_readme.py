"""README.md's examples run as written: every ```python block, each pasted into a fresh namespace of
one interpreter (TensorFlow is imported once for all of them), and the saved_model_cli ```bash block,
in a directory prepared as the README's "Tests" section states (a tiny exported model as
saved_models/cars196/1 and saved_models/products/3, its catalog in embeddings/products-3, photo.jpg
and query.jpg, TF_SERVING_GRPC naming a stand-in gRPC server)."""

import json
import os
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures as fx
from tests.tfmetric.search.test_query import DIM, tiny_model
from tfmetric.search import SavedModelEmbedder, model_identity, write_catalog

README = os.path.join(fx.REPO_ROOT, "README.md")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def blocks(language):
    with open(README) as f:
        return [body for lang, body in FENCE.findall(f.read()) if lang == language]


PYTHON_BLOCKS = blocks("python")


def test_every_fenced_block_names_its_language():
    with open(README) as f:
        text = f.read()
    assert [lang for lang, _ in FENCE.findall(text) if lang not in ("python", "bash", "text", "json")] == []
    assert len(PYTHON_BLOCKS) >= 4


@pytest.fixture(scope="module")
def stand_in_server(workspace):
    """A gRPC PredictionService answering from the SavedModel, as TF Serving would."""
    with fx.stand_in_tf_serving(tf.saved_model.load(os.path.join(workspace, "saved_models", "cars196", "1"))) as server:
        yield server


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    model = tiny_model(tmp_path_factory)
    for name in ("cars196/1", "products/3"):
        shutil.copytree(model, root / "saved_models" / name)
    fx.write_bytes(str(root / "photo.jpg"), fx.noise_jpeg_bytes((40, 36), seed=1))
    fx.write_bytes(str(root / "query.jpg"), fx.noise_jpeg_bytes((40, 36), seed=3))
    products = str(root / "saved_models" / "products" / "3")
    paths = [
        fx.write_bytes(str(root / "catalog" / f"item-{i}.jpg"), fx.noise_jpeg_bytes((40, 36), seed=i)) for i in range(8)
    ]
    results = SavedModelEmbedder(products).embed([open(p, "rb").read() for p in paths])
    write_catalog(
        str(root / "embeddings" / "products-3"),
        [f"item-{i}" for i in range(8)],
        np.stack([r.embedding for r in results]),
        sources=paths,
        model=model_identity(products),
    )
    return str(root)


def _run(command, workspace, server):
    env = dict(
        os.environ,
        TF_SERVING_GRPC=server,
        PYTHONPATH=fx.REPO_ROOT,
        TF_CPP_MIN_LOG_LEVEL="2",
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    )
    return subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=600)


# Runs each block of the JSON list in argv[1] as a script of its own (a fresh __main__ namespace: a
# block sees no name another block defined or imported), in order, and writes per block its exit
# status (as `python -c block` would give it), stdout and stderr as JSON into argv[2].
BLOCK_RUNNER = r"""
import contextlib, io, json, sys, traceback
results = []
for source in json.load(open(sys.argv[1])):
    out, err, status = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            exec(compile(source, "<README block>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            status = 1
    results.append({"returncode": status, "stdout": out.getvalue(), "stderr": err.getvalue()})
with open(sys.argv[2], "w") as f:
    json.dump(results, f)
"""


@pytest.fixture(scope="module")
def python_blocks_run(workspace, stand_in_server, tmp_path_factory):
    """[{returncode, stdout, stderr}] of every python block, all run by one interpreter."""
    scratch = tmp_path_factory.mktemp("readme-blocks")
    (scratch / "blocks.json").write_text(json.dumps(PYTHON_BLOCKS))
    result = _run(
        [sys.executable, "-c", BLOCK_RUNNER, str(scratch / "blocks.json"), str(scratch / "results.json")],
        workspace,
        stand_in_server[0],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((scratch / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("number", range(len(PYTHON_BLOCKS)))
def test_python_block_runs_as_pasted(number, python_blocks_run, stand_in_server):
    source = PYTHON_BLOCKS[number]
    result = types.SimpleNamespace(**python_blocks_run[number])
    assert result.returncode == 0, f"README python block {number}:\n{source}\n{result.stderr[-3000:]}"
    if "predict_request" in source:
        assert stand_in_server[1] and result.stdout.strip().splitlines()[-1] == f"(1, {DIM})"
    if "query_index" in source:
        lines = result.stdout.splitlines()
        assert lines[0].startswith("1 item-") and len([line for line in lines if re.match(r"\d item-", line)]) == 5


@pytest.mark.slow
def test_saved_model_cli_block_runs_as_written(workspace, stand_in_server):
    (script,) = [b for b in blocks("bash") if "saved_model_cli run" in b]
    result = _run(["bash", "-euo", "pipefail", "-c", script], workspace, stand_in_server[0])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"(1, {DIM})"
    direct = (
        SavedModelEmbedder(os.path.join(workspace, "saved_models", "cars196", "1"))
        .embed([open(os.path.join(workspace, "photo.jpg"), "rb").read()])[0]
        .embedding
    )
    np.testing.assert_allclose(
        np.load(os.path.join(workspace, "saved_model_cli_out", "embedding.npy"))[0], direct, atol=1e-5
    )
