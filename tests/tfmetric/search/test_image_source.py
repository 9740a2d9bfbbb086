"""image_source: record offsets against TensorFlow's own TFRecord reader and writer, reading a
catalog source back (image file, TFRecord, gzip TFRecord), and errors naming file and offset."""

import gzip
import os

import pytest
import tensorflow as tf

from tests import fixtures as fx
from tfmetric.data import schema
from tfmetric.search import image_source


def _write(path, records, options=None):
    with tf.io.TFRecordWriter(path, options) as writer:
        for record in records:
            writer.write(record)
    return path


def _examples(count):
    data = [fx.noise_jpeg_bytes((20 + i, 16), seed=i) for i in range(count)]
    return data, [schema.serialize_example(d, "jpeg", 16, 20 + i, i, "c", f"id-{i}") for i, d in enumerate(data)]


def test_records_and_offsets_match_tensorflows_reader(tmp_path):
    records = [b"", b"x", b"hello" * 1000, bytes(range(256))]
    path = _write(str(tmp_path / "a.tfrecord"), records)
    found = list(image_source.iter_records(path))
    assert [r for _, r in found] == [r.numpy() for r in tf.data.TFRecordDataset(path)] == records
    # Each record is framed by 8 (length) + 4 (its CRC) + data + 4 (data CRC) bytes.
    expected, offset = [], 0
    for r in records:
        expected.append(offset)
        offset += 16 + len(r)
    assert [o for o, _ in found] == expected and offset == os.path.getsize(path)
    for o, r in found:
        assert image_source.read_record(path, o) == r


def test_read_image_bytes_of_each_source_kind(tmp_path):
    data, examples = _examples(3)
    plain = _write(str(tmp_path / "s.tfrecord"), examples)
    zipped = _write(str(tmp_path / "s.tfrecord.gz"), examples, tf.io.TFRecordOptions(compression_type="GZIP"))
    with gzip.open(zipped, "rb") as f:  # offsets count the uncompressed stream
        assert f.read() == open(plain, "rb").read()
    for path in (plain, zipped):
        sources = [image_source.tfrecord_source(path, o) for o, _ in image_source.iter_records(path)]
        assert [image_source.read_image_bytes(s) for s in sources] == data
    assert sources[1] == f"{zipped}#offset={16 + len(examples[0])}"
    image = fx.write_bytes(str(tmp_path / "dir#offset=x" / "a.jpg"), data[0])  # a '#' in a file name is fine
    assert image_source.read_image_bytes(image) == data[0]
    assert image_source.parse_source(image) == (image, None)
    assert image_source.parse_source("gs://b/s.tfrecord#offset=12") == ("gs://b/s.tfrecord", 12)


def test_errors_name_the_file_and_offset(tmp_path):
    _, examples = _examples(2)
    path = _write(str(tmp_path / "s.tfrecord"), examples + [b"not an example"])
    with pytest.raises(ValueError, match=r"s\.tfrecord: no TFRecord starts at byte 3 \(length checksum"):
        image_source.read_image_bytes(f"{path}#offset=3")
    size = os.path.getsize(path)
    with pytest.raises(ValueError, match=rf"no record at byte {size} \(end of file\)"):
        image_source.read_image_bytes(f"{path}#offset={size}")
    last = [o for o, _ in image_source.iter_records(path)][-1]
    with pytest.raises(ValueError, match="the record is not a tf.train.Example"):
        image_source.read_image_bytes(f"{path}#offset={last}")
    with pytest.raises(FileNotFoundError, match="missing.tfrecord: no such file"):
        image_source.read_image_bytes(str(tmp_path / "missing.tfrecord") + "#offset=0")
    with pytest.raises(FileNotFoundError, match="nothing.jpg: no such file"):
        image_source.read_image_bytes(str(tmp_path / "nothing.jpg"))
    corrupt = bytearray(open(path, "rb").read())
    corrupt[20] ^= 0xFF  # inside the first record's data
    bad = fx.write_bytes(str(tmp_path / "bad.tfrecord"), bytes(corrupt))
    with pytest.raises(ValueError, match=r"bad\.tfrecord: corrupt record at byte 0 \(data checksum mismatch\)"):
        list(image_source.iter_records(bad))
    with pytest.raises(ValueError, match="offset must be >= 0. Received: offset=-1"):
        image_source.tfrecord_source(path, -1)
