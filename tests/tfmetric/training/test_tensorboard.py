"""TensorBoard outputs: the projector as TensorBoard's own plugin serves it, and the retrieval grid."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
from werkzeug.test import Client
from werkzeug.wrappers import Response

from tfmetric.training import retrieval_grid, tensorboard


def _projector_plugin(logdir):
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    context = base_plugin.TBContext(
        logdir=logdir, multiplexer=multiplexer, data_provider=data_provider.MultiplexerDataProvider(multiplexer, logdir)
    )
    apps = ProjectorPlugin(context).get_plugin_apps()

    def get(route, **query):
        response = Client(apps[route], Response).get(route, query_string=query)
        assert response.status_code == 200, response.get_data()
        return response.get_data()

    return get


def test_sample_across_classes_is_balanced_and_bounded():
    labels = np.repeat([3, 1, 2, 0, 4], [100, 7, 300, 50, 20])
    chosen = tensorboard.sample_across_classes(labels, 64)
    assert len(chosen) == 64 and np.all(np.diff(chosen) > 0)
    counts = np.bincount(labels[chosen], minlength=5)
    assert counts[1] == 7 and counts.min() >= 7 and counts.max() - np.sort(counts)[1] <= 2
    assert list(tensorboard.sample_across_classes(labels[:10], 64)) == list(range(10))
    many = tensorboard.sample_across_classes(np.arange(500), 100)  # more classes than items
    assert len(many) == 100 and len(set(many)) == 100


def test_projector_is_served_by_tensorboards_plugin_under_the_logdir(tmp_path):
    logdir = str(tmp_path / "tensorboard")
    logger = tensorboard.Logger(str(tmp_path))
    logger.test(10, {"recall@1": 0.5})  # an event file, as training writes
    labels = np.repeat(np.arange(3), 10)
    embeddings = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    images = [tf.io.encode_png(np.full((8, 8, 3), 8 * i, np.uint8)).numpy() for i in range(30)]
    records = ((images[i], labels[i], f"class-{labels[i]}".encode()) for i in range(30))
    tensorboard.write_projector(logger.dir, embeddings, labels, records, max_items=12)

    get = _projector_plugin(logdir)
    assert json.loads(get("/runs")) == ["."]
    info = json.loads(get("/info", run="."))
    name = info["embeddings"][0]["tensorName"]
    assert info["embeddings"][0]["tensorShape"] == [12, 4]
    rows = get("/metadata", run=".", name=name).decode().splitlines()
    assert rows[0] == "label\tclass" and len(rows) == 13
    assert sorted(r.split("\t")[1] for r in rows[1:]) == ["class-0"] * 4 + ["class-1"] * 4 + ["class-2"] * 4
    chosen = tensorboard.sample_across_classes(labels, 12)
    served = np.frombuffer(get("/tensor", run=".", name=name), np.float32).reshape(12, 4)
    np.testing.assert_array_equal(served, embeddings[chosen])
    sprite = np.asarray(Image.open(io.BytesIO(get("/sprite_image", run=".", name=name))))
    assert sprite.shape == (4 * 32, 4 * 32, 3)
    assert sprite[0, 0, 0] == 8 * chosen[0] and sprite[0, 32, 0] == 8 * chosen[1]


def _naive_neighbours(query_ids, emb, k):
    bits = emb > 0
    out_f, out_b = [], []
    for q in query_ids:
        cos = [(-float(emb[q] @ emb[j]), j) for j in range(len(emb)) if j != q]
        ham = [(int(np.sum(bits[q] != bits[j])), j) for j in range(len(emb)) if j != q]
        out_f.append([j for _, j in sorted(cos)[:k]])
        out_b.append([j for _, j in sorted(ham)[:k]])
    return np.array(out_f), np.array(out_b)


def test_grid_neighbours_equal_a_naive_search_and_exclude_the_query():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(60, 12)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.repeat(np.arange(12), 5)
    ids = retrieval_grid.pick_queries(labels, 4)
    assert list(labels[ids]) == [0, 4, 7, 11]
    (f_ids, f_scores), (b_ids, b_scores) = retrieval_grid.neighbours(ids, emb, None, k=5)
    naive_f, naive_b = _naive_neighbours(ids, emb, 5)
    np.testing.assert_array_equal(f_ids, naive_f)
    np.testing.assert_array_equal(b_ids, naive_b)
    np.testing.assert_allclose(f_scores, np.einsum("qd,qkd->qk", emb[ids], emb[f_ids]), rtol=1e-5)
    assert not np.any(f_ids == ids[:, None]) and not np.any(b_ids == ids[:, None])


@pytest.mark.parametrize("gallery", [False, True])
def test_grid_frames_right_neighbours_green_and_wrong_ones_red(gallery):
    # Two classes far apart: a query's float neighbours are its own class, except when k exceeds it.
    emb = np.array([[1, 0.1], [1, 0.0], [1, -0.1], [-1, 0.1], [-1, 0.0], [-1, -0.1]], np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.array([0, 0, 0, 1, 1, 1])
    ids = np.array([0])
    hits = retrieval_grid.neighbours(ids, emb, emb if gallery else None, k=3)
    images = {i: np.full((8, 8, 3), 100, np.uint8) for i in range(6)}
    grid = retrieval_grid.render([images[0]], labels[ids], *hits, images, labels, size=16)
    tile_w = 16 + 2 * 3 + 6
    y = 14 + 6 + 1  # header, gap, into the frame
    frames = [tuple(grid[y, tile_w + 6 + col * tile_w + 1]) for col in range(3)]
    expected = [retrieval_grid.RIGHT] * 3 if gallery else [retrieval_grid.RIGHT] * 2 + [retrieval_grid.WRONG]
    assert frames == expected
    assert tuple(grid[y, 1]) == retrieval_grid.QUERY
