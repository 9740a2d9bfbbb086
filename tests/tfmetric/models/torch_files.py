"""Writes ``torch.save``-format files without torch, for tests: the zip layout torch >= 1.6 writes,
with the pickle opcodes it emits (``collections.OrderedDict`` of ``torch._utils._rebuild_tensor_v2``
over ``torch.<Type>Storage`` persistent ids), so any state_dict shape can be made on the fly.
Checked against real torch files in test_torch_state_dict.py."""

import pickle
import struct
import zipfile

import numpy as np

STORAGE_TYPES = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
}


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _unicode(text):
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value):
    return b"J" + struct.pack("<i", value)


def _tuple(values):
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def state_dict_pickle(tensors):
    """Protocol-2 pickle of ``{name: array}`` as torch writes a state_dict; storage keys 0, 1, ..."""
    out = [b"\x80\x02", _global("collections", "OrderedDict"), b")R("]
    for key, (name, array) in enumerate(tensors.items()):
        strides = [s // array.itemsize for s in array.strides] if array.ndim else []
        out += [
            _unicode(name),
            _global("torch._utils", "_rebuild_tensor_v2"),
            b"(",
            b"(",
            _unicode("storage"),
            _global("torch", STORAGE_TYPES[array.dtype]),
            _unicode(str(key)),
            _unicode("cpu"),
            _int(array.size),
            b"tQ",
            _int(0),
            _tuple(array.shape),
            _tuple(strides),
            b"\x89",
            _global("collections", "OrderedDict"),
            b")R",
            b"tR",
        ]
    out.append(b"u.")
    return b"".join(out)


def write_torch_zip(path, tensors, data_pkl=None):
    """A zip-format .pth holding ``tensors`` (C-contiguous arrays), or ``data_pkl`` as its pickle."""
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data_pkl if data_pkl is not None else state_dict_pickle(tensors))
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        for key, array in enumerate(tensors.values()):
            archive.writestr(f"archive/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
    return str(path)


class CallOnLoad:
    """Unpickling this calls ``function(*args)``: what a malicious .pth does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def malicious_pickle(function, *args):
    return pickle.dumps(CallOnLoad(function, *args), protocol=2)
