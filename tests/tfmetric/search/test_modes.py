"""Float, binary and rescore search against brute-force numpy, on every index the build writes:
the default (flat) index answers all three modes, a binary one too when the catalog had floats."""

import numpy as np
import pytest

from tests.tfmetric.search.test_index import clustered, hamming
from tfmetric.search import build_index, load_index, write_catalog
from tfmetric.search.modes import ModeSearcher


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    x = clustered(600, 32, 12, seed=1)
    catalog, queries = x[:560], x[560:]
    directory = str(tmp_path_factory.mktemp("emb"))
    write_catalog(directory, [f"item-{i}" for i in range(len(catalog))], catalog)
    return directory, catalog, queries, str(tmp_path_factory.mktemp("indexes"))


def brute(catalog, q, k, mode, factor=10):
    codes, qbits = np.packbits(catalog > 0, axis=1), np.packbits(q > 0)
    if mode == "float":
        return np.argsort(-(catalog @ q), kind="stable")[:k]
    order = np.argsort(hamming(qbits[None], codes)[0], kind="stable")
    if mode == "binary":
        return order[:k]
    shortlist = np.sort(order[: factor * k])
    return shortlist[np.argsort(-(catalog[shortlist] @ q), kind="stable")[:k]]


@pytest.mark.parametrize("kind", ["flat", "binary", "hnsw"])
def test_every_mode_equals_brute_force_after_save_and_load(data, kind):
    directory, catalog, queries, out = data
    build_index(directory, f"{out}/{kind}", kind=kind)
    searcher = ModeSearcher(load_index(f"{out}/{kind}"))
    assert searcher.modes == ("float", "binary", "rescore")
    for q in queries[:10]:
        for mode in ("binary", "rescore") + (("float",) if kind != "hnsw" else ()):
            scores, rows = searcher.search(q, np.packbits(q > 0), 10, mode)
            np.testing.assert_array_equal(rows, brute(catalog, q, 10, mode), err_msg=f"{kind} {mode}")
            if mode != "binary":
                np.testing.assert_allclose(scores, catalog[rows] @ q, atol=1e-5)


def test_rescore_with_a_full_shortlist_is_exact_float(data):
    directory, catalog, queries, _ = data
    searcher = ModeSearcher(build_index(directory), rescore_factor=56)  # 56 x 10 = the whole catalog
    for q in queries[:5]:
        np.testing.assert_array_equal(
            searcher.search(q, np.packbits(q > 0), 10, "rescore")[1], searcher.search(q, None, 10, "float")[1]
        )


def test_a_bits_only_catalog_answers_binary_only(tmp_path, data):
    _, catalog, queries, _ = data
    write_catalog(
        str(tmp_path / "bits"), [f"i{k}" for k in range(len(catalog))], bits=np.packbits(catalog > 0, 1), dimension=32
    )
    searcher = ModeSearcher(build_index(str(tmp_path / "bits"), kind="binary"))
    assert searcher.modes == ("binary",)
    with pytest.raises(ValueError, match="mode 'rescore' needs float embeddings"):
        searcher.search(queries[0], np.packbits(queries[0] > 0), 5, "rescore")
    with pytest.raises(ValueError, match="mode must be one of float, binary, rescore"):
        searcher.search(queries[0], None, 5, "cosine")
