"""Read and write PyTorch checkpoint files (`torch.save`) without torch.

Upstream's snapshots (`snapshot_{epoch}.pth.tar`) are `torch.save` files. Since
torch 1.6 that is a zip archive:

  <prefix>/data.pkl     the object, pickled with protocol 2; every tensor is
                        `torch._utils._rebuild_tensor_v2(storage, offset, size,
                        stride, requires_grad, backward_hooks)` and every storage a
                        persistent id ('storage', torch.FloatStorage, key,
                        location, numel)
  <prefix>/data/<key>   the raw bytes of one storage
  <prefix>/byteorder    'little' or 'big' (missing in files from before 1.9:
                        little)
  <prefix>/version      the format version, '3\\n'

The older (legacy) format is a stream of pickles followed by the raw storages;
`load` reads it too.

`load` unpickles through an allow-list (`smplx_jax.safe_pickle`): the tensor
and storage names above, `collections.OrderedDict`, torch dtypes and numpy
scalars. Tensors come back as numpy arrays, each a copy of its view of the
storage. Anything else in the stream (say `os.system`) raises
`UnsafePickleError` before it runs.

`save` writes the zip format so that `torch.load(path, weights_only=True)`
returns torch tensors; it is our `--to-torch` export. It writes the pickle
opcodes itself, so the torch globals become GLOBAL opcodes without torch being
imported.
"""

from __future__ import annotations

import collections
import codecs
import functools
import io
import os
import pickle
import struct
import zipfile
from typing import Any, Callable, Mapping

import ml_dtypes
import numpy as np

from h4w_jax.common import atomic
from smplx_jax.safe_pickle import RestrictedUnpickler, UnsafePickleError

try:  # numpy >= 2 moved the internals; pickles name either module
  from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x
  from numpy.core import multiarray as _multiarray


# torch storage class -> numpy dtype of its elements.
STORAGE_DTYPES: Mapping[str, np.dtype] = {
    'DoubleStorage': np.dtype(np.float64),
    'FloatStorage': np.dtype(np.float32),
    'HalfStorage': np.dtype(np.float16),
    'BFloat16Storage': np.dtype(ml_dtypes.bfloat16),
    'LongStorage': np.dtype(np.int64),
    'IntStorage': np.dtype(np.int32),
    'ShortStorage': np.dtype(np.int16),
    'CharStorage': np.dtype(np.int8),
    'ByteStorage': np.dtype(np.uint8),
    'BoolStorage': np.dtype(np.bool_),
}

# torch dtype objects (`torch.float32` pickles as the global `torch float32`).
_TORCH_DTYPES: Mapping[str, np.dtype] = {
    'float64': np.dtype(np.float64), 'double': np.dtype(np.float64),
    'float32': np.dtype(np.float32), 'float': np.dtype(np.float32),
    'float16': np.dtype(np.float16), 'half': np.dtype(np.float16),
    'bfloat16': np.dtype(ml_dtypes.bfloat16),
    'int64': np.dtype(np.int64), 'long': np.dtype(np.int64),
    'int32': np.dtype(np.int32), 'int': np.dtype(np.int32),
    'int16': np.dtype(np.int16), 'short': np.dtype(np.int16),
    'int8': np.dtype(np.int8), 'uint8': np.dtype(np.uint8), 'bool': np.dtype(np.bool_),
}

# The first pickle of a legacy (pre-1.6) file is this number.
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001
_ALIGNMENT = 64  # torch aligns every record so that storages can be mmapped


class _StorageType:
  """Stands in for a torch storage class (e.g. `torch.FloatStorage`)."""

  def __init__(self, name: str, dtype: np.dtype):
    self.name = name
    self.dtype = dtype


class _Storage:
  """A flat storage: `data` is a 1-D array of `numel` elements.

  Legacy files store the bytes after the pickle, so the array is allocated
  first and filled once the pickle has been read.
  """

  def __init__(self, data: np.ndarray):
    self.data = data


