"""build_tfrecords on tiny fakes of each published layout: counts, labels, class grouping, manifest."""

import collections
import os
import types

import numpy as np
import pytest
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from pipelines import build_tfrecords
from tests import fixtures as fx
from tfmetric import datasets
from tfmetric.data import manifest as manifest_lib
from tfmetric.data import schema
from tfmetric.data.class_index import ClassIndex
from tfmetric.data.tfrecord_source import TFRecordSource
from tfmetric.datasets.base import ImageRecord

FAKES = {
    "cars196": fx.make_cars196,
    "cub200": fx.make_cub200,
    "sop": fx.make_sop,
    "inshop": fx.make_inshop,
    "imagefolder": fx.make_imagefolder,
}


def convert(dataset, raw, data, *extra, test_pipeline=None):
    argv = ["--dataset", dataset, "--data-dir", str(data), *extra]
    if raw is not None:
        argv += ["--raw-dir", str(raw)]
    result = build_tfrecords.run(argv, test_pipeline=test_pipeline)
    return manifest_lib.load_manifest(str(data), dataset), result


def read_shards(data, dataset, split):
    """{shard path: [feature dict of each record]} in file order."""
    shards = {}
    for path in manifest_lib.shard_paths(str(data), dataset, split):
        records = []
        for features in tf.data.TFRecordDataset(path).map(schema.parse_example):
            records.append({k: v.numpy() for k, v in features.items()})
        shards[path] = records
    return shards


def counter(result, name):
    found = result.metrics().query(MetricsFilter().with_name(name))["counters"]
    return sum(c.committed for c in found)


def all_files(directory):
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), directory)] = f.read()
    return out


@pytest.mark.parametrize("dataset", sorted(FAKES))
def test_converts_published_layout(tmp_path, dataset):
    raw = FAKES[dataset](str(tmp_path / "raw"))
    expected = datasets.get_dataset(dataset).load(raw)
    manifest, result = convert(dataset, raw, tmp_path / "data", "--num-shards", "2")

    module = datasets.get_dataset(dataset)
    assert manifest["schema_version"] == schema.SCHEMA_VERSION
    assert manifest["dataset"] == dataset and set(manifest["splits"]) == set(module.SPLITS)
    assert (manifest["train_split"], manifest["query_split"], manifest["gallery_split"]) == (
        module.TRAIN_SPLIT,
        module.QUERY_SPLIT,
        module.GALLERY_SPLIT,
    )
    assert manifest["num_skipped"] == 0 and manifest["fingerprint"].startswith("sha256:")
    assert manifest["arguments"]["raw_dir"] == raw and manifest["arguments"]["num_shards"] == 2
    assert counter(result, "images_written") == sum(len(r) for r in expected.values())

    names_to_labels = {}
    for split, records in expected.items():
        info = manifest["splits"][split]
        shards = read_shards(tmp_path / "data", dataset, split)
        classes = {r.class_name for r in records}
        assert info["num_images"] == info["num_listed"] == len(records)
        assert info["num_classes"] == len(classes)
        assert len(shards) == len(info["shards"]) == min(2, len(classes))
        for shard, entry in zip(shards, info["shards"]):
            assert shard.endswith(entry["path"])
            assert f"-of-{len(shards):05d}.tfrecord" in entry["path"]
            assert entry["num_images"] == len(shards[shard])
        # Every class lives in exactly one shard, and records are sorted by (label, id).
        shard_of = {}
        for shard, rows in shards.items():
            keys = [(int(r[schema.LABEL]), r[schema.IMAGE_ID]) for r in rows]
            assert keys == sorted(keys)
            for row in rows:
                assert shard_of.setdefault(int(row[schema.LABEL]), shard) == shard
        rows = [row for shard_rows in shards.values() for row in shard_rows]
        assert sorted(shard_of) == list(range(len(classes)))  # contiguous 0..C-1
        by_id = {r.image_id: r for r in records}
        assert sorted(row[schema.IMAGE_ID].decode() for row in rows) == sorted(by_id)
        for row in rows:
            record = by_id[row[schema.IMAGE_ID].decode()]
            assert int(row[schema.LABEL]) == record.label
            assert row[schema.CLASS_NAME].decode() == record.class_name
            assert row[schema.ENCODED] == record.read_bytes()  # original bytes kept
            assert row[schema.FORMAT] == b"jpeg"
            assert (row[schema.HEIGHT], row[schema.WIDTH]) == (32, 32)
            names_to_labels.setdefault((split != module.TRAIN_SPLIT, record.class_name), set()).add(record.label)
    # One label per class, across query and gallery too (In-Shop's shared label space).
    assert all(len(labels) == 1 for labels in names_to_labels.values())


