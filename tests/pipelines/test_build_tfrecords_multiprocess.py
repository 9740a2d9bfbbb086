"""build_tfrecords on the multi-process DirectRunner gives the same bytes as in-process (slow)."""

import os

import pytest

from tests import fixtures as fx
from tests.pipelines.test_build_tfrecords import all_files, convert
from tfmetric import datasets

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_multi_processing_direct_runner_matches_in_process(tmp_path, monkeypatch):
    # The SDK worker processes import pipelines.* by name, like remote workers do.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    raw = fx.make_inshop(str(tmp_path / "raw"))
    fx.write_bytes(os.path.join(raw, "img/WOMEN/Dresses/id_00000001/01_1_train.jpg"), fx.truncated_jpeg_bytes())
    manifest, _ = convert(
        "inshop",
        raw,
        tmp_path / "multi",
        "--num-shards",
        "2",
        "--direct_num_workers",
        "2",
        "--direct_running_mode",
        "multi_processing",
    )
    convert("inshop", raw, tmp_path / "single", "--num-shards", "2")

    assert manifest["splits"]["train"]["num_images"] == 4
    assert [s["reason"] for s in manifest["splits"]["train"]["skipped"]] == ["truncated"]
    multi = all_files(datasets.tfrecord_dir(str(tmp_path / "multi"), "inshop"))
    single = all_files(datasets.tfrecord_dir(str(tmp_path / "single"), "inshop"))
    multi.pop("manifest.json"), single.pop("manifest.json")  # they differ in --data-dir only
    assert multi == single and len(multi) == 6
