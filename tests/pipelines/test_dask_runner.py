"""Both Beam jobs on Beam's DaskRunner over a local 2-process dask.distributed cluster give what
the in-process FnApiRunner gives, byte for byte (slow: starts a cluster)."""

import json
import os

import numpy as np
import pytest

from tests import fixtures as fx
from tests.pipelines.dask_cluster import dask_address  # noqa: F401 (a fixture)
from tests.pipelines.test_build_tfrecords import all_files, convert
from tests.pipelines.test_embed_catalog import BAD, dead_letter, embed, make_folder
from tests.tfmetric.search.test_query import tiny_model
from tfmetric import datasets

pytestmark = pytest.mark.slow


def _without_data_dir(manifest):
    manifest = json.loads(json.dumps(manifest))
    manifest["arguments"].pop("data_dir")
    return manifest


@pytest.mark.parametrize("runner", ["DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner"])
def test_build_tfrecords_on_dask_matches_fnapi(tmp_path, dask_address, runner):  # noqa: F811
    raw = fx.make_inshop(str(tmp_path / "raw"))
    fx.write_bytes(os.path.join(raw, "img/WOMEN/Dresses/id_00000001/01_1_train.jpg"), fx.truncated_jpeg_bytes())
    dask_manifest, _ = convert(
        "inshop",
        raw,
        tmp_path / "dask",
        "--num-shards",
        "2",
        "--runner",
        runner,
        "--dask_client_address",
        dask_address,
        "--dask_npartitions",
        "2",
    )
    local_manifest, _ = convert("inshop", raw, tmp_path / "local", "--num-shards", "2")

    assert [s["reason"] for s in dask_manifest["splits"]["train"]["skipped"]] == ["truncated"]
    assert _without_data_dir(dask_manifest) == _without_data_dir(local_manifest)
    on_dask = all_files(datasets.tfrecord_dir(str(tmp_path / "dask"), "inshop"))
    local = all_files(datasets.tfrecord_dir(str(tmp_path / "local"), "inshop"))
    on_dask.pop("manifest.json"), local.pop("manifest.json")
    assert on_dask == local and len(on_dask) == 6


def test_embed_catalog_on_dask_matches_fnapi(tmp_path, tmp_path_factory, dask_address):  # noqa: F811
    model_dir = tiny_model(tmp_path_factory)
    good = make_folder(str(tmp_path / "images"))
    pattern = str(tmp_path / "images") + "/**"
    _, on_dask, dask_catalog = embed(
        tmp_path / "dask",
        "--model",
        model_dir,
        "--input",
        pattern,
        "--batch-size",
        "3",
        "--runner",
        "DaskRunner",
        "--dask_client_address",
        dask_address,
        "--dask_npartitions",
        "2",
    )
    _, local, local_catalog = embed(tmp_path / "local", "--model", model_dir, "--input", pattern, "--batch-size", "3")

    assert sorted(dask_catalog.ids) == sorted(good) and len(set(dask_catalog.ids)) == len(good)
    a, b = np.argsort(dask_catalog.ids), np.argsort(local_catalog.ids)
    np.testing.assert_allclose(dask_catalog.embeddings[a], local_catalog.embeddings[b], atol=1e-6)
    np.testing.assert_array_equal(dask_catalog.bits[a], local_catalog.bits[b])
    assert (
        dead_letter(str(tmp_path / "dask"))
        == dead_letter(str(tmp_path / "local"))
        == {image_id: reason for image_id, (_, reason) in BAD.items()}
    )
    for manifest in (on_dask, local):  # shard names and counts are the runner's to choose
        manifest.pop("files"), manifest.pop("dead_letter"), manifest.pop("created")
    assert on_dask == local
    assert not [n for n in os.listdir(tmp_path / "dask") if n.startswith(("_", "beam-temp"))]
