"""Catalog indexes against brute-force numpy: exact kinds agree exactly, ANN kinds reach a stated
recall@10, and every kind survives save/load; bad catalogs and parameters give clear errors."""

import json
import os
import shutil

import numpy as np
import pytest

from tfmetric.search import build_index, kinds, load_index, read_catalog, write_catalog
from tfmetric.search.index import write_index_manifest
from tfmetric.serve.versions import is_index

MODEL = {
    "path": "/models/tiny/1",
    "name": "tiny",
    "version": 1,
    "embedding_dim": 32,
    "config_sha256": "abc",
    "created": "2026-01-01T00:00:00+00:00",
    "saved_model_checksum": "42",
}
# recall@10 against exact search of the same codes, on overlapping clusters (trained embeddings
# cluster by class), that each ANN kind must reach: with its defaults, and with a small search
# (IVF: 4 of 54 lists, about 7 % of the catalog; HNSW: M 8, ef_search 16). Binary recall counts a
# result as found when its Hamming distance is within the exact k-th distance (ties are common).
RECALL_CASES = [
    ("ivf", {}, 0.98),
    ("ivf", {"nprobe": 4}, 0.9),
    ("hnsw", {}, 0.98),
    ("hnsw", {"m": 8, "ef_search": 16}, 0.9),
    ("binary-ivf", {}, 0.98),
    ("binary-ivf", {"nprobe": 4}, 0.85),
    ("binary-hnsw", {}, 0.98),
    ("binary-hnsw", {"m": 8, "ef_search": 16}, 0.9),
]