def test_bad_images_are_counted_reported_and_skipped(tmp_path):
    raw = fx.make_imagefolder(str(tmp_path / "raw"), {"a": 3, "b": 2, "c": 2, "d": 2})
    bad = {
        "a/img_1.jpg": ("truncated", fx.truncated_jpeg_bytes()),
        "a/img_2.jpg": ("empty", b""),
        "c/img_0.jpg": ("corrupt", fx.corrupt_jpeg_bytes()),
        "c/notes.jpg": ("unsupported_format", b"these are not pixels\n"),
        "d/img_0.jpg": ("too_many_pixels", fx.jpeg_claiming_size(60000, 60000)),
    }
    for rel, (_, data) in bad.items():
        fx.write_bytes(os.path.join(raw, rel), data)
    fx.write_bytes(os.path.join(raw, "b", "anim.gif"), fx.image_bytes("GIF", (20, 10)))
    fx.write_png(os.path.join(raw, "d", "img_2.png"), size=(16, 8))

    manifest, result = convert("imagefolder", raw, tmp_path / "data")

    skipped = {s["image_id"]: s for split in manifest["splits"].values() for s in split["skipped"]}
    expected_reasons = {rel: reason for rel, (reason, _) in bad.items()}
    assert {k: s["reason"] for k, s in skipped.items()} == expected_reasons
    assert skipped["a/img_1.jpg"]["path"] == os.path.join(raw, "a", "img_1.jpg")
    assert "truncated" in skipped["a/img_1.jpg"]["detail"]
    assert manifest["num_skipped"] == len(expected_reasons)
    assert manifest["skipped_by_reason"] == dict(collections.Counter(expected_reasons.values()))
    assert counter(result, "images_read") == 12
    assert counter(result, "skipped_truncated") == 1 and counter(result, "skipped_empty") == 1
    assert counter(result, "images_reencoded") == 1
    assert counter(result, "images_written") == 12 - len(expected_reasons)

    rows = {
        r[schema.IMAGE_ID].decode(): r
        for split in ("train", "test")
        for shard in read_shards(tmp_path / "data", "imagefolder", split).values()
        for r in shard
    }
    assert set(rows) == {
        "a/img_0.jpg",
        "b/anim.gif",
        "b/img_0.jpg",
        "b/img_1.jpg",
        "c/img_1.jpg",
        "d/img_1.jpg",
        "d/img_2.png",
    }
    assert rows["b/anim.gif"][schema.FORMAT] == b"jpeg"  # re-encoded
    assert tf.io.decode_jpeg(rows["b/anim.gif"][schema.ENCODED]).shape == (10, 20, 3)
    assert rows["d/img_2.png"][schema.FORMAT] == b"png"
    assert (rows["d/img_2.png"][schema.HEIGHT], rows["d/img_2.png"][schema.WIDTH]) == (8, 16)


