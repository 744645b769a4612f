"""Read and write PyTorch's legacy (pre-zip) ``torch.save`` stream without torch.

The stream is five parts in a row: three small pickles (the magic number
``0x1950a86a20f9469cfc6c``, the protocol version ``1001`` and a system-info
dict), the pickled object, a pickle listing the storage keys, and then for each
key an int64 little-endian element count followed by the raw little-endian
elements.

The object pickle refers to globals. A restricted unpickler resolves exactly
``torch._utils._rebuild_tensor_v2``, ``collections.OrderedDict`` and the plain
``torch.<Dtype>Storage`` types, each to a harmless stand-in, and refuses every
other global before anything is called: reading a file never runs code from it.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from jstyle.errors import JStyleError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: torch storage type name -> numpy dtype of its elements (little-endian).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "ByteStorage": np.dtype("u1"),
    "CharStorage": np.dtype("i1"),
    "BoolStorage": np.dtype("?"),
    "ShortStorage": np.dtype("<i2"),
    "IntStorage": np.dtype("<i4"),
    "LongStorage": np.dtype("<i8"),
    "HalfStorage": np.dtype("<f2"),
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
}
_STORAGE_NAMES: dict[np.dtype, str] = {dtype: name for name, dtype in STORAGE_DTYPES.items()}


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageType:
    """Stand-in for a ``torch.<Dtype>Storage`` class: only names a dtype, cannot be called."""

    name: str
    dtype: np.dtype


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageRef:
    """A persistent id resolved: ``numel`` elements of storage ``key`` from element ``offset``."""

    key: str
    dtype: np.dtype
    offset: int
    numel: int


@dataclasses.dataclass(frozen=True, slots=True)
class _TensorRef:
    """What ``_rebuild_tensor_v2`` stands for until the storages have been read."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records the view, builds nothing."""
    if not isinstance(storage, _StorageRef):
        raise ValueError("a tensor's storage is not a persistent storage id")
    size_t = _int_tuple(size, "size")
    stride_t = _int_tuple(stride, "stride")
    if len(size_t) != len(stride_t):
        raise ValueError(f"tensor size {size_t} and stride {stride_t} differ in length")
    return _TensorRef(storage, _nonneg_int(storage_offset, "offset"), size_t, stride_t)


