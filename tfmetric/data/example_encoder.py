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
from typing import Dict, Union

_LEN = 2  # wire type of length-delimited fields
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def varint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer below 2**64."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | _LEN) + varint(len(payload)) + payload


def bytes_feature(value: Union[bytes, str]) -> bytes:
    """A serialized ``Feature`` holding ``bytes_list {value: [value]}`` (a str as UTF-8)."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    return _field(1, _field(1, value))


def int64_feature(value: int) -> bytes:
    """A serialized ``Feature`` holding ``int64_list {value: [value]}``."""
    value = int(value)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"value must fit in int64. Received: value={value}")
    return _field(3, _field(1, varint(value & 0xFFFFFFFFFFFFFFFF)))


def _key_order(a: bytes, b: bytes) -> int:
    common = min(len(a), len(b))
    if a[:common] != b[:common]:
        return -1 if a[:common] < b[:common] else 1
    return len(b) - len(a)


def encode_example(features: Dict[str, Union[bytes, str, int]]) -> bytes:
    """A serialized ``tf.train.Example`` with one value per feature: ``int`` as int64, ``bytes``
    or ``str`` as bytes; the same bytes as TensorFlow's deterministic serialization."""
    entries = []
    keys = {name.encode("utf-8"): name for name in features}
    for key in sorted(keys, key=functools.cmp_to_key(_key_order)):
        value = features[keys[key]]
        feature = int64_feature(value) if isinstance(value, int) else bytes_feature(value)
        entries.append(_field(1, _field(1, key) + _field(2, feature)))
    return _field(1, b"".join(entries))