def test_class_without_good_images_leaves_labels_contiguous(tmp_path):
    raw = fx.make_imagefolder(str(tmp_path / "raw"), {"a": 2, "b": 2, "c": 2, "x": 1, "y": 1})
    for k in range(2):
        fx.write_bytes(os.path.join(raw, "b", f"img_{k}.jpg"), b"")
    manifest, result = convert("imagefolder", raw, tmp_path / "data", "--num-shards", "5")
    train = manifest["splits"]["train"]
    assert train["empty_classes"] == ["b"]
    assert (train["num_classes"], train["num_images"], len(train["shards"])) == (2, 4, 2)
    rows = [r for shard in read_shards(tmp_path / "data", "imagefolder", "train").values() for r in shard]
    assert {(r[schema.CLASS_NAME], int(r[schema.LABEL])) for r in rows} == {(b"a", 0), (b"c", 1)}
    # c's fragment carries label 2 (b was listed before it): its shard is rewritten, the other copied.
    assert counter(result, "shards_relabelled") == 1 and counter(result, "shards_written") == 4
    source = TFRecordSource.from_manifest(manifest, str(tmp_path / "data"))
    scanned = ClassIndex.scan(source._paths("train"))
    np.testing.assert_array_equal(source.index("train").offsets, scanned.offsets)


def test_each_image_is_read_once_and_no_fragment_outlives_the_job(tmp_path, monkeypatch):
    raw = fx.make_imagefolder(str(tmp_path / "raw"))
    reads = collections.Counter()
    real = build_tfrecords.class_records.ClassReader._read_one

    def counted(record):
        reads[record.image_id] += 1
        return real(record)

    monkeypatch.setattr(build_tfrecords.class_records.ClassReader, "_read_one", staticmethod(counted))
    manifest, result = convert("imagefolder", raw, tmp_path / "data")
    listed = sum(split["num_listed"] for split in manifest["splits"].values())
    assert len(reads) == listed == 9 and set(reads.values()) == {1}
    assert counter(result, "shards_relabelled") == 0
    out = datasets.tfrecord_dir(str(tmp_path / "data"), "imagefolder")
    assert sorted(os.listdir(out)) == ["manifest.json", "test", "train"]
    assert not any(name.startswith("_") for _, _, files in os.walk(out) for name in files)


def test_inshop_query_and_gallery_keep_one_label_map_whatever_is_skipped(tmp_path):
    """Item 2 loses its only query image: the union's map keeps every item's label in both splits."""
    raw = fx.make_inshop(str(tmp_path / "raw"))
    query_images = [
        line.split()[0] for line in open(os.path.join(raw, "list_eval_partition.txt")) if line.strip().endswith("query")
    ]
    fx.write_bytes(os.path.join(raw, next(q for q in query_images if "id_00000002" in q)), b"")
    manifest, _ = convert("inshop", raw, tmp_path / "data", "--num-shards", "2")
    labels = {}
    for split in ("query", "gallery"):
        rows = [r for shard in read_shards(tmp_path / "data", "inshop", split).values() for r in shard]
        labels[split] = {(r[schema.CLASS_NAME].decode(), int(r[schema.LABEL])) for r in rows}
    # Union of test items in id order: 2 -> 0, 4 -> 1, 5 -> 2, in both splits.
    assert labels["query"] == {("id_00000004", 1)}
    assert labels["gallery"] == {("id_00000002", 0), ("id_00000004", 1), ("id_00000005", 2)}
    query = manifest["splits"]["query"]
    assert (query["num_classes"], query["num_labels"], manifest["splits"]["gallery"]["num_labels"]) == (1, 3, 3)
    assert "num_labels" not in manifest["splits"]["train"]
    source = TFRecordSource.from_manifest(manifest, str(tmp_path / "data"))
    assert source.labels("query").tolist() == [1, 1]  # a label space with gaps is readable


def test_class_offsets_are_where_each_class_starts(tmp_path):
    raw = fx.make_sop(str(tmp_path / "raw"))
    manifest, _ = convert("sop", raw, tmp_path / "data", "--num-shards", "2")
    source = TFRecordSource.from_manifest(manifest, str(tmp_path / "data"))
    for split in manifest["splits"]:
        scanned = ClassIndex.scan(source._paths(split))
        np.testing.assert_array_equal(source.index(split).offsets, scanned.offsets)
        np.testing.assert_array_equal(source.index(split).runs, scanned.runs)


