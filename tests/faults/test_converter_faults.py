"""Faults of python -m pipelines.build_tfrecords: each test creates its fault and checks nothing else was lost."""

import os

import pytest

from pipelines import build_tfrecords
from tests import fixtures as fx
from tests.pipelines.test_build_tfrecords import convert, read_shards
from tfmetric.data import manifest as manifest_lib
from tfmetric.data import schema


def test_non_utf8_file_name_is_skipped_counted_and_named(tmp_path):
    raw = fx.make_imagefolder(str(tmp_path / "raw"), {"a": 2, "b": 2, "c": 2, "d": 2})
    bad = os.path.join(os.fsencode(raw), b"a", b"caf\xe9.jpg")  # Latin-1, not UTF-8
    with open(bad, "wb") as f:
        f.write(fx.jpeg_bytes())

    manifest, _ = convert("imagefolder", raw, tmp_path / "data")

    skipped = [s for split in manifest["splits"].values() for s in split["skipped"]]
    assert [(s["reason"], s["path"]) for s in skipped] == [("bad_file_name", os.path.join(raw, "a", "caf\\xe9.jpg"))]
    assert "not valid UTF-8" in skipped[0]["detail"]
    assert manifest["skipped_by_reason"] == {"bad_file_name": 1}
    ids = {
        r[schema.IMAGE_ID].decode()
        for split in ("train", "test")
        for shard in read_shards(tmp_path / "data", "imagefolder", split).values()
        for r in shard
    }
    assert ids == {f"{c}/img_{k}.jpg" for c in "abcd" for k in range(2)}  # every good image written


def test_truncated_shard_behind_a_valid_manifest_is_found_before_work(tmp_path):
    raw = fx.make_imagefolder(str(tmp_path / "raw"))
    convert("imagefolder", raw, tmp_path / "data")
    shards = manifest_lib.shard_paths(str(tmp_path / "data"), "imagefolder", "train")
    with open(shards[0], "rb") as f:
        data = f.read()
    with open(shards[0], "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(manifest_lib.ManifestError) as e:
        manifest_lib.load_manifest(str(tmp_path / "data"), "imagefolder")
    assert f"shard {shards[0]} is {len(data) // 2} bytes but was written with {len(data)}" in str(e.value)
    # The intact test shards and the raw images are untouched.
    assert os.path.exists(manifest_lib.manifest_path(os.path.dirname(os.path.dirname(shards[0]))))
    assert sorted(os.listdir(os.path.join(raw, "apple"))) == ["img_0.jpg", "img_1.jpg"]


def test_mistyped_converter_flag_is_refused_not_ignored(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        build_tfrecords.parse_args(["--dataset", "digits", "--numshards", "3"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[0]  # the error comes first, the usage after
    assert "unrecognized argument --numshards (did you mean --num-shards?)" in err
    args, beam_args = build_tfrecords.parse_args(["--dataset", "digits", "--direct_num_workers", "2"])
    assert beam_args == ["--direct_num_workers", "2"]  # real Beam options still pass through
    # The DaskRunner's own options are known too (registered on demand).
    _, beam_args = build_tfrecords.parse_args(
        ["--dataset", "digits", "--runner", "DaskRunner", "--dask_client_address", "tcp://127.0.0.1:8786"]
    )
    assert beam_args == ["--runner", "DaskRunner", "--dask_client_address", "tcp://127.0.0.1:8786"]