def _nonneg_int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"tensor {what} {value!r} is not a non-negative integer")
    return value


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"tensor {what} {value!r} is not a tuple")
    return tuple(_nonneg_int(v, what) for v in value)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that knows only the globals of a tensor dict and calls nothing else."""

    def __init__(self, file: IO[bytes], source: str, allow_globals: bool) -> None:
        super().__init__(file)
        self._source = source
        self._allow_globals = allow_globals

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name)) if self._allow_globals else None
        if allowed is None:
            raise JStyleError(
                f"{self._source} refers to the forbidden global {module}.{name}; jstyle reads "
                "only tensor dicts and will not run code from a weights file: use a trusted file"
            )
        return allowed

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise ValueError(f"unknown persistent id {pid!r}")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise ValueError(f"malformed storage id {pid!r}")
        numel = _nonneg_int(numel, "storage size")
        if view_metadata is None:
            return _StorageRef(key, storage_type.dtype, 0, numel)
        # A view of another storage: (view key, element offset, view size).
        if not (isinstance(view_metadata, tuple) and len(view_metadata) == 3):
            raise ValueError(f"malformed storage view {view_metadata!r}")
        _view_key, offset, view_size = view_metadata
        return _StorageRef(
            key,
            storage_type.dtype,
            _nonneg_int(offset, "storage view offset"),
            _nonneg_int(view_size, "storage view size"),
        )


def _source_name(path_or_fileobj: str | os.PathLike[str] | IO[bytes]) -> str:
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        return str(path_or_fileobj)
    return str(getattr(path_or_fileobj, "name", "the torch file"))


class _TruncatedError(JStyleError):
    """The stream ended early."""


def _truncated(source: str) -> JStyleError:
    return _TruncatedError(f"{source} is truncated: download or copy it again")


def _unpickle(f: IO[bytes], source: str, *, allow_globals: bool) -> Any:
    try:
        return _RestrictedUnpickler(f, source, allow_globals).load()
    except EOFError:
        raise _truncated(source) from None
    except pickle.UnpicklingError as exc:
        if "truncated" in str(exc):
            raise _truncated(source) from None
        raise JStyleError(f"{source} is not a legacy torch.save file ({exc})") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, struct.error) as exc:
        raise JStyleError(f"{source} is not a legacy torch.save file ({exc})") from None


_CHUNK = 1 << 24


def _read_exact(f: IO[bytes], n: int, source: str) -> bytes:
    """Read exactly ``n`` bytes, in chunks, so a corrupt size cannot allocate more than the file."""
    chunks: list[bytes] = []
    while n > 0:
        chunk = f.read(min(n, _CHUNK))
        if not chunk:
            raise _truncated(source)
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _check_start(f: IO[bytes], source: str) -> None:
    """Name the common wrong files (zip-format torch files, non-pickles) before unpickling."""
    if not f.seekable():
        return
    start = f.tell()
    head = f.read(4)
    f.seek(start)
    if not head:
        raise _truncated(source)
    if head.startswith(b"PK"):
        raise JStyleError(
            f"{source} is a zip-format torch.save file (torch >= 1.6), not a legacy one"
        )
    if not head.startswith(pickle.PROTO):
        raise JStyleError(f"{source} is not a legacy torch.save file (not a pickle stream)")


def _read_stream(f: IO[bytes], source: str) -> dict[str, np.ndarray]:
    _check_start(f, source)
    try:
        magic = _unpickle(f, source, allow_globals=False)
    except _TruncatedError:
        raise
    except JStyleError:
        raise JStyleError(
            f"{source} is not a legacy torch.save file (no magic number; a zip-format file "
            "written by torch >= 1.6 needs torch to read)"
        ) from None
    if magic != MAGIC_NUMBER:
        raise JStyleError(f"{source} is not a legacy torch.save file (wrong magic number)")
    protocol = _unpickle(f, source, allow_globals=False)
    if protocol != PROTOCOL_VERSION:
        raise JStyleError(
            f"{source} uses torch.save protocol {protocol!r}; only {PROTOCOL_VERSION} is supported"
        )
    sys_info = _unpickle(f, source, allow_globals=False)
    if not isinstance(sys_info, dict):
        raise JStyleError(f"{source} is not a legacy torch.save file (bad system info)")
    if sys_info.get("little_endian") is not True:
        raise JStyleError(f"{source} was saved on a big-endian machine, which is not supported")

    obj = _unpickle(f, source, allow_globals=True)
    if not isinstance(obj, dict):
        raise JStyleError(f"{source} holds a {type(obj).__name__}, not a dict of tensors")
    keys = _unpickle(f, source, allow_globals=False)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise JStyleError(f"{source} is not a legacy torch.save file (bad storage key list)")

    dtypes: dict[str, np.dtype] = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, _TensorRef):
            raise JStyleError(f"{source}: entry {name!r} is not a tensor")
        ref = value.storage
        if dtypes.setdefault(ref.key, ref.dtype) != ref.dtype:
            raise JStyleError(f"{source}: storage {ref.key} is used with two dtypes")

    storages: dict[str, np.ndarray] = {}
    for key in keys:
        (count,) = struct.unpack("<q", _read_exact(f, 8, source))
        if key not in dtypes:
            raise JStyleError(f"{source}: storage {key} is not used by any tensor")
        if count < 0:
            raise JStyleError(f"{source}: storage {key} has a negative size")
        dtype = dtypes[key]
        raw = _read_exact(f, count * dtype.itemsize, source)
        if dtype.kind == "b":  # any non-zero byte is True, as in torch
            storages[key] = np.frombuffer(raw, dtype="u1") != 0
        else:
            storages[key] = np.frombuffer(raw, dtype=dtype)

    return {name: _build_tensor(ref, storages, source) for name, ref in obj.items()}


def _build_tensor(ref: _TensorRef, storages: dict[str, np.ndarray], source: str) -> np.ndarray:
    """Materialise one tensor view as a fresh, contiguous, native-endian numpy array."""
    if ref.storage.key not in storages:
        raise JStyleError(f"{source}: storage {ref.storage.key} is missing")
    base = storages[ref.storage.key]
    if ref.storage.offset + ref.storage.numel > base.size:
        raise JStyleError(f"{source}: storage {ref.storage.key} is shorter than its tensors need")
    view = base[ref.storage.offset : ref.storage.offset + ref.storage.numel]
    if 0 in ref.size:
        return np.zeros(ref.size, dtype=base.dtype.newbyteorder("="))
    if np.prod(ref.size, dtype=np.float64) > view.size:
        # Only overlapping (e.g. stride-0) views can, and a forged one could exhaust memory.
        raise JStyleError(f"{source}: a tensor has more elements than its storage")
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= view.size:
        raise JStyleError(f"{source}: a tensor runs past the end of storage {ref.storage.key}")
    strided = np.lib.stride_tricks.as_strided(
        view[ref.offset :],
        shape=ref.size,
        strides=tuple(s * view.itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(strided, dtype=base.dtype.newbyteorder("="), order="C", copy=True)


def load_legacy_torch(path_or_fileobj: str | os.PathLike[str] | IO[bytes]) -> dict[str, np.ndarray]:
    """Read a legacy ``torch.save`` file holding a dict of tensors, as numpy arrays.

    Accepts a path or a binary file object. Nothing in the file is executed: any
    global beyond the tensor machinery raises :class:`JStyleError`, as does a
    truncated or malformed file.
    """
    source = _source_name(path_or_fileobj)
    if isinstance(path_or_fileobj, (str, os.PathLike)):
        try:
            with open(path_or_fileobj, "rb") as f:
                return _read_stream(f, source)
        except FileNotFoundError:
            raise JStyleError(f"{source} does not exist") from None
        except IsADirectoryError:
            raise JStyleError(f"{source} is a directory, not a torch file") from None
    return _read_stream(path_or_fileobj, source)


# --- writing -----------------------------------------------------------------------------------


def _op_str(s: str) -> bytes:
    data = s.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _op_int(n: int) -> bytes:
    if 0 <= n < 0x100:
        return pickle.BININT1 + bytes([n])
    if 0 <= n < 0x10000:
        return pickle.BININT2 + struct.pack("<H", n)
    if -(2**31) <= n < 2**31:
        return pickle.BININT + struct.pack("<i", n)
    return pickle.dumps(n, protocol=2)[2:-1]  # LONG1


def _op_int_tuple(values: tuple[int, ...]) -> bytes:
    return pickle.MARK + b"".join(_op_int(v) for v in values) + pickle.TUPLE


def _op_global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii")


@dataclasses.dataclass(frozen=True)
class TensorView:
    """A tensor to write as a view of a named storage (element offset, size and stride).

    ``storage_view`` optionally makes the tensor's storage itself a view
    (element offset, number of elements) of the named storage, as old torch
    versions wrote for tensors sharing part of a storage.
    """

    storage_key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    storage_view: tuple[int, int] | None = None


def _tensor_pickle(view: TensorView, storage_name: str, numel: int) -> bytes:
    if view.storage_view is None:
        view_metadata = pickle.NONE
    else:
        view_offset, view_size = view.storage_view
        view_metadata = (
            pickle.MARK
            + _op_str(f"{view.storage_key}.view")
            + _op_int(view_offset)
            + _op_int(view_size)
            + pickle.TUPLE
        )
    storage_id = (
        pickle.MARK
        + _op_str("storage")
        + _op_global("torch", storage_name)
        + _op_str(view.storage_key)
        + _op_str("cpu")
        + _op_int(numel)
        + view_metadata
        + pickle.TUPLE
        + pickle.BINPERSID
    )
    hooks = _op_global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
    return (
        _op_global("torch._utils", "_rebuild_tensor_v2")
        + pickle.MARK
        + storage_id
        + _op_int(view.offset)
        + _op_int_tuple(view.size)
        + _op_int_tuple(view.stride)
        + pickle.NEWFALSE
        + hooks
        + pickle.TUPLE
        + pickle.REDUCE
    )


def write_legacy_torch_views(
    f: IO[bytes], views: Mapping[str, TensorView], storages: Mapping[str, np.ndarray]
) -> None:
    """Write tensors that are views of shared 1-D ``storages`` as a legacy ``torch.save`` stream.

    This is the general form of :func:`write_legacy_torch`, for tensors with an
    offset or a non-contiguous stride.
    """
    names: dict[str, str] = {}
    for key, data in storages.items():
        if data.ndim != 1 or data.dtype.newbyteorder("<") not in _STORAGE_NAMES:
            raise ValueError(f"storage {key}: need a 1-D array of a torch dtype, got {data.dtype}")
        names[key] = _STORAGE_NAMES[data.dtype.newbyteorder("<")]
    body = b"".join(
        _op_str(name) + _tensor_pickle(view, names[key], storages[key].size)
        for name, view in views.items()
        for key in [view.storage_key]
    )
    sys_info = {
        "protocol_version": PROTOCOL_VERSION,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 8},
    }
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, sys_info):
        f.write(pickle.dumps(header, protocol=2))
    f.write(pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK + body + pickle.SETITEMS)
    f.write(pickle.STOP)
    f.write(pickle.dumps(list(storages), protocol=2))
    for data in storages.values():
        f.write(struct.pack("<q", data.size))
        f.write(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes())


def write_legacy_torch(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray]) -> None:
    """Write a dict of numpy arrays as a legacy ``torch.save`` file, one storage per tensor."""
    views: dict[str, TensorView] = {}
    storages: dict[str, np.ndarray] = {}
    for i, (name, array) in enumerate(tensors.items()):
        array = np.ascontiguousarray(array)
        key = str(i)
        strides = tuple(int(np.prod(array.shape[d + 1 :])) for d in range(array.ndim))
        views[name] = TensorView(key, 0, tuple(array.shape), strides)
        storages[key] = array.reshape(-1)
    with open(Path(path), "wb") as f:
        write_legacy_torch_views(f, views, storages)
