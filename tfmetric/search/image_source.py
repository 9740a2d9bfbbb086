"""Where a catalog item's image bytes live, and reading them back: ``read_image_bytes(source)``.

A catalog row's ``source`` (``tfmetric/search/catalog.py``) is one of:

    /data/catalog/shoes/a.jpg                     an image file (local path or any URI TensorFlow's
    gs://bucket/catalog/shoes/a.jpg               file system reads)
    /data/sop/test-00000-of-00004.tfrecord#offset=81920
                                                  the TFRecord at that byte offset of that file (the
                                                  record's start, i.e. its length field), a
                                                  ``tf.train.Example`` whose ``image/encoded`` holds the bytes

``pipelines.embed_catalog`` writes the second kind for TFRecord input, so the search plot and the
search service show the real image without copying the catalog. Offsets count bytes of the
uncompressed record stream (``.gz`` shards are decompressed up to the record; fine for a few
thumbnails). Records are framed as TensorFlow writes them (length, masked CRC-32C of the length,
data, masked CRC-32C of the data); both checksums are verified.
"""

import gzip
import struct

import crcmod.predefined
import tensorflow as tf

from tfmetric.data import schema

TFRECORD_MARK = "#offset="
_crc32c = crcmod.predefined.mkPredefinedCrcFun("crc-32c")


def _masked_crc(data):
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_source(path, offset):
    """The source of the record starting at byte ``offset`` of the TFRecord file ``path``."""
    if offset < 0:
        raise ValueError(f"offset must be >= 0. Received: offset={offset}")
    return f"{path}{TFRECORD_MARK}{int(offset)}"


def parse_source(source):
    """(path, record offset or None for an image file) of a catalog ``source``."""
    path, mark, offset = str(source).rpartition(TFRECORD_MARK)
    if mark and path and offset.isdigit():
        return path, int(offset)
    return str(source), None


def _open(path):
    f = tf.io.gfile.GFile(path, "rb")
    return gzip.GzipFile(fileobj=f, mode="rb") if path.endswith(".gz") else f


def _read_record(f, path, offset):
    """The record at the current position (``offset``), or None at the end of the file."""
    header = f.read(12)
    if not header:
        return None
    if len(header) < 12:
        raise ValueError(f"{path}: truncated record header at byte {offset}.")
    (length,), (length_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
    if _masked_crc(header[:8]) != length_crc:
        raise ValueError(f"{path}: no TFRecord starts at byte {offset} (length checksum mismatch).")
    data, footer = f.read(length), f.read(4)
    if len(data) < length or len(footer) < 4:
        raise ValueError(f"{path}: truncated record at byte {offset}.")
    if _masked_crc(data) != struct.unpack("<I", footer)[0]:
        raise ValueError(f"{path}: corrupt record at byte {offset} (data checksum mismatch).")
    return data


def iter_records(path):
    """Yields (byte offset, serialized record) of every record of the TFRecord file ``path``.

    Raises ValueError naming the file and offset at a truncated or corrupt record.
    """
    with _open(path) as f:
        offset = 0
        while (data := _read_record(f, path, offset)) is not None:
            yield offset, data
            offset += 16 + len(data)


def read_record(path, offset):
    """The serialized record starting at byte ``offset`` of the TFRecord file ``path``."""
    with _open(path) as f:
        f.seek(offset)
        data = _read_record(f, path, offset)
    if data is None:
        raise ValueError(f"{path}: no record at byte {offset} (end of file).")
    return data


def read_image_bytes(source):
    """The encoded image bytes a catalog ``source`` points to (an image file or a TFRecord).

    Raises FileNotFoundError for a missing file, ValueError for a source that holds no image.
    """
    path, offset = parse_source(source)
    try:
        if offset is None:
            with tf.io.gfile.GFile(path, "rb") as f:
                return f.read()
        example = tf.train.Example.FromString(read_record(path, offset))
    except tf.errors.NotFoundError:
        raise FileNotFoundError(f"{path}: no such file.") from None
    except tf.errors.OpError as e:
        raise ValueError(f"{path}: cannot be read ({e.message}).") from None
    except Exception as e:  # DecodeError of a record that is no tf.train.Example
        if isinstance(e, ValueError):
            raise
        raise ValueError(f"{source}: the record is not a tf.train.Example ({e}).") from None
    encoded = example.features.feature[schema.ENCODED].bytes_list.value
    if not encoded:
        raise ValueError(f"{source}: the record has no {schema.ENCODED} feature.")
    return encoded[0]
