"""manifest.json: atomic writes, validation, completeness, shard paths."""

import json
import os

import pytest

from tests import fixtures as fx
from tfmetric.data import manifest as manifest_lib
from tfmetric.data.schema import SCHEMA_VERSION
from tfmetric.datasets import DatasetNotFoundError, tfrecord_dir


def sample_manifest():
    shards = [{"path": f"train/train-0000{i}-of-00002.tfrecord", "num_images": 3, "num_classes": 1} for i in range(2)]
    return {
        "schema_version": SCHEMA_VERSION,
        "dataset": "cub200",
        "splits": {
            "train": {"num_images": 6, "num_classes": 2, "shards": shards, "skipped": []},
            "test": {
                "num_images": 0,
                "num_classes": 0,
                "shards": [],
                "skipped": [{"image_id": "x.jpg", "path": "/raw/x.jpg", "reason": "missing"}],
            },
        },
    }


@pytest.fixture
def complete_dir(tmp_path):
    directory = tfrecord_dir(str(tmp_path), "cub200")
    for i in range(2):
        fx.write_bytes(os.path.join(directory, "train", f"train-0000{i}-of-00002.tfrecord"), b"")
    manifest_lib.write_manifest(directory, sample_manifest())
    return directory


def test_write_is_atomic_and_round_trips(complete_dir):
    assert sorted(os.listdir(complete_dir)) == ["manifest.json", "train"]  # no temp file left
    assert manifest_lib.read_manifest(complete_dir) == sample_manifest()
    assert manifest_lib.is_complete(complete_dir)


def test_load_manifest_and_shard_paths(tmp_path, complete_dir):
    manifest = manifest_lib.load_manifest(str(tmp_path), "cub200")
    assert manifest["dataset"] == "cub200"
    paths = manifest_lib.shard_paths(str(tmp_path), "cub200", "train")
    assert paths == [os.path.join(complete_dir, "train", f"train-0000{i}-of-00002.tfrecord") for i in range(2)]
    assert manifest_lib.shard_paths(str(tmp_path), "cub200", "test", manifest) == []
    with pytest.raises(ValueError, match="Allowed values: train, test"):
        manifest_lib.shard_paths(str(tmp_path), "cub200", "val", manifest)


def test_missing_manifest_means_incomplete(tmp_path, complete_dir):
    os.remove(manifest_lib.manifest_path(complete_dir))
    assert not manifest_lib.is_complete(complete_dir)
    with pytest.raises(DatasetNotFoundError, match="incomplete"):
        manifest_lib.load_manifest(str(tmp_path), "cub200")


def test_missing_shard_is_invalid(tmp_path, complete_dir):
    os.remove(os.path.join(complete_dir, "train", "train-00001-of-00002.tfrecord"))
    assert not manifest_lib.is_complete(complete_dir)
    with pytest.raises(manifest_lib.ManifestError, match="train-00001-of-00002.tfrecord is missing"):
        manifest_lib.load_manifest(str(tmp_path), "cub200")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(schema_version=SCHEMA_VERSION + 1), "schema_version"),
        (lambda m: m.update(splits={}), "splits"),
        (lambda m: m["splits"]["train"].pop("skipped"), "lacks skipped"),
        (lambda m: m["splits"]["train"].update(num_images=7), "shards hold 6"),
        (
            lambda m: m["splits"]["train"]["shards"][1].update(class_runs=[[1, 2]]),
            "class_runs describe 1 classes and 2 records, not 1 and 3",
        ),
        (
            lambda m: m["splits"]["train"]["shards"][0].update(class_runs=[[0, 1], [1, 2]]),
            "class_runs describe 2 classes and 3 records, not 1 and 3",
        ),
    ],
)
def test_validation_names_the_problem(change, message):
    manifest = sample_manifest()
    change(manifest)
    with pytest.raises(manifest_lib.ManifestError, match=message):
        manifest_lib.validate_manifest(manifest)


def test_unreadable_manifest(tmp_path):
    fx.write_bytes(os.path.join(tmp_path, "manifest.json"), b"{not json")
    with pytest.raises(manifest_lib.ManifestError, match="not valid JSON"):
        manifest_lib.read_manifest(str(tmp_path))
    fx.write_bytes(os.path.join(tmp_path, "manifest.json"), json.dumps([1]).encode())
    with pytest.raises(manifest_lib.ManifestError, match="JSON object"):
        manifest_lib.read_manifest(str(tmp_path))