def clustered(n, dim, clusters, seed=0, noise=1.0):
    """L2-normalised points around random centres, like the embeddings of ``clusters`` classes."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def hamming(a, b):
    return np.unpackbits(a[:, None, :] ^ b[None, :, :], axis=-1).sum(-1)


@pytest.fixture(scope="module")
def data():
    x = clustered(3000, 32, 30)
    return x[:2900], x[2900:]  # catalog, queries (not in the catalog)


@pytest.fixture(scope="module")
def embeddings_dir(tmp_path_factory, data):
    catalog, _ = data
    directory = str(tmp_path_factory.mktemp("embeddings"))
    write_catalog(
        directory,
        [f"item-{i:04d}" for i in range(len(catalog))],
        catalog,
        sources=[f"/images/{i}.jpg" for i in range(len(catalog))],
        model=MODEL,
    )
    return directory


def test_catalog_round_trip(embeddings_dir, data):
    catalog = read_catalog(embeddings_dir)
    np.testing.assert_array_equal(catalog.embeddings, data[0])
    np.testing.assert_array_equal(catalog.bits, np.packbits(data[0] > 0, axis=-1))
    assert catalog.ids[5] == "item-0005" and catalog.sources[5] == "/images/5.jpg"
    assert catalog.manifest["count"] == 2900 and catalog.manifest["model"] == MODEL


def test_exact_float_equals_brute_force(embeddings_dir, data):
    catalog, queries = data
    index = build_index(embeddings_dir, kind="flat")
    scores, rows = index.search(queries, k=10)
    brute = queries @ catalog.T
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, 1), atol=1e-5)
    id_scores, ids = index.search_ids(queries, k=10)
    assert ids.tolist() == [[f"item-{r:04d}" for r in row] for row in expected]
    np.testing.assert_array_equal(id_scores, scores)
    top = index.neighbours(queries[0], k=3)
    assert [n.id for n in top] == [f"item-{r:04d}" for r in expected[0, :3]]
    assert top[0].rank == 1 and top[0].source == f"/images/{expected[0, 0]}.jpg"


def test_exact_binary_equals_brute_force(embeddings_dir, data):
    catalog, queries = data
    codes, qcodes = np.packbits(catalog > 0, axis=-1), np.packbits(queries > 0, axis=-1)
    index = build_index(embeddings_dir, kind="binary")
    distances, rows = index.search(qcodes, k=10)
    brute = hamming(qcodes, codes)
    expected = np.argsort(brute, axis=1, kind="stable")[:, :10]  # equal distances by catalog row
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(distances, np.take_along_axis(brute, expected, 1))


@pytest.mark.parametrize("kind, params, min_recall", RECALL_CASES)
def test_ann_recall_at_10_against_exact(embeddings_dir, data, kind, params, min_recall):
    catalog, queries = data
    index = build_index(embeddings_dir, kind=kind, **params)
    k = 10
    if kinds.is_binary(kind):
        codes, qcodes = np.packbits(catalog > 0, axis=-1), np.packbits(queries > 0, axis=-1)
        distances, rows = index.search(qcodes, k)
        kth = np.sort(hamming(qcodes, codes), axis=1)[:, k - 1 : k]
        recall = np.mean((rows >= 0) & (distances <= kth))
    else:
        _, rows = index.search(queries, k)
        exact = np.argsort(-(queries @ catalog.T), axis=1)[:, :k]
        recall = np.mean([len(set(r) & set(e)) / k for r, e in zip(rows, exact)])
    assert recall >= min_recall, f"{kind} {params}: recall@10 {recall:.3f} < {min_recall}"


def test_search_ids_is_none_where_faiss_found_nothing(embeddings_dir, data):
    """An IVF search probing one list can return fewer than k results: rows -1, ids None."""
    index = build_index(embeddings_dir, kind="ivf", nlist=50, nprobe=1)
    _, rows = index.search(data[1], k=200)
    _, ids = index.search_ids(data[1], k=200)
    assert (rows < 0).any()
    assert [[i is None for i in row] for row in ids.tolist()] == (rows < 0).tolist()
    assert ids[rows >= 0].tolist() == [f"item-{r:04d}" for r in rows[rows >= 0]]


@pytest.mark.parametrize("kind", kinds.KINDS)
def test_save_and_load_give_the_same_results(tmp_path, embeddings_dir, data, kind):
    _, queries = data
    built = build_index(embeddings_dir, str(tmp_path / "index"), kind=kind)
    loaded = load_index(str(tmp_path / "index"))
    q = np.packbits(queries > 0, axis=-1) if kinds.is_binary(kind) else queries
    for a, b in zip(built.search(q, 10), loaded.search(q, 10)):
        np.testing.assert_array_equal(a, b)
    with open(tmp_path / "index" / "index.json") as f:
        manifest = json.load(f)
    assert manifest["kind"] == kind and manifest["count"] == 2900 and manifest["dim"] == 32
    assert manifest["metric"] == ("hamming" if kinds.is_binary(kind) else "cosine")
    assert manifest["model"] == MODEL and manifest["params"] == kinds.default_params(kind, 2900)
    # Beside the faiss index, what the other search modes need (tfmetric.search.modes): the bits of a
    # float kind, the float embeddings of every kind but flat (whose own vectors serve).
    arrays = (["bits.npy"] if not kinds.is_binary(kind) else []) + (["embeddings.npy"] if kind != "flat" else [])
    assert sorted(os.listdir(tmp_path / "index")) == sorted(["ids.parquet", "index.faiss", "index.json", *arrays])
    assert list(loaded.ids[:2]) == ["item-0000", "item-0001"]


def test_default_parameters():
    assert kinds.default_params("ivf", 1_000_000) == {"nlist": 1000, "nprobe": 32, "train_size": 64000}
    assert kinds.default_params("binary-ivf", 100) == {"nlist": 2, "nprobe": 2, "train_size": 100}
    assert kinds.default_params("hnsw", 10) == {"m": 32, "ef_construction": 40, "ef_search": 64}
    assert kinds.default_params("flat", 10) == {}
    assert kinds.resolve_params("ivf", 10_000, nlist=50)["train_size"] == 3200


def test_search_parameters_can_change_after_loading(tmp_path, embeddings_dir):
    build_index(embeddings_dir, str(tmp_path / "ivf"), kind="ivf", nlist=20, nprobe=2)
    index = load_index(str(tmp_path / "ivf"), nprobe=7)
    assert index.index.nprobe == 7 and index.manifest["params"]["nprobe"] == 7
    with pytest.raises(ValueError, match="ef_search does not apply to kind ivf .it takes: nlist, nprobe, train_size"):
        index.set_search_params(ef_search=10)


@pytest.mark.parametrize(
    "kind, params, message",
    [
        (
            "flat",
            {"nlist": 4},
            "nlist does not apply to kind flat .it takes: no parameters.. Received: nlist=4, kind='flat'",
        ),
        ("ivf", {"nprobe": 0}, "nprobe must be a positive integer. Received: nprobe=0"),
        ("ivf", {"nlist": 5000}, "nlist exceeds the 2900 items to index. Received: nlist=5000"),
        ("annoy", {}, "kind must be one of flat, binary, ivf, hnsw, binary-ivf, binary-hnsw. Received: kind='annoy'"),
    ],
)
def test_bad_kind_or_parameters(embeddings_dir, kind, params, message):
    with pytest.raises(ValueError, match=message) as e:
        build_index(embeddings_dir, kind=kind, **params)
    assert "--" not in str(e.value)  # a library error names arguments, not a command line's flags


def test_empty_catalog_is_refused(tmp_path):
    write_catalog(str(tmp_path), [], np.zeros((0, 8), np.float32), model=MODEL)
    with pytest.raises(ValueError, match=f"No embeddings .count 0.* Received: embeddings_dir={tmp_path}$"):
        build_index(str(tmp_path), kind="flat")


def test_float_kinds_need_float_embeddings(tmp_path):
    write_catalog(
        str(tmp_path), ["a", "b"], bits=np.array([[1], [2]], np.uint8), dimension=8, signature="serving_binary"
    )
    with pytest.raises(ValueError, match="sign bits only .* use a binary kind .*Received: embeddings_dir="):
        build_index(str(tmp_path), kind="hnsw")
    assert build_index(str(tmp_path), kind="binary").neighbours(np.array([1], np.uint8), k=1)[0].id == "a"


def test_incomplete_embedding_output_is_refused(tmp_path, embeddings_dir):
    with pytest.raises(
        FileNotFoundError,
        match="embeddings_dir has no catalog.json; the embedding job did not "
        f"finish .*Received: embeddings_dir={tmp_path}$",
    ):
        build_index(str(tmp_path), kind="flat")
    with pytest.raises(
        FileNotFoundError,
        match=f"index_dir has no index.json; not an index directory.* Received: index_dir={tmp_path}$",
    ):
        load_index(str(tmp_path))


def test_outputs_of_earlier_releases_named_manifest_json_still_load(tmp_path, embeddings_dir, data):
    """Catalogs and indexes written before their manifests had their own names (catalog.json,
    index.json) hold manifest.json: both still read, and rewriting one leaves only the new name."""
    old_catalog = shutil.copytree(embeddings_dir, tmp_path / "catalog")
    os.rename(old_catalog / "catalog.json", old_catalog / "manifest.json")
    built = build_index(str(old_catalog), str(tmp_path / "index"), kind="flat")
    os.rename(tmp_path / "index" / "index.json", tmp_path / "index" / "manifest.json")
    assert is_index(str(tmp_path / "index"))
    loaded = load_index(str(tmp_path / "index"))
    np.testing.assert_array_equal(loaded.search(data[1], 5)[1], built.search(data[1], 5)[1])
    write_index_manifest(str(tmp_path / "index"), loaded.manifest)  # as calibrate rewrites it
    assert "manifest.json" not in os.listdir(tmp_path / "index") and is_index(str(tmp_path / "index"))


def test_index_manifest_of_another_version_names_file_and_version(tmp_path, embeddings_dir):
    build_index(embeddings_dir, str(tmp_path / "index"), kind="flat")
    path = tmp_path / "index" / "index.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), format_version=9)))
    with pytest.raises(ValueError, match=f"{path}: index manifest of format_version 9; this tfmetric reads 1"):
        load_index(str(tmp_path / "index"))
