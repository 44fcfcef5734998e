"""Restricted readers for pickled body-model files.

The official SMPL, MANO and FLAME pickles were written by Python 2 with chumpy
installed: some arrays are `chumpy.ch.Ch` objects and `J_regressor` is a scipy
sparse matrix. chumpy does not run on current Python/numpy, and a plain
`pickle.load` of a file from the internet may run arbitrary code. So we
unpickle with an allow-list: numpy's array reconstruction, a chumpy `Ch`
stand-in that keeps only its value, and a sparse-matrix stand-in that keeps
its index arrays. Any other global in the stream is refused before anything
is built, and the error names the file and the global.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import copyreg
import io
import os
import pickle
import zipfile
from typing import Any, Callable, Mapping

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle referenced a global outside the allow-list."""


class _ChumpyStandIn:
  """Receives a chumpy object's pickled state; `to_numpy` returns its value."""

  def __setstate__(self, state):
    self.state = state

  def to_numpy(self, where: str) -> np.ndarray:
    state = getattr(self, 'state', None)
    if not isinstance(state, dict) or 'x' not in state:
      raise ValueError(
          f'{where}: a chumpy {type(self).__name__} without a stored value '
          "('x'); only plain chumpy.ch.Ch arrays can be read without chumpy")
    return np.asarray(state['x'])


class _SparseStandIn:
  """Receives a scipy.sparse csc/csr matrix's pickled state."""

  compressed_axis = 1  # csc: indptr runs over columns

  def __setstate__(self, state):
    self.state = state

  def to_numpy(self, where: str) -> np.ndarray:
    state = self.state
    try:
      shape = tuple(int(s) for s in state.get('_shape', state.get('shape')))
      data = np.asarray(state['data'])
      indices = np.asarray(state['indices'], dtype=np.int64)
      indptr = np.asarray(state['indptr'], dtype=np.int64)
    except (KeyError, TypeError, AttributeError) as e:
      raise ValueError(f'{where}: malformed sparse matrix state ({e})') from e
    dense = np.zeros(shape, dtype=data.dtype)
    counts = np.diff(indptr)
    outer = np.repeat(np.arange(len(counts)), counts)
    if self.compressed_axis == 1:
      np.add.at(dense, (indices, outer), data)
    else:
      np.add.at(dense, (outer, indices), data)
    return dense


class _CscStandIn(_SparseStandIn):
  compressed_axis = 1


class _CsrStandIn(_SparseStandIn):
  compressed_axis = 0


try:  # numpy >= 2 moved the internals; old pickles still name numpy.core
  from numpy._core import multiarray as _multiarray
  from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
  from numpy.core import multiarray as _multiarray
  from numpy.core import numeric as _numeric


_NUMPY_ALLOWED = {
    ('numpy', 'ndarray'): lambda: np.ndarray,
    ('numpy', 'dtype'): lambda: np.dtype,
    ('numpy.core.multiarray', '_reconstruct'): lambda: _multiarray._reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): lambda: _multiarray._reconstruct,
    ('numpy.core.multiarray', 'scalar'): lambda: _multiarray.scalar,
    ('numpy._core.multiarray', 'scalar'): lambda: _multiarray.scalar,
    ('numpy.core.numeric', '_frombuffer'): lambda: _numeric._frombuffer,
    ('numpy._core.numeric', '_frombuffer'): lambda: _numeric._frombuffer,
    ('copyreg', '_reconstructor'): lambda: copyreg._reconstructor,
    # Protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str).
    ('_codecs', 'encode'): lambda: codecs.encode,
    ('builtins', 'object'): lambda: object,
    ('builtins', 'set'): lambda: set,
    ('builtins', 'frozenset'): lambda: frozenset,
    ('collections', 'OrderedDict'): lambda: __import__('collections').OrderedDict,
}

_STAND_INS = {
    ('chumpy.ch', 'Ch'): _ChumpyStandIn,
    ('scipy.sparse.csc', 'csc_matrix'): _CscStandIn,
    ('scipy.sparse._csc', 'csc_matrix'): _CscStandIn,
    ('scipy.sparse.csr', 'csr_matrix'): _CsrStandIn,
    ('scipy.sparse._csr', 'csr_matrix'): _CsrStandIn,
}

