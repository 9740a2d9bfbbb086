"""embed_catalog over generated images, TFRecords and a CSV manifest: one row per good input with
the SavedModel's own outputs, every bad input in the dead letter with its reason; the same on the
multi-process DirectRunner."""

import glob
import json
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from pipelines import embed_catalog
from pipelines import embed_transforms as transforms
from tests import fixtures as fx
from tests.tfmetric.search.test_query import DIM, tiny_model
from tfmetric.data import image_header, schema
from tfmetric.search import Neighbour, image_source, plot_neighbours, read_catalog
from tfmetric.search import catalog as catalog_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The model's max_pixels is 64 * 64: an 80 x 80 image passes a looser pre-check but not the model.
BAD = {
    "truncated.jpg": (fx.truncated_jpeg_bytes(), "truncated"),
    "empty.jpg": (b"", "empty"),
    "notes.jpg": (b"just some text", "unsupported_format"),
    "huge.jpg": (fx.jpeg_bytes((80, 80)), "too_many_pixels"),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def signatures(model_dir):
    return tf.saved_model.load(model_dir).signatures


def make_folder(root):
    """{id: encoded} of the good images (JPEG, PNG, a GIF that gets re-encoded) in ``root`` and a
    sub-folder, plus the BAD ones."""
    good = {}
    for i in range(9):
        data = fx.noise_jpeg_bytes((36 + 4 * i, 32), seed=i) if i % 3 else fx.png_bytes((33, 40), fx.color(i))
        good[f"{'sub/' if i % 2 else ''}img{i}.{'jpg' if i % 3 else 'png'}"] = data
    good["anim.gif"] = fx.image_bytes("GIF", (32, 32), (10, 200, 30))
    for image_id, data in {**good, **{k: v for k, (v, _) in BAD.items()}}.items():
        fx.write_bytes(os.path.join(root, image_id), data)
    return good


def direct(signatures, encoded, name="serving_default", output="embedding"):
    """The SavedModel called directly, one image per request."""
    return np.concatenate([signatures[name](image_bytes=tf.constant([e]))[output].numpy() for e in encoded])


def embed(out, *argv):
    result, manifest = embed_catalog.run(["--output-dir", str(out), *argv])
    return result, manifest, read_catalog(str(out))


def counter(result, name):
    return sum(c.committed for c in result.metrics().query(MetricsFilter().with_name(name))["counters"])


def dead_letter(out):
    entries = []
    for path in glob.glob(os.path.join(out, "dead_letter-*.jsonl")):
        with open(path) as f:
            entries += [json.loads(line) for line in f if line.strip()]
    return {e["id"]: e["reason"] for e in entries}


def test_image_folder(tmp_path, model_dir, signatures):
    good = make_folder(str(tmp_path / "images"))
    out = tmp_path / "out"
    result, manifest, cat = embed(
        out, "--model", model_dir, "--input", str(tmp_path / "images") + "/**", "--batch-size", "3"
    )

    assert sorted(cat.ids) == sorted(good) and len(set(cat.ids)) == len(cat.ids)
    assert set(cat.sources) == {str(tmp_path / "images" / i) for i in good}
    order = np.argsort(cat.ids)
    ids = list(cat.ids[order])
    encoded = [good[i] if not i.endswith(".gif") else _reencoded(good[i]) for i in ids]
    np.testing.assert_allclose(cat.embeddings[order], direct(signatures, encoded), atol=1e-5)
    np.testing.assert_array_equal(cat.bits, np.packbits(cat.embeddings > 0, axis=-1))
    assert cat.bits.shape == (len(good), 2)

    expected_failed = {image_id: reason for image_id, (_, reason) in BAD.items()}
    assert dead_letter(str(out)) == expected_failed
    assert {f["id"]: f["reason"] for f in manifest["failed"]} == expected_failed
    assert manifest["count"] == len(good) and manifest["num_failed"] == len(BAD)
    assert manifest["dimension"] == DIM and manifest["has_float"] and manifest["duplicate_ids"] == []
    assert manifest["model"]["name"] == "tiny" and manifest["model"]["version"] == 1
    assert manifest["model"]["path"] == model_dir and manifest["model"]["saved_model_checksum"]
    assert manifest["input"] == {"pattern": str(tmp_path / "images") + "/**", "format": "images"}
    assert counter(result, "images_embedded") == len(good) and counter(result, "images_reencoded") == 1
    assert counter(result, "failed_truncated") == 1 and counter(result, "failed_too_many_pixels") == 1
    assert "catalog.json" in os.listdir(out) and "manifest.json" not in os.listdir(out)  # the catalog manifest
    assert not [name for name in os.listdir(out) if name.startswith(("_", "beam-temp"))]


def _reencoded(data):
    return image_header.inspect_image(data).encoded


def test_bad_image_inside_a_batch_fails_alone(model_dir, signatures):
    """An image the pre-check lets through but the model rejects costs only itself, not its batch."""
    good = [fx.noise_jpeg_bytes((40, 32), seed=i) for i in range(3)]
    inputs = [transforms.ImageInput(f"g{i}", None, data) for i, data in enumerate(good)]
    inputs.insert(1, transforms.ImageInput("too-big-for-the-model", None, fx.jpeg_bytes((80, 80))))
    handler = transforms.SavedModelHandler(model_dir, batch_size=4)
    expected = direct(signatures, good)

    def check(rows):
        rows = sorted(rows, key=lambda r: r["id"])
        assert [r["id"] for r in rows] == ["g0", "g1", "g2"]
        np.testing.assert_allclose(np.stack([r["embedding"] for r in rows]), expected, atol=1e-5)

    with BeamTestPipeline(runner="FnApiRunner") as p:
        embedded = (
            p | beam.Create(inputs) | transforms.EmbedImages(handler, max_pixels=100_000)
        )  # looser than the model's
        assert_that(embedded["rows"], check, label="rows")
        assert_that(
            embedded["failed"] | "Reason" >> beam.Map(lambda f: (f["id"], f["reason"])),
            equal_to([("too-big-for-the-model", "model_rejected")]),
            label="failed",
        )


def test_tfrecord_input(tmp_path, model_dir, signatures):
    images = {f"cls/{i}": fx.noise_jpeg_bytes((40, 40), seed=10 + i) for i in range(4)}
    path = str(tmp_path / "catalog-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i, (image_id, data) in enumerate(images.items()):
            writer.write(schema.serialize_example(data, "jpeg", 40, 40, i, "c", image_id))
        writer.write(schema.serialize_example(fx.truncated_jpeg_bytes(), "jpeg", 64, 64, 0, "c", "cls/bad"))
        writer.write(b"not a tf.train.Example")
    _, manifest, cat = embed(tmp_path / "out", "--model", model_dir, "--input", path, "--batch-size", "2")
    assert manifest["input"]["format"] == "tfrecord" and sorted(cat.ids) == sorted(images)
    offsets = [offset for offset, _ in image_source.iter_records(path)]
    assert sorted(cat.sources, key=lambda s: int(s.rsplit("=", 1)[1])) == [
        f"{path}#offset={o}" for o in offsets[:4]
    ]  # the 4 good records, each located in its file
    for image_id, source in zip(cat.ids, cat.sources):
        assert image_source.read_image_bytes(source) == images[image_id]
    order = np.argsort(cat.ids)
    np.testing.assert_allclose(
        cat.embeddings[order], direct(signatures, [images[i] for i in sorted(images)]), atol=1e-5
    )
    assert sorted(f["reason"] for f in manifest["failed"]) == ["bad_record", "truncated"]
    assert {f["source"] for f in manifest["failed"]} == {f"{path}#offset={o}" for o in offsets[4:]}


def test_search_plot_of_a_tfrecord_catalog_shows_the_real_images(tmp_path, model_dir):
    """--plot of a catalog embedded from TFRecords draws the records' images: pixel for pixel the
    picture of the same catalog embedded from image files, and not the grey placeholders."""
    images = {f"item-{i}": fx.noise_jpeg_bytes((40, 40), seed=30 + i) for i in range(3)}
    path = str(tmp_path / "catalog-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i, (image_id, data) in enumerate(images.items()):
            writer.write(schema.serialize_example(data, "jpeg", 40, 40, i, "c", image_id))
    _, _, cat = embed(tmp_path / "out", "--model", model_dir, "--input", path)
    files = {i: fx.write_bytes(str(tmp_path / "files" / f"{i}.jpg"), data) for i, data in images.items()}
    query = images["item-0"]

    def picture(sources, name):
        neighbours = [Neighbour(rank + 1, i, 0.5, sources[i]) for rank, i in enumerate(sorted(images))]
        return np.asarray(Image.open(plot_neighbours(query, neighbours, str(tmp_path / name))))

    from_records = picture(dict(zip(cat.ids, cat.sources)), "records.png")
    np.testing.assert_array_equal(from_records, picture(files, "files.png"))
    assert np.abs(from_records.astype(int) - picture(dict.fromkeys(images), "grey.png")).max() > 100


def test_csv_manifest_input(tmp_path, model_dir):
    a = fx.write_bytes(str(tmp_path / "pics" / "a.jpg"), fx.noise_jpeg_bytes(seed=1))
    fx.write_bytes(str(tmp_path / "lists" / "rel" / "b.png"), fx.png_bytes((40, 40)))
    fx.write_text(
        str(tmp_path / "lists" / "catalog.csv"),
        ["id,path", f"sku-1,{a}", "sku-2,rel/b.png", "", "sku-3,rel/missing.jpg", "no-path-here", '"sku,4",rel/b.png'],
    )
    # Also the model served to the workers from one process (Beam's multi_process_shared).
    _, manifest, cat = embed(
        tmp_path / "out",
        "--model",
        model_dir,
        "--input",
        str(tmp_path / "lists" / "*.csv"),
        "--share-model-across-processes",
    )
    assert manifest["input"]["format"] == "csv"
    assert sorted(cat.ids) == ["sku,4", "sku-1", "sku-2"]
    assert dict(zip(cat.ids, cat.sources))["sku-2"] == str(tmp_path / "lists" / "rel" / "b.png")
    assert {f["id"]: f["reason"] for f in manifest["failed"]} == {
        "sku-3": "missing",
        "no-path-here": "bad_manifest_line",
    }


def test_input_format_names():
    assert [
        embed_catalog.input_format(p)
        for p in ("/in/list.CSV", "/in/list.txt", "/in/a.tfrecord-00000-of-00002", "gs://b/imgs/**")
    ] == ["csv", "csv", "tfrecord", "images"]
    assert embed_catalog.input_format("/in/list.dat", "manifest") == "csv"  # the old name still works
    args, _ = embed_catalog.parse_args(
        ["--model", "m", "--input", "i", "--output-dir", "o", "--input-format", "manifest"]
    )
    assert embed_catalog.input_format(args.input, args.input_format) == "csv"


def test_binary_signature_and_duplicate_ids(tmp_path, model_dir, signatures):
    data = [fx.noise_jpeg_bytes((40, 32), seed=i) for i in range(3)]
    paths = [fx.write_bytes(str(tmp_path / f"{i}.jpg"), d) for i, d in enumerate(data)]
    fx.write_text(str(tmp_path / "list.txt"), [f"x,{paths[0]}", f"y,{paths[1]}", f"y,{paths[2]}"])
    _, manifest, cat = embed(
        tmp_path / "out", "--model", model_dir, "--input", str(tmp_path / "list.txt"), "--signature", "serving_binary"
    )
    assert not manifest["has_float"] and cat.embeddings is None
    assert catalog_lib.EMBEDDING not in manifest["columns"] and manifest["signature"] == "serving_binary"
    assert manifest["duplicate_ids"] == ["y"] and manifest["count"] == 3
    by_source = dict(zip(cat.sources, cat.bits))
    expected = direct(signatures, data, "serving_binary", "embedding_bits")
    np.testing.assert_array_equal(np.stack([by_source[p] for p in paths]), expected)
    np.testing.assert_array_equal(expected, np.packbits(direct(signatures, data) > 0, axis=-1))


def test_user_errors(tmp_path, model_dir, capsys):
    with pytest.raises(FileNotFoundError, match="matches no files"):
        embed_catalog.run(["--model", model_dir, "--input", str(tmp_path / "*.jpg"), "--output-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        embed_catalog.main(["--model", str(tmp_path / "nope"), "--input", "x", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.splitlines() == [err] and "no saved_model.pb" in err
    with pytest.raises(SystemExit):
        embed_catalog.parse_args(["--model", "m", "--input", "i", "--output-dir", "o", "--batch-size", "0"])


@pytest.mark.slow
def test_multi_processing_direct_runner(tmp_path, model_dir, monkeypatch):
    # The SDK worker processes import pipelines.* by name, like remote workers do.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    good = make_folder(str(tmp_path / "images"))
    pattern = str(tmp_path / "images") + "/**"
    _, manifest, multi = embed(
        tmp_path / "multi",
        "--model",
        model_dir,
        "--input",
        pattern,
        "--batch-size",
        "3",
        "--direct_num_workers",
        "2",
        "--direct_running_mode",
        "multi_processing",
        "--threads",
        "1",
    )
    _, _, single = embed(tmp_path / "single", "--model", model_dir, "--input", pattern, "--batch-size", "3")
    assert sorted(multi.ids) == sorted(good) and len(set(multi.ids)) == len(good)
    assert dead_letter(str(tmp_path / "multi")) == {i: reason for i, (_, reason) in BAD.items()}
    a, b = np.argsort(multi.ids), np.argsort(single.ids)
    np.testing.assert_allclose(multi.embeddings[a], single.embeddings[b], atol=1e-6)
    np.testing.assert_array_equal(multi.bits[a], single.bits[b])