class _PendingTensor:
  """A tensor whose storage may not be filled yet; `materialize` copies it out."""

  def __init__(self, storage: _Storage, offset: int, size, stride):
    self.storage, self.offset = storage, int(offset)
    self.size = tuple(int(s) for s in size)
    self.stride = tuple(int(s) for s in stride)

  def to_numpy(self, where: str) -> np.ndarray:
    data = self.storage.data
    if any(s < 0 for s in self.size) or any(s < 0 for s in self.stride):
      raise ValueError(f'{where}: tensor with negative size or stride {self.size}, {self.stride}')
    if 0 in self.size:
      return np.zeros(self.size, data.dtype)
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if self.offset < 0 or last >= data.size:
      raise ValueError(
          f'{where}: a tensor of size {self.size}, stride {self.stride} at offset '
          f'{self.offset} reaches past its storage of {data.size} elements')
    view = np.lib.stride_tricks.as_strided(
        data[self.offset:], shape=self.size,
        strides=tuple(s * data.itemsize for s in self.stride), writeable=False)
    return view.copy()


def _rebuild_tensor(storage, storage_offset, size, stride):
  if not isinstance(storage, _Storage):
    raise pickle.UnpicklingError(f'a tensor over {type(storage).__name__}, not a storage')
  return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
                       backward_hooks, metadata=None):
  del requires_grad, backward_hooks, metadata  # autograd state: nothing to keep
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
  del requires_grad, backward_hooks, state
  return data


def _scalar_factory():
  return _multiarray.scalar


def _allowed_globals() -> dict[tuple[str, str], Callable[[], Any]]:
  """(module, name) -> factory of the object `find_class` returns.

  Each call makes fresh objects, so that a file cannot change the reader for
  the next one (a pickle may BUILD state onto any object it can name).
  """
  fresh = lambda fn: (lambda: functools.partial(fn))
  allowed = {
      ('torch._utils', '_rebuild_tensor'): fresh(_rebuild_tensor),
      ('torch._utils', '_rebuild_tensor_v2'): fresh(_rebuild_tensor_v2),
      ('torch._utils', '_rebuild_parameter'): fresh(_rebuild_parameter),
      ('torch._utils', '_rebuild_parameter_with_state'): fresh(_rebuild_parameter),
      ('collections', 'OrderedDict'): lambda: collections.OrderedDict,
      ('numpy', 'dtype'): lambda: np.dtype,
      ('numpy.core.multiarray', 'scalar'): _scalar_factory,
      ('numpy._core.multiarray', 'scalar'): _scalar_factory,
      # Protocol 2 spells bytes (a numpy scalar's payload) as _codecs.encode(str).
      ('_codecs', 'encode'): lambda: codecs.encode,
      # A storage saved on its own is untyped: its elements are bytes.
      ('torch.storage', 'UntypedStorage'):
          lambda: _StorageType('UntypedStorage', np.dtype(np.uint8)),
      ('torch', 'UntypedStorage'): lambda: _StorageType('UntypedStorage', np.dtype(np.uint8)),
  }
  for name, dtype in STORAGE_DTYPES.items():
    allowed[('torch', name)] = lambda name=name, dtype=dtype: _StorageType(name, dtype)
  for name, dtype in _TORCH_DTYPES.items():
    allowed[('torch', name)] = lambda dtype=dtype: dtype
  return allowed


class _Unpickler(RestrictedUnpickler):
  """The allow-list unpickler with torch's persistent ids for storages."""

  def __init__(self, file, *, where: str, storage: Callable[[tuple], _Storage]):
    super().__init__(file, allowed=_allowed_globals(), where=where, encoding='latin1')
    self._storage = storage

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == 'storage'):
      raise pickle.UnpicklingError(f'unsupported persistent id {pid!r:.80}')
    if len(pid) < 5 or not isinstance(pid[1], _StorageType):
      raise pickle.UnpicklingError(f'malformed storage id {pid!r:.80}')
    return self._storage(pid)


def _materialize(obj: Any, where: str, seen: set[int] | None = None) -> Any:
  """Replaces every `_PendingTensor` nested in dicts/lists/tuples by an ndarray."""
  seen = set() if seen is None else seen
  if isinstance(obj, _PendingTensor):
    return obj.to_numpy(where)
  if isinstance(obj, _Storage):
    return obj.data.copy()
  if id(obj) in seen:
    return obj
  if isinstance(obj, dict):  # in place: keeps OrderedDict and its attributes
    seen.add(id(obj))
    for k, v in obj.items():
      obj[k] = _materialize(v, f'{where}[{k!r}]', seen)
  elif isinstance(obj, list):
    seen.add(id(obj))
    obj[:] = [_materialize(v, f'{where}[{i}]', seen) for i, v in enumerate(obj)]
  elif isinstance(obj, tuple):
    return tuple(_materialize(v, f'{where}[{i}]', seen) for i, v in enumerate(obj))
  return obj