def test_rerun_is_byte_identical_and_replaces_the_output(tmp_path):
    raw = fx.make_sop(str(tmp_path / "raw"))
    out = datasets.tfrecord_dir(str(tmp_path / "data"), "sop")
    convert("sop", raw, tmp_path / "data", "--num-shards", "2")
    first = all_files(out)
    convert("sop", raw, tmp_path / "data", "--num-shards", "2")
    assert all_files(out) == first
    assert any(k.endswith(".tfrecord") for k in first) and "manifest.json" in first


def test_runs_on_a_test_pipeline(tmp_path):
    raw = fx.make_cub200(str(tmp_path / "raw"))
    manifest, result = convert("cub200", raw, tmp_path / "data", test_pipeline=BeamTestPipeline(runner="FnApiRunner"))
    assert manifest["splits"]["train"]["num_images"] == 5
    assert counter(result, "images_read") == 10


def test_in_memory_records_are_written(tmp_path, monkeypatch):
    encoded = {"jpeg": fx.jpeg_bytes((12, 6)), "png": fx.png_bytes((12, 6))}
    records = {
        split: [
            ImageRecord(f"{split}/{c}/{k}", c, str(c + offset), split, data=encoded["png" if k else "jpeg"])
            for c in range(3)
            for k in range(2)
        ]
        for split, offset in (("train", 0), ("test", 3))
    }
    fake = types.SimpleNamespace(
        NAME="synthetic",
        SPLITS=("train", "test"),
        TRAIN_SPLIT="train",
        QUERY_SPLIT="test",
        GALLERY_SPLIT=None,
        INSTRUCTIONS="",
        GENERATED=True,
        LOAD_OPTIONS=(),
        GENERATOR_VERSION=7,
        list_images=lambda raw_dir: records,
    )
    monkeypatch.setattr(datasets, "get_dataset", lambda name: fake)
    manifest, _ = convert("synthetic", None, tmp_path / "data", "--num-shards", "2")
    assert manifest["arguments"]["raw_dir"] is None
    assert manifest["arguments"]["generator_version"] == 7  # ensure_tfrecords rebuilds on a change
    assert manifest["splits"]["test"]["num_images"] == 6
    assert all(s["path"] is None for s in manifest["splits"]["test"]["skipped"])
    rows = [r for shard in read_shards(tmp_path / "data", "synthetic", "test").values() for r in shard]
    assert sorted(r[schema.FORMAT] for r in rows) == [b"jpeg"] * 3 + [b"png"] * 3
    assert {(r[schema.HEIGHT], r[schema.WIDTH]) for r in rows} == {(6, 12)}


def test_incomplete_outputs_are_never_read_and_are_cleaned(tmp_path, monkeypatch):
    raw = fx.make_imagefolder(str(tmp_path / "raw"))
    data = str(tmp_path / "data")
    out = datasets.tfrecord_dir(data, "imagefolder")
    convert("imagefolder", raw, data)
    good = all_files(out)

    # A run that dies while writing shards leaves the previous complete output untouched.
    def broken(self, element):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build_tfrecords.transforms.WriteShardFn, "process", broken)
    with pytest.raises(Exception, match="disk full"):
        convert("imagefolder", raw, data)
    monkeypatch.undo()
    assert all_files(out) == good
    assert os.path.isdir(out + ".incomplete")
    assert not os.path.exists(os.path.join(out + ".incomplete", "manifest.json"))

    # An output without its manifest (interrupted while being replaced) reads as missing ...
    os.remove(os.path.join(out, "manifest.json"))
    fx.write_bytes(os.path.join(out, "train", "stale.tfrecord"), b"junk")
    assert not manifest_lib.is_complete(out)
    with pytest.raises(datasets.DatasetNotFoundError, match="incomplete"):
        manifest_lib.load_manifest(data, "imagefolder")
    # ... and the next run deletes both leftovers and writes a complete output.
    convert("imagefolder", raw, data)
    assert all_files(out) == good
    assert not os.path.exists(out + ".incomplete")