BODY_MODEL_GLOBALS: Mapping[tuple[str, str], Callable[[], Any]] = {
    **_NUMPY_ALLOWED,
    **{k: (lambda v=v: v) for k, v in _STAND_INS.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
  """An Unpickler that resolves only the globals in `allowed`."""

  def __init__(self, file, *, allowed: Mapping[tuple[str, str], Callable[[], Any]],
               where: str, **kwargs):
    super().__init__(file, **kwargs)
    self._allowed = allowed
    self._where = where

  def find_class(self, module, name):
    # Python 2 names (__builtin__, copy_reg) mean what pickle's fix_imports maps them to.
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    factory = self._allowed.get((module, name))
    if factory is None:
      raise UnsafePickleError(
          f'{self._where}: refusing to unpickle global {module}.{name}: it is '
          'not on the allow-list of this reader (a model file needs only '
          'numpy arrays, chumpy Ch arrays and scipy sparse matrices)')
    return factory()


def plain(obj: Any, where: str) -> Any:
  """Replaces chumpy and sparse stand-ins (nested in dicts/lists) by ndarrays."""
  if isinstance(obj, (_ChumpyStandIn, _SparseStandIn)):
    return obj.to_numpy(where)
  if isinstance(obj, dict):
    return {k: plain(v, f'{where}[{k!r}]') for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(plain(v, where) for v in obj)
  return obj


def loads(data: bytes, *, where: str,
          allowed: Mapping[tuple[str, str], Callable[[], Any]] = BODY_MODEL_GLOBALS
          ) -> Any:
  """Unpickles `data` with the allow-list; `where` names the source in errors."""
  try:
    obj = RestrictedUnpickler(io.BytesIO(data), allowed=allowed, where=where,
                              encoding='latin1').load()
  except UnsafePickleError:
    raise
  except Exception as e:  # truncated or corrupt streams raise many types
    raise ValueError(f'{where}: not a readable pickle ({type(e).__name__}: {e})') from e
  return plain(obj, where)


def load_pickle(path: str | os.PathLike, **kwargs) -> Any:
  """Reads a pickle file through the allow-list (see `loads`)."""
  with open(path, 'rb') as f:
    data = f.read()
  return loads(data, where=str(path), **kwargs)


def _read_npy(f, where: str) -> np.ndarray:
  """Reads one .npy stream; object arrays go through the allow-list."""
  version = np.lib.format.read_magic(f)
  read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                 else np.lib.format.read_array_header_2_0)
  _, _, dtype = read_header(f)
  if not dtype.hasobject:
    f.seek(0)
    return np.lib.format.read_array(f, allow_pickle=False)
  obj = loads(f.read(), where=where)
  return np.asarray(obj) if not isinstance(obj, np.ndarray) else obj


def load_npy(path: str | os.PathLike) -> Any:
  """Reads a .npy file; a pickled object array (e.g. a dict) is unpickled
  through the allow-list and returned as the object itself."""
  try:
    with open(path, 'rb') as f:
      arr = _read_npy(f, str(path))
  except (UnsafePickleError, ValueError):
    raise
  except Exception as e:
    raise ValueError(f'{path}: not a readable .npy file ({type(e).__name__}: {e})') from e
  if arr.dtype == object and arr.shape == ():
    return arr[()]
  return arr


class NpzReader(Mapping):
  """Lazy, pickle-free access to an .npz archive; object arrays are read only
  if asked for, through the allow-list."""

  def __init__(self, path: str | os.PathLike):
    self.path = str(path)
    try:
      self._zip = zipfile.ZipFile(self.path)
      self._names = {n[:-4]: n for n in self._zip.namelist() if n.endswith('.npy')}
    except (zipfile.BadZipFile, OSError) as e:
      raise ValueError(f'{self.path}: not a readable .npz archive ({e})') from e

  def __getitem__(self, key):
    if key not in self._names:
      raise KeyError(key)
    where = f'{self.path}[{key!r}]'
    try:
      with self._zip.open(self._names[key]) as member:
        buf = io.BytesIO(member.read())
      arr = _read_npy(buf, where)
    except (UnsafePickleError, ValueError):
      raise
    except Exception as e:
      raise ValueError(f'{where}: unreadable array ({type(e).__name__}: {e})') from e
    if arr.dtype == object and arr.shape == ():
      return arr[()]
    return arr

  def __contains__(self, key):
    return key in self._names

  def __iter__(self):
    return iter(self._names)

  def __len__(self):
    return len(self._names)


__all__ = ['UnsafePickleError', 'RestrictedUnpickler', 'BODY_MODEL_GLOBALS',
           'loads', 'load_pickle', 'load_npy', 'NpzReader', 'plain']