def _load_zip(archive: zipfile.ZipFile, where: str) -> Any:
  pickles = [n for n in archive.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
  if len(pickles) != 1:
    raise ValueError(f'{where}: a zip archive but not a torch.save file '
                     f'(no single <prefix>/data.pkl among {archive.namelist()[:8]})')
  prefix = pickles[0][:-len('data.pkl')]
  names = set(archive.namelist())
  order = '<'
  if prefix + 'byteorder' in names:
    byteorder = archive.read(prefix + 'byteorder').decode().strip()
    if byteorder not in ('little', 'big'):
      raise ValueError(f'{where}: unknown byteorder {byteorder!r}')
    order = '<' if byteorder == 'little' else '>'
  storages: dict[str, _Storage] = {}

  def storage(pid):
    _, storage_type, key, _location, numel = pid[:5]
    key = str(key)
    if key not in storages:
      name = f'{prefix}data/{key}'
      if name not in names:
        raise ValueError(f'{where}: storage {name} is missing from the archive')
      raw = archive.read(name)
      dtype = storage_type.dtype.newbyteorder(order)
      if int(numel) * dtype.itemsize > len(raw):
        raise ValueError(f'{where}: storage {name} holds {len(raw)} bytes, '
                         f'{numel} {storage_type.name} elements need more')
      data = np.frombuffer(raw, dtype, count=int(numel))
      storages[key] = _Storage(data.astype(dtype.newbyteorder('=')))
    return storages[key]

  obj = _Unpickler(io.BytesIO(archive.read(pickles[0])), where=where, storage=storage).load()
  return _materialize(obj, where)


def _load_legacy(f: io.BytesIO, where: str) -> Any:
  """The pre-1.6 format: magic, protocol, sys_info, object, storage keys, storages."""
  plain = lambda: RestrictedUnpickler(f, allowed={}, where=where, encoding='latin1').load()
  if plain() != _LEGACY_MAGIC:
    raise ValueError(f'{where}: not a torch.save file')
  protocol = plain()
  if protocol != _LEGACY_PROTOCOL:
    raise ValueError(f'{where}: legacy torch file of unknown protocol {protocol!r}')
  sys_info = plain()
  order = '<' if sys_info.get('little_endian', True) else '>'
  roots: dict[str, _Storage] = {}

  def storage(pid):
    _, storage_type, key, _location, numel = pid[:5]
    key = str(key)
    if key not in roots:
      roots[key] = _Storage(np.zeros(int(numel), storage_type.dtype))
    view = pid[5] if len(pid) > 5 else None
    if view is None:
      return roots[key]
    # (view_key, offset, size): a storage view, an old way to share memory.
    _view_key, offset, size = view
    root = roots[key]
    return _Storage(root.data[int(offset):int(offset) + int(size)])

  obj = _Unpickler(f, where=where, storage=storage).load()
  keys = plain()
  for key in keys:
    root = roots.get(str(key))
    if root is None:
      raise ValueError(f'{where}: storage {key} is listed but not used')
    header = f.read(8)
    if len(header) != 8:
      raise ValueError(f'{where}: truncated legacy torch file (storage {key})')
    (numel,) = struct.unpack(order + 'q', header)
    raw = f.read(numel * root.data.itemsize)
    if numel != root.data.size or len(raw) != root.data.nbytes:
      raise ValueError(f'{where}: truncated or inconsistent storage {key} in a legacy torch file')
    root.data[:] = np.frombuffer(raw, root.data.dtype.newbyteorder(order))
  return _materialize(obj, where)


def load(path: str | os.PathLike) -> Any:
  """Reads a `torch.save` file; tensors become numpy arrays.

  Args:
    path: a `.pth` / `.pth.tar` file (zip format, or the legacy format).
  Returns:
    The saved object: dicts (OrderedDicts stay OrderedDicts), lists, tuples,
    Python scalars and an `np.ndarray` (own memory, native byte order) for
    every tensor.
  Raises:
    UnsafePickleError: the pickle names a global outside the allow-list.
    ValueError: the file is not a readable torch.save file (truncated, corrupt,
      another format); the message names the file.
  """
  where = str(path)
  with open(path, 'rb') as f:
    raw = f.read()
  try:
    if raw[:2] == b'PK':
      try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
      except zipfile.BadZipFile as e:
        raise ValueError(f'{where}: truncated or corrupt zip archive ({e}); '
                         'the torch.save file is incomplete') from e
      return _load_zip(archive, where)
    if raw[:2] == b'\x80\x02':
      return _load_legacy(io.BytesIO(raw), where)
    if len(raw) > 262 and raw[257:262] == b'ustar':
      raise ValueError(f'{where}: the tar format of torch < 0.4 is not supported; '
                       're-save it with a current torch: torch.save(torch.load(p), p)')
    raise ValueError(f'{where}: not a torch.save file (starts with {raw[:8]!r})')
  except UnsafePickleError:
    raise
  except ValueError as e:
    if where in str(e):
      raise
    raise ValueError(f'{where}: unreadable torch.save file ({e})') from e
  except Exception as e:  # truncated or corrupt streams raise many types
    raise ValueError(f'{where}: unreadable torch.save file ({type(e).__name__}: {e})') from e


# ---------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------

_STORAGE_NAMES = {dtype: name for name, dtype in STORAGE_DTYPES.items()}


def _global(module: str, name: str) -> bytes:
  return pickle.GLOBAL + f'{module}\n{name}\n'.encode()


class _Writer:
  """Emits a protocol-2 pickle of plain data, with arrays as torch tensors.

  Writing the opcodes ourselves lets the stream name `torch._utils` and
  `torch.FloatStorage` (GLOBAL opcodes are just text) without importing torch;
  pickle's own Pickler would import them to check the names. No memo is used:
  nothing is shared except storages, and those are persistent ids.
  """

  def __init__(self):
    self.out = io.BytesIO()
    self.storages: list[np.ndarray] = []  # storage i is record data/<i>

  def dumps(self, obj) -> bytes:
    self.out.write(pickle.PROTO + b'\x02')
    self.write(obj)
    self.out.write(pickle.STOP)
    return self.out.getvalue()

  def write(self, obj):
    w = self.out.write
    if obj is None:
      w(pickle.NONE)
    elif isinstance(obj, bool):
      w(pickle.NEWTRUE if obj else pickle.NEWFALSE)
    elif isinstance(obj, int):
      self.write_int(obj)
    elif isinstance(obj, float):
      w(pickle.BINFLOAT + struct.pack('>d', obj))
    elif isinstance(obj, str):
      data = obj.encode('utf-8', 'surrogatepass')
      w(pickle.BINUNICODE + struct.pack('<I', len(data)) + data)
    elif isinstance(obj, np.generic):
      self.write(obj.item())
    elif isinstance(obj, Mapping):
      if isinstance(obj, collections.OrderedDict):
        w(_global('collections', 'OrderedDict') + pickle.EMPTY_TUPLE + pickle.REDUCE)
      else:
        w(pickle.EMPTY_DICT)
      if obj:
        w(pickle.MARK)
        for k, v in obj.items():
          self.write(k)
          self.write(v)
        w(pickle.SETITEMS)
    elif isinstance(obj, list):
      w(pickle.EMPTY_LIST)
      if obj:
        w(pickle.MARK)
        for v in obj:
          self.write(v)
        w(pickle.APPENDS)
    elif isinstance(obj, tuple):
      self.write_tuple(obj)
    elif isinstance(obj, np.ndarray) or hasattr(obj, '__array__'):
      self.write_tensor(np.asarray(obj))
    else:
      raise TypeError(f'cannot write a {type(obj).__name__} into a torch checkpoint')

  def write_int(self, n: int):
    if 0 <= n < 1 << 8:
      self.out.write(pickle.BININT1 + bytes([n]))
    elif 0 <= n < 1 << 16:
      self.out.write(pickle.BININT2 + struct.pack('<H', n))
    elif -(1 << 31) <= n < 1 << 31:
      self.out.write(pickle.BININT + struct.pack('<i', n))
    else:
      data = n.to_bytes((n.bit_length() + 8) // 8, 'little', signed=True)
      self.out.write(pickle.LONG1 + bytes([len(data)]) + data)

  def write_tuple(self, items: tuple):
    if not items:
      self.out.write(pickle.EMPTY_TUPLE)
      return
    if len(items) > 3:
      self.out.write(pickle.MARK)
    for v in items:
      self.write(v)
    sized = {1: pickle.TUPLE1, 2: pickle.TUPLE2, 3: pickle.TUPLE3}
    self.out.write(sized.get(len(items), pickle.TUPLE))

  def write_tensor(self, array: np.ndarray):
    dtype = array.dtype.newbyteorder('=')
    if dtype not in _STORAGE_NAMES:
      raise TypeError(f'no torch storage type for dtype {array.dtype}')
    # One contiguous little-endian storage per array; strides are in elements.
    data = np.array(array, dtype=dtype.newbyteorder('<'), order='C', copy=True)
    strides = tuple(int(np.prod(array.shape[i + 1:], dtype=np.int64)) for i in range(array.ndim))
    key = str(len(self.storages))
    self.storages.append(data)
    w = self.out.write
    w(_global('torch._utils', '_rebuild_tensor_v2') + pickle.MARK)
    w(pickle.MARK)
    self.write('storage')
    w(_global('torch', _STORAGE_NAMES[dtype]))
    self.write(key)
    self.write('cpu')
    self.write(int(data.size))
    w(pickle.TUPLE + pickle.BINPERSID)
    self.write(0)  # storage offset
    self.write(tuple(int(s) for s in array.shape))
    self.write(strides)
    self.write(False)  # requires_grad
    w(_global('collections', 'OrderedDict') + pickle.EMPTY_TUPLE + pickle.REDUCE)  # hooks
    w(pickle.TUPLE + pickle.REDUCE)


def _write_record(archive: zipfile.ZipFile, f, name: str, data: bytes):
  """Stores one record whose bytes start on a 64-byte boundary, as torch does.

  The padding goes into the local header's extra field (id 'FB', like torch's
  writer): 30 fixed header bytes + name + 4 bytes of extra-field header + pad.
  """
  encoded = name.encode()
  pad = -(f.tell() + 30 + len(encoded) + 4) % _ALIGNMENT
  info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
  info.compress_type = zipfile.ZIP_STORED
  info.extra = b'FB' + struct.pack('<H', pad) + b'Z' * pad
  archive.writestr(info, data)


def save(path: str | os.PathLike, obj: Any, archive_name: str = 'archive') -> None:
  """Writes `obj` as `torch.save` would (zip format, pickle protocol 2).

  Args:
    path: the output file (`.pth` / `.pth.tar`).
    obj: nested dicts (OrderedDicts stay OrderedDicts), lists, tuples, None,
      bools, ints, floats, strs and arrays. Every array (numpy, or anything
      with `__array__`, e.g. a jax.Array) becomes a contiguous CPU tensor with
      its own storage; numpy scalars become Python scalars.
    archive_name: the records' top folder.
  """
  writer = _Writer()
  pickled = writer.dumps(obj)
  # Written under a temporary name and renamed when complete (h4w_jax.common.atomic).
  with atomic.open_for_writing(path) as f, zipfile.ZipFile(f, 'w', zipfile.ZIP_STORED) as archive:
    _write_record(archive, f, f'{archive_name}/data.pkl', pickled)
    _write_record(archive, f, f'{archive_name}/.format_version', b'1')
    _write_record(archive, f, f'{archive_name}/.storage_alignment', str(_ALIGNMENT).encode())
    _write_record(archive, f, f'{archive_name}/byteorder', b'little')
    for i, data in enumerate(writer.storages):
      _write_record(archive, f, f'{archive_name}/data/{i}', data.tobytes())
    _write_record(archive, f, f'{archive_name}/version', b'3\n')


__all__ = ['load', 'save', 'STORAGE_DTYPES', 'UnsafePickleError']
