"""Faults of python -m pipelines.embed_catalog: a truncated TFRecord input, a finished output dir."""

import os

import pytest
import tensorflow as tf

from pipelines import embed_catalog
from tests import fixtures as fx
from tests.pipelines.test_embed_catalog import dead_letter, embed
from tests.tfmetric.search.test_query import tiny_model
from tfmetric.data import schema


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory)


def _write_tfrecord(path, ids):
    with tf.io.TFRecordWriter(path) as writer:
        for i, image_id in enumerate(ids):
            writer.write(
                schema.serialize_example(fx.noise_jpeg_bytes((40, 40), seed=i), "jpeg", 40, 40, i, "c", image_id)
            )


def test_truncated_tfrecord_goes_to_the_dead_letter_and_the_rest_is_embedded(tmp_path, model_dir):
    intact, cut = str(tmp_path / "in-00000-of-00002.tfrecord"), str(tmp_path / "in-00001-of-00002.tfrecord")
    _write_tfrecord(intact, ["a/0", "a/1", "a/2"])
    _write_tfrecord(cut, ["b/0", "b/1", "b/2"])
    with open(cut, "rb") as f:
        data = f.read()
    with open(cut, "wb") as f:
        f.write(data[: len(data) * 3 // 4])  # the third record is cut in half

    _, manifest, cat = embed(tmp_path / "out", "--model", model_dir, "--input", str(tmp_path / "in-*.tfrecord"))

    assert sorted(cat.ids) == ["a/0", "a/1", "a/2", "b/0", "b/1"]  # nothing before the cut is lost
    assert dead_letter(str(tmp_path / "out")) == {cut: "truncated_tfrecord"}
    (failure,) = manifest["failed"]
    assert failure["source"] == cut and "the 2 records before it were read" in failure["detail"]


def test_finished_output_is_not_replaced_without_overwrite(tmp_path, model_dir):
    _write_tfrecord(str(tmp_path / "in.tfrecord"), ["a/0", "a/1"])
    args = ["--model", model_dir, "--input", str(tmp_path / "in.tfrecord")]
    out = tmp_path / "out"
    embed(out, *args)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    with pytest.raises(ValueError, match=f"--output-dir {out} holds a finished catalog .*pass --overwrite"):
        embed_catalog.run(["--output-dir", str(out), *args])
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    _, manifest, cat = embed(out, *args, "--overwrite")
    assert sorted(cat.ids) == ["a/0", "a/1"] and manifest["count"] == 2