def test_wrong_layout_fails_with_file_and_line(tmp_path, capsys):
    raw = fx.make_cub200(str(tmp_path / "raw"))
    labels = os.path.join(raw, "CUB_200_2011", "image_class_labels.txt")
    with open(labels, "a") as f:
        f.write("oops\n")
    with pytest.raises(datasets.DatasetFormatError, match=r"image_class_labels.txt:11"):
        convert("cub200", raw, tmp_path / "data")
    with pytest.raises(SystemExit) as exit_info:
        build_tfrecords.main(["--dataset", "cub200", "--raw-dir", raw, "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 4
    assert capsys.readouterr().err.startswith("python -m pipelines.build_tfrecords: error: ")

    with pytest.raises(SystemExit) as exit_info:
        build_tfrecords.main(
            ["--dataset", "cars196", "--raw-dir", str(tmp_path / "nothing"), "--data-dir", str(tmp_path)]
        )
    assert exit_info.value.code == 3
    err = capsys.readouterr().err
    assert "cars_annos.mat" in err and "car_ims" in err
    assert not os.path.exists(datasets.tfrecord_dir(str(tmp_path), "cars196"))


def test_flags_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_tfrecords.parse_args(["--dataset", "cub200", "--train-classes", "x.txt"])
    assert "imagefolder only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_tfrecords.parse_args(["--dataset", "mnist"])
    assert "invalid choice" in capsys.readouterr().err
    args, beam_args = build_tfrecords.parse_args(["--dataset", "sop", "--num-shards", "3", "--direct_num_workers", "2"])
    assert (args.num_shards, beam_args) == (3, ["--direct_num_workers", "2"])
    assert build_tfrecords.num_shards(0, 2500) == 3 and build_tfrecords.num_shards(5, 10) == 5


def test_imagefolder_class_lists(tmp_path):
    raw = fx.make_imagefolder(str(tmp_path / "raw"))
    train_list = fx.write_text(str(tmp_path / "train.txt"), ["date", "# comment", "apple"])
    manifest, _ = convert("imagefolder", raw, tmp_path / "data", "--train-classes", train_list)
    assert manifest["splits"]["train"]["num_classes"] == 2
    assert manifest["splits"]["test"]["num_classes"] == 2
    names = {
        r[schema.CLASS_NAME] for shard in read_shards(tmp_path / "data", "imagefolder", "train").values() for r in shard
    }
    assert names == {b"apple", b"date"}


def test_check_class_fn_reports_unreadable_paths(tmp_path):
    from pipelines.tfrecord_transforms import CheckClassFn

    staging = tmp_path / "staging"
    fn = CheckClassFn(str(staging), "imagefolder", max_pixels=1000)
    fn.setup()
    directory = ImageRecord("a/dir.jpg", 0, "a", "train", path=str(tmp_path))
    (check,) = fn.process((directory,))
    assert (check.num_images, check.num_bytes) == (0, 0)
    assert [s["reason"] for s in check.skipped] == ["unreadable"]
    assert check.skipped[0]["path"] == str(tmp_path)
    assert check.fingerprints == ("train\ta\ta/dir.jpg\tunreadable",)
    assert os.path.getsize(staging / check.fragment) == 0  # written (empty) and renamed into place
    assert os.listdir(os.path.dirname(staging / check.fragment)) == [os.path.basename(check.fragment)]


def test_class_units_label_classes_by_their_rank_in_the_label_space():
    from pipelines.class_records import class_units

    records = {
        "query": [ImageRecord("q/7", 7, "i7", "query"), ImageRecord("q/3", 3, "i3", "query")],
        "gallery": [ImageRecord("g/5", 5, "i5", "gallery"), ImageRecord("g/3", 3, "i3", "gallery")],
        "train": [ImageRecord("t/9", 9, "t9", "train"), ImageRecord("t/2", 2, "t2", "train")],
    }
    units = class_units(records, {"query": "test", "gallery": "test"})
    got = sorted((r.split, r.class_name, r.label) for unit in units for r in unit)
    # query and gallery share the ranks of {3, 5, 7}; train ranks {2, 9} on its own.
    assert got == [
        ("gallery", "i3", 0),
        ("gallery", "i5", 1),
        ("query", "i3", 0),
        ("query", "i7", 2),
        ("train", "t2", 0),
        ("train", "t9", 1),
    ]
    assert [len(u) for u in units] == [1] * 6


def test_generated_datasets_enter_the_pipeline_without_bytes(tmp_path, monkeypatch):
    """Workers render each class: the launcher lists records without bytes, the shards equal
    what the in-memory records (``load``) give."""
    listed = []
    real = build_tfrecords.class_records.class_units
    monkeypatch.setattr(
        build_tfrecords.class_records, "class_units", lambda *args: listed.extend(real(*args)) or listed
    )
    manifest, _ = convert("digits", None, tmp_path / "gen", "--num-shards", "2")
    assert listed and all(r.data is None and r.path is None for unit in listed for r in unit)
    monkeypatch.undo()
    monkeypatch.setattr(build_tfrecords, "load_records", lambda module, raw_dir, args: module.load(raw_dir))
    convert("digits", None, tmp_path / "mem", "--num-shards", "2")
    generated = all_files(datasets.tfrecord_dir(str(tmp_path / "gen"), "digits"))
    in_memory = all_files(datasets.tfrecord_dir(str(tmp_path / "mem"), "digits"))
    assert generated.pop("manifest.json") and in_memory.pop("manifest.json")
    assert generated == in_memory and len(generated) == 4
    assert manifest["splits"]["train"]["num_images"] + manifest["splits"]["test"]["num_images"] == 1797


def test_a_class_travels_as_one_pickled_element():
    """Beam's default coder pickles a class's records once, not once per record, and gives them
    back as the same ClassRecords."""
    import pickle

    from apache_beam.coders import coders

    from pipelines.class_records import ClassRecords, class_units

    records = {
        "train": [ImageRecord(f"a/{i}.jpg", 0, "a", "train", path=f"/raw/a/{i}.jpg") for i in range(50)]
        + [ImageRecord("b/0.jpg", 1, "b", "train", path="/b")]
    }
    units = class_units(records)
    assert [len(u) for u in units] == [50, 1] and all(isinstance(u, ClassRecords) for u in units)

    def pickles(encoded):  # each pickle starts with the PROTO opcode and its protocol number
        return sum(encoded.count(bytes([0x80, p])) for p in range(2, pickle.HIGHEST_PROTOCOL + 1))

    coder = coders.FastPrimitivesCoder()
    encoded = coder.encode(units[0])
    assert pickles(encoded) == 1
    decoded = coder.decode(encoded)
    assert isinstance(decoded, ClassRecords) and decoded == units[0]
    assert list(decoded) == records["train"][:50]
    assert pickles(coders.FastPrimitivesCoder().encode(tuple(units[0]))) == 50  # what a plain tuple costs
    assert units[0][-1] == records["train"][49] and len(units[0]) == 50


def test_class_records_refuse_mixed_classes_and_tokenize_by_content():
    from dask.base import tokenize

    from pipelines.class_records import ClassRecords

    def unit(path):
        return ClassRecords(
            [ImageRecord("a/0.jpg", 0, "a", "train", path=path), ImageRecord("a/1.jpg", 0, "a", "train")]
        )

    assert tokenize(unit("/x")) == tokenize(unit("/x")) != tokenize(unit("/y"))  # Dask's graph keys
    with pytest.raises(ValueError, match="share split, label and class name"):
        ClassRecords([ImageRecord("a/0", 0, "a", "train"), ImageRecord("b/0", 0, "b", "train")])
    with pytest.raises(ValueError, match="must not be empty"):
        ClassRecords([])
