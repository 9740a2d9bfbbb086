"""Reads a PyTorch ``torch.save`` file of tensors (a state_dict) into numpy, without torch.

A ``.pth`` file is a pickle, and unpickling runs whatever callables it names. This reader never
imports a pickled global: ``find_class`` maps the handful of names a saved tensor needs
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and its older and Parameter
variants, ``torch.FloatStorage`` and the other storage types) onto local stand-ins that only
build numpy arrays, and refuses every other global (``os.system``, ``builtins.eval``, a model
class, ...) with `UnsafePickleError` before anything runs.

Both of torch's formats are read:
- zip (torch >= 1.6, e.g. torchvision's ``resnet50-0676ba61.pth``): ``<archive>/data.pkl`` plus
  one raw little-endian record ``<archive>/data/<key>`` per storage;
- legacy (``_use_new_zipfile_serialization=False``, and files saved before torch 1.6 such as
  ``resnet50-19c8e357.pth``): pickles of the magic number, the protocol version and system info,
  the object, the list of storage keys, then each storage as an int64 element count and its data.
The pre-2017 tar format is not read; the error says how to re-save such a file.
"""

import collections
import io
import pickle
import tarfile
import zipfile

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch storage class -> numpy dtype (little-endian). bfloat16 is read as its uint16 bit pattern.
STORAGE_DTYPES = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}
_RESAVE = (
    "re-save it with torch: python -c \"import torch; torch.save(torch.load('{path}', "
    "weights_only=True), 'resaved.pth')\""
)


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The file names a global that is not tensor data; nothing from it was executed."""


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage:
    """One storage's raw bytes, filled in when the format has read them."""

    def __init__(self, storage_type, numel):
        self.type = storage_type
        self.numel = int(numel)
        self.data = None

    def array(self, byteorder="little"):
        dtype = self.type.dtype.newbyteorder("<" if byteorder == "little" else ">")
        flat = np.frombuffer(self.data, dtype=dtype, count=self.numel)
        if self.type.name == "BFloat16Storage":
            return (flat.astype(np.uint32) << 16).view(np.float32)
        return flat.astype(dtype.newbyteorder("="), copy=False)


