"""Faults of python -m pipelines.build_tfrecords: each test creates its fault and checks nothing else was lost."""
import os

import pytest

from pipelines import build_tfrecords
from tests import fixtures as fx
from tfmetric.data import manifest as manifest_lib
from tests.pipelines.test_build_tfrecords import convert, read_shards
from tfmetric.data import schema


def test_non_utf8_file_name_is_skipped_counted_and_named(tmp_path):
    raw = fx.make_imagefolder(str(tmp_path / "raw"), {"a": 2, "b": 2, "c": 2, "d": 2})
    bad = os.path.join(os.fsencode(raw), b"a", b"caf\xe9.jpg")  # Latin-1, not UTF-8
    with open(bad, "wb") as f:
        f.write(fx.jpeg_bytes())

    manifest, _ = convert("imagefolder", raw, tmp_path / "data")

    skipped = [s for split in manifest["splits"].values() for s in split["skipped"]]
    assert [(s["reason"], s["path"]) for s in skipped] == [
        ("bad_file_name", os.path.join(raw, "a", "caf\\xe9.jpg"))]
    assert "not valid UTF-8" in skipped[0]["detail"]
    assert manifest["skipped_by_reason"] == {"bad_file_name": 1}
    ids = {r[schema.IMAGE_ID].decode() for split in ("train", "test")
           for shard in read_shards(tmp_path / "data", "imagefolder", split).values() for r in shard}
    assert ids == {f"{c}/img_{k}.jpg" for c in "abcd" for k in range(2)}  # every good image written
