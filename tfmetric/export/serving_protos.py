"""The few TF Serving protos this project writes or sends, defined at runtime from descriptors.

Field numbers are those of tensorflow_serving/apis (``model.proto``, ``predict.proto``,
``prediction_log.proto``), so the bytes are exactly what TF Serving reads; only the fields used
here are declared (unknown fields of a real message survive a parse/serialise round trip). This
replaces a dependency on ``tensorflow-serving-api``, which would install a second TensorFlow
(``tensorflow``) beside ``tensorflow-cpu``.

    ModelSpec       { string name = 1; google.protobuf.Int64Value version = 2; string signature_name = 3; }
    PredictRequest  { ModelSpec model_spec = 1; map<string, TensorProto> inputs = 2; }
    PredictResponse { map<string, TensorProto> outputs = 1; ModelSpec model_spec = 2; }
    PredictLog      { PredictRequest request = 1; PredictResponse response = 2; }
    PredictionLog   { PredictLog predict_log = 6; }

The classes live in a private descriptor pool, so they do not clash with ``tensorflow_serving.apis``
imported in the same process; their TensorProto is wire-compatible with TensorFlow's but a
different class (convert with ``to_tensor_proto`` / ``from_tensor_proto``).
"""

import functools

import tensorflow as tf
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2
from tensorflow.core.framework import tensor_pb2

PACKAGE = "tensorflow.serving"
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_STRING, _MESSAGE = _F.TYPE_STRING, _F.TYPE_MESSAGE
_TENSOR = ".tensorflow.TensorProto"


def _add_file(pool, file_descriptor, added):
    for dependency in file_descriptor.dependencies:
        _add_file(pool, dependency, added)
    if file_descriptor.name not in added:
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        pool.Add(proto)
        added.add(file_descriptor.name)


def _add_fields(message, fields):
    for name, number, kind, label, type_name in fields:
        field = message.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name


def _add_message(file_proto, name, fields, tensor_map=None):
    """A message; ``tensor_map`` names a map<string, TensorProto> field whose entry type is nested."""
    message = file_proto.message_type.add(name=name)
    if tensor_map:
        entry_name = "".join(part.capitalize() for part in tensor_map.split("_")) + "Entry"
        entry = message.nested_type.add(name=entry_name)
        entry.options.map_entry = True
        _add_fields(entry, [("key", 1, _STRING, _OPTIONAL, None), ("value", 2, _MESSAGE, _OPTIONAL, _TENSOR)])
    _add_fields(message, fields)


@functools.cache
def _pool():
    pool = descriptor_pool.DescriptorPool()
    added = set()
    _add_file(pool, tensor_pb2.DESCRIPTOR, added)
    _add_file(pool, wrappers_pb2.DESCRIPTOR, added)
    f = descriptor_pb2.FileDescriptorProto(
        name="tfmetric/export/serving_protos.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=[tensor_pb2.DESCRIPTOR.name, wrappers_pb2.DESCRIPTOR.name],
    )
    p = f".{PACKAGE}"
    _add_message(
        f,
        "ModelSpec",
        [
            ("name", 1, _STRING, _OPTIONAL, None),
            ("version", 2, _MESSAGE, _OPTIONAL, ".google.protobuf.Int64Value"),
            ("signature_name", 3, _STRING, _OPTIONAL, None),
        ],
    )
    _add_message(
        f,
        "PredictRequest",
        [
            ("model_spec", 1, _MESSAGE, _OPTIONAL, f"{p}.ModelSpec"),
            ("inputs", 2, _MESSAGE, _REPEATED, f"{p}.PredictRequest.InputsEntry"),
        ],
        tensor_map="inputs",
    )
    _add_message(
        f,
        "PredictResponse",
        [
            ("outputs", 1, _MESSAGE, _REPEATED, f"{p}.PredictResponse.OutputsEntry"),
            ("model_spec", 2, _MESSAGE, _OPTIONAL, f"{p}.ModelSpec"),
        ],
        tensor_map="outputs",
    )
    _add_message(
        f,
        "PredictLog",
        [
            ("request", 1, _MESSAGE, _OPTIONAL, f"{p}.PredictRequest"),
            ("response", 2, _MESSAGE, _OPTIONAL, f"{p}.PredictResponse"),
        ],
    )
    _add_message(f, "PredictionLog", [("predict_log", 6, _MESSAGE, _OPTIONAL, f"{p}.PredictLog")])
    pool.Add(f)
    return pool


def message_class(name):
    """The class of ``tensorflow.serving.<name>``: ModelSpec, PredictRequest, PredictResponse,
    PredictLog or PredictionLog."""
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"{PACKAGE}.{name}"))


def to_tensor_proto(value):
    """array-like -> this pool's TensorProto (via ``tf.make_tensor_proto``)."""
    cls = message_factory.GetMessageClass(_pool().FindMessageTypeByName(_TENSOR[1:]))
    return cls.FromString(tf.make_tensor_proto(value).SerializeToString())


def from_tensor_proto(proto):
    """A TensorProto of this pool (or TensorFlow's) -> numpy array."""
    return tf.make_ndarray(tensor_pb2.TensorProto.FromString(proto.SerializeToString()))


def predict_request(model_name, signature_name, inputs, version=None):
    """A PredictRequest for ``signature_name`` with ``inputs`` (dict name -> array-like)."""
    request = message_class("PredictRequest")()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(to_tensor_proto(value))
    return request