class _Tensor:
    """A tensor the pickle rebuilt: a view (offset, size, stride in elements) of a storage."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def numpy(self, path, byteorder):
        flat = self.storage.array(byteorder)
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, flat.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or min(self.stride, default=0) < 0 or last >= flat.size:
            raise ValueError(
                f"{path}: a tensor of size {self.size} reaches past its storage of "
                f"{flat.size} elements; the file is truncated or corrupt."
            )
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=[s * flat.itemsize for s in self.stride]
        )
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}
_STORAGE_MODULES = ("torch", "torch.cuda")


class _Unpickler(pickle.Unpickler):
    """Resolves only the tensor-rebuild globals; storages come from ``persistent_load``."""

    def __init__(self, file, path, storage_fn):
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._storage_fn = storage_fn

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module in _STORAGE_MODULES and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(
            f"{self._path}: refusing to load the pickled global {module}.{name}: only tensor data "
            f"(a state_dict) can be read, and nothing was executed. If the file holds a whole "
            f"pickled model, save its state_dict instead (torch.save(model.state_dict(), ...))."
        )

    def persistent_load(self, pid):
        pid = tuple(pid)
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage" or len(pid) < 5 or not isinstance(pid[1], _StorageType):
            raise pickle.UnpicklingError(f"{self._path}: unsupported persistent id {pid[:2]!r}.")
        return self._storage_fn(*pid[1:])


def _load(file, path, storage_fn=None):
    return _Unpickler(file, path, storage_fn or _no_storage).load()


def _no_storage(*unused):
    raise pickle.UnpicklingError("a storage where none may be")


def _materialize(obj, path, byteorder):
    if isinstance(obj, _Tensor):
        return obj.numpy(path, byteorder)
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialize(v, path, byteorder)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v, path, byteorder) for v in obj)
    return obj


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError(f"{path}: a zip file without exactly one data.pkl; not a torch.save file.")
        prefix = pickles[0][: -len("data.pkl")]
        names = set(archive.namelist())
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode("ascii").strip()
        storages = {}

        def storage(storage_type, key, location, numel, *unused):
            if key not in storages:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise ValueError(f"{path}: storage record {record} is missing; the file is truncated.")
                storages[key] = _Storage(storage_type, numel)
                storages[key].data = archive.read(record)
                _check_size(path, storages[key], len(storages[key].data))
            return storages[key]

        obj = _load(io.BytesIO(archive.read(pickles[0])), path, storage)
    return _materialize(obj, path, byteorder)


def _check_size(path, storage, nbytes):
    if nbytes < storage.numel * storage.type.dtype.itemsize:
        raise ValueError(
            f"{path}: a storage of {storage.numel} elements holds only {nbytes} bytes; the file is truncated."
        )


def _read_legacy(path, f):
    try:
        magic = _load(f, path)
    except UnsafePickleError:
        raise
    except Exception:
        magic = None
    if magic != LEGACY_MAGIC_NUMBER:
        f.seek(0)
        if tarfile.is_tarfile(path):
            raise ValueError(
                f"{path} uses torch's pre-2017 tar serialization, which this reader "
                f"does not parse; " + _RESAVE.format(path=path)
            )
        raise ValueError(f"{path} is not a torch.save file (neither the zip nor the legacy format).")
    version = _load(f, path)
    if version != LEGACY_PROTOCOL_VERSION:
        raise ValueError(f"{path}: legacy protocol version {version} is not supported; " + _RESAVE.format(path=path))
    sys_info = _load(f, path)
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian", True)):
        raise ValueError(f"{path} was written on a big-endian machine; " + _RESAVE.format(path=path))
    roots = {}

    def storage(storage_type, root_key, location, numel, view_metadata=None, *unused):
        if root_key not in roots:
            roots[root_key] = _Storage(storage_type, numel)
        if view_metadata is None:
            return roots[root_key]
        # A view of part of a root storage (files from torch < 1.0): its offset in elements.
        _, view_offset, view_size = view_metadata
        return _StorageView(roots[root_key], view_offset, view_size)

    obj = _load(f, path, storage)
    keys = _load(f, path)
    for key in keys:
        if key not in roots:
            raise ValueError(f"{path}: storage {key!r} is listed but never used; the file is corrupt.")
        header = f.read(8)
        if len(header) != 8:
            raise ValueError(f"{path}: storage {key!r} is missing; the file is truncated.")
        numel = int.from_bytes(header, "little", signed=True)
        data = f.read(numel * roots[key].type.dtype.itemsize)
        roots[key].numel = numel
        _check_size(path, roots[key], len(data))
        roots[key].data = data
    return _materialize(obj, path, "little")


class _StorageView(_Storage):
    def __init__(self, root, offset, numel):
        self.root, self.offset = root, int(offset)
        super().__init__(root.type, numel)

    def array(self, byteorder="little"):
        return self.root.array(byteorder)[self.offset : self.offset + self.numel]


def read_state_dict(path):
    """The tensors of a ``torch.save`` file as ``{name: numpy array}``, in the file's order.

    Args:
        path: a ``.pth`` / ``.pt`` file holding a dict of tensors (zip or legacy format).

    Raises:
        UnsafePickleError: the pickle names a global other than tensor data (not executed).
        ValueError: not a torch.save file, a truncated file, or something other than a dict of
            tensors.
        FileNotFoundError: no such file.
    """
    path = str(path)
    with open(path, "rb") as f:
        try:
            if zipfile.is_zipfile(f):
                state = _read_zip(path)
            else:
                f.seek(0)
                state = _read_legacy(path, f)
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not a readable torch.save file of tensors: {type(e).__name__}: {e}") from e
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path} does not hold a state_dict (a dict of tensors); it holds {type(state).__name__}.")
    bad = [k for k, v in state.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise ValueError(
            f"{path}: entries {bad[:5]} are not tensors; expected a state_dict such as "
            f"torchvision's resnet50-0676ba61.pth."
        )
    return state
