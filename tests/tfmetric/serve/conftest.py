"""One tiny exported model and a catalog of 12 noise images, embedded and indexed once per session."""

import json
import shutil
import signal

import numpy as np
import pytest

from tests.fixtures import MAX_BODY, MISSING_SOURCE, NO_SOURCE
from tests.tfmetric.search.test_query import noise_images, tiny_model
from tests.tfmetric.serve.service import Service
from tfmetric.search import SavedModelEmbedder, build_index, model_identity, write_catalog
from tfmetric.search import index as index_lib


@pytest.fixture(scope="session")
def catalog(tmp_path_factory):
    """dict: model, paths {id: image path}, embeddings dir, flat (default build) and binary index dirs,
    versions (a directory of versions holding 1/), embeddings [12, D] and their labels."""
    root = tmp_path_factory.mktemp("serve")
    model_dir = tiny_model(tmp_path_factory)
    paths = noise_images(str(root / "images"), 12)
    ids = sorted(paths)
    results = SavedModelEmbedder(model_dir).embed([open(paths[i], "rb").read() for i in ids])
    embeddings = np.stack([r.embedding for r in results])
    sources = [None if i == NO_SOURCE else str(root / "gone.jpg") if i == MISSING_SOURCE else paths[i] for i in ids]
    write_catalog(str(root / "embeddings"), ids, embeddings, sources=sources, model=model_identity(model_dir))
    build_index(str(root / "embeddings"), str(root / "flat"))
    build_index(str(root / "embeddings"), str(root / "binary"), kind="binary")
    shutil.copytree(root / "flat", root / "versions" / "1")
    return {
        "model": model_dir,
        "paths": paths,
        "embeddings_dir": str(root / "embeddings"),
        "flat": str(root / "flat"),
        "binary": str(root / "binary"),
        "versions": str(root / "versions"),
        "root": root,
        "vectors": embeddings,
        "labels": np.arange(len(ids)) % 3,
    }


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="session")
def image_of(catalog):
    return lambda item: read(catalog["paths"][item])


@pytest.fixture(scope="session")
def service(catalog):
    """A service over a copy of the default (flat) index with match cut-offs, shared by the HTTP and
    browser tests, stopped with SIGTERM at the end."""
    index = shutil.copytree(catalog["flat"], catalog["root"] / "calibrated")
    manifest = json.loads((index / "index.json").read_text())
    # The cut-offs' numbers are calibrate's (test_calibrate); here: does the service apply them?
    unit = catalog["vectors"] / np.linalg.norm(catalog["vectors"], axis=1, keepdims=True)
    cosines = np.sort(unit @ unit[5])[::-1]
    manifest["match"] = {"cosine": {"threshold": float((cosines[0] + cosines[1]) / 2)}, "hamming": {"threshold": 0}}
    index_lib.write_index_manifest(str(index), manifest)
    svc = Service(
        "--index",
        str(index),
        "--model",
        catalog["model"],
        "--workers",
        "2",
        "--queue",
        "4",
        "--max-body-bytes",
        str(MAX_BODY),
        "--max-k",
        "12",
    )
    yield svc
    status, out = svc.stop(signal.SIGTERM)
    assert status == 0 and out.rstrip().endswith("Stopped (SIGTERM)."), out
