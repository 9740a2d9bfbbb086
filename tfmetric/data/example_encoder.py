"""``tf.train.Example`` protos encoded directly, byte for byte what TensorFlow writes.

``encode_example(features)`` gives the bytes of ``tf.train.Example(...).SerializeToString(
deterministic=True)`` for a record of single-valued bytes and int64 features: the map entries in
the order deterministic serialization writes them (protobuf's upb backend, the one TensorFlow's
Python protos use: keys by their bytes, a key before the keys that are its prefixes; the schema's
keys are no prefixes of each other, so any sorted order agrees for them). The converter writes one record
per image, and building four ``tf.train.Feature`` messages per record in Python costs more than
writing it; this module needs neither TensorFlow nor protobuf.

Wire format (protobuf encoding, example.proto / feature.proto): Example.features = 1;
Features.feature = 1 (map entries: key = 1, value = 2); Feature.bytes_list = 1, int64_list = 3;
BytesList.value = 1 (repeated bytes); Int64List.value = 1 (packed varints; a negative value is
its 64-bit two's complement, ten bytes).
"""

import functools

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# Tag bytes of the length-delimited fields: field 1, field 2 and field 3 (wire type 2).
_F1, _F2, _F3 = b"\x0a", b"\x12", b"\x1a"


def varint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer below 2**64."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _feature(value):
    """(head, tail) of a serialized ``Feature`` with one int64 or bytes value: ``head + tail``
    is the message; a bytes value is the tail, so that it is copied once, into the record."""
    if isinstance(value, int):
        value = int(value)
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"value must fit in int64. Received: value={value}")
        packed = varint(value & 0xFFFFFFFFFFFFFFFF)
        int64_list = _F1 + varint(len(packed)) + packed
        return _F3 + varint(len(int64_list)) + int64_list, b""
    if isinstance(value, str):
        value = value.encode("utf-8")
    bytes_list_head = _F1 + varint(len(value))
    return _F1 + varint(len(bytes_list_head) + len(value)) + bytes_list_head, value


def _key_order(a: bytes, b: bytes) -> int:
    common = min(len(a), len(b))
    if a[:common] != b[:common]:
        return -1 if a[:common] < b[:common] else 1
    return len(b) - len(a)


@functools.lru_cache(maxsize=64)
def _sorted_keys(names: tuple) -> tuple:
    """((name, its map entry's key field), ...) in the order protobuf writes the entries."""
    keys = [(name.encode("utf-8"), name) for name in names]
    keys.sort(key=functools.cmp_to_key(lambda a, b: _key_order(a[0], b[0])))
    return tuple((name, _F1 + varint(len(key)) + key) for key, name in keys)


def encode_example(features: dict[str, bytes | str | int]) -> bytes:
    """A serialized ``tf.train.Example`` with one value per feature: ``int`` as int64, ``bytes``
    or ``str`` as bytes; the same bytes as TensorFlow's deterministic serialization."""
    pieces, size = [], 0
    for name, key_field in _sorted_keys(tuple(features)):
        head, tail = _feature(features[name])
        entry_head = key_field + _F2 + varint(len(head) + len(tail))  # map entry: key, value
        entry_size = len(entry_head) + len(head) + len(tail)
        entry_head = _F1 + varint(entry_size) + entry_head
        pieces += (entry_head, head, tail)
        size += len(entry_head) + len(head) + len(tail)
    return b"".join([_F1, varint(size), *pieces])  # Example.features: the map's entries
