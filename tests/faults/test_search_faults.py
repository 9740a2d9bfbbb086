"""Truncated search artifacts: a SavedModel's variables and an index.faiss, each named with what to do."""

import os
import shutil

import faiss
import numpy as np
import pytest

from tests.tfmetric.search.test_query import tiny_model
from tfmetric.search import kinds
from tfmetric.search.embedder import SavedModelEmbedder


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return len(data)


def test_truncated_saved_model_variables_name_the_model(tmp_path_factory):
    model_dir = tiny_model(tmp_path_factory)
    cut = str(tmp_path_factory.mktemp("cut") / "1")
    shutil.copytree(model_dir, cut)
    variables = os.path.join(cut, "variables")
    _truncate(os.path.join(variables, next(n for n in os.listdir(variables) if n.startswith("variables.data"))))
    with pytest.raises(
        ValueError, match=f"The SavedModel cannot be loaded .*export it again. Received: model_dir={cut}"
    ):
        SavedModelEmbedder(cut)
    assert SavedModelEmbedder(model_dir).signature == "serving_default"  # the intact original still loads


def test_truncated_index_faiss_names_the_file(tmp_path):
    path = str(tmp_path / "index.faiss")
    index = faiss.IndexFlatIP(8)
    index.add(np.random.default_rng(0).random((10, 8), dtype=np.float32))
    faiss.write_index(index, path)
    size = _truncate(path)
    with pytest.raises(
        ValueError, match=f"{path} cannot be read as a faiss index .*rebuild it with python -m tfmetric.search build"
    ):
        kinds.read("flat", path)
    assert os.path.getsize(path) == size // 2
