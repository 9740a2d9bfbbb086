"""The warmup file: TFRecord of tensorflow.serving.PredictionLog, checked against a hand-encoded
reference of the wire format (field numbers of tensorflow_serving/apis/*.proto)."""

import numpy as np
import tensorflow as tf

from tfmetric.export import serving_protos, warmup


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, payload):
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_serialization_matches_the_proto_field_numbers():
    tensor = tf.make_tensor_proto(np.array([b"\xff\xd8\xffjpeg"], dtype=object))
    model_spec = _field(1, b"products") + _field(3, b"serving_binary")  # ModelSpec
    entry = _field(1, b"image_bytes") + _field(2, tensor.SerializeToString())  # map entry
    request = _field(1, model_spec) + _field(2, entry)  # PredictRequest
    expected = _field(6, _field(1, request))  # PredictionLog.predict_log
    log = warmup.make_prediction_log(
        "products", "serving_binary", {"image_bytes": np.array([b"\xff\xd8\xffjpeg"], dtype=object)}
    )
    assert log.SerializeToString() == expected


def test_file_round_trip(tmp_path):
    path = str(tmp_path / warmup.WARMUP_FILE)
    warmup.write_warmup_requests(path, "m", warmup.default_requests(32))
    requests = warmup.read_warmup_requests(path)
    assert [(name, sig) for name, sig, _ in requests] == [
        ("m", "serving_default"),
        ("m", "serving_binary"),
        ("m", "serving_images"),
    ]
    jpeg = requests[0][2]["image_bytes"]
    assert jpeg.shape == (1,) and jpeg[0][:3] == b"\xff\xd8\xff"
    assert tf.io.decode_jpeg(jpeg[0]).shape == (32, 32, 3)
    images = requests[2][2]["images"]
    assert images.dtype == np.uint8 and images.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(images[0], warmup.sample_image(32))


def test_request_version_and_response_field_numbers():
    request = serving_protos.predict_request("m", "serving_default", {}, version=3)
    version = _varint(2 << 3 | 2) + _varint(2) + bytes([1 << 3 | 0, 3])  # Int64Value{value = 1: 3}
    assert request.SerializeToString() == _field(1, _field(1, b"m") + version + _field(3, b"serving_default"))
    bits = np.array([[129, 224]], np.uint8)
    tensor = tf.make_tensor_proto(bits).SerializeToString()
    wire = _field(1, _field(1, b"embedding_bits") + _field(2, tensor)) + _field(2, _field(1, b"m"))
    response = serving_protos.message_class("PredictResponse").FromString(wire)
    assert response.model_spec.name == "m"
    np.testing.assert_array_equal(serving_protos.from_tensor_proto(response.outputs["embedding_bits"]), bits)
