"""Synthetic stand-ins for the licensed body-model files (SMPL-X, SMPL, MANO, FLAME).

The real SMPL-X / SMPL / MANO / FLAME model files are distributed under licences
that forbid redistribution, so they can never live in this repository.  This
module generates *synthetic* files that have exactly the official layout,
keys, dtypes, shapes and vertex/face counts, so that every loader, test and the
quickstart can run without the real models:

* the folder layout is that of Hand4Whole's ``common/utils/human_model_files``;
* the meshes are a procedurally built, roughly human-shaped mannequin (tubes,
  ellipsoids and branched sweeps) -- **not** the licensed models, and no data
  of the licensed models is contained or derived here;
* blend shapes, pose correctives, PCA hand spaces and landmark embeddings are
  smooth, plausible but random (seeded) fields;
* the extra-joint vertex ids used by the PyPI ``smplx`` package (nose, eyes,
  ears, toes, heels, fingertips) are placed at anatomically matching vertices.

Coordinates follow the SMPL family convention: metres, +Y up, +Z forward (the
face looks toward +Z) and +X is the body's LEFT side.  The pelvis joint is at
the origin, the template stands in a T-pose (arms along +-X, palms down,
thumbs forward); the neutral SMPL-X / SMPL body is 1.70 m tall (feet at
y = -0.955, head top at y = 0.745), male 1.78 m, female 1.62 m.  MANO: right
hand with the wrist joint at the origin and fingers along -X (the left hand
is its exact mirror x -> -x); FLAME: the head with the centre of its neck
opening at the origin.

What a reader of these files can rely on:

* SMPL-X is one closed surface plus two separate eyeball spheres, with three
  openings in the face (mouth slit, and one small slit behind each eyeball),
  which is how 10475 vertices / 20908 faces come out exactly.  SMPL is a
  single closed genus-0 surface; MANO is open at the wrist; FLAME is open at
  the neck.  Every face is counter-clockwise seen from outside.
* Regions are consistent across models: MANO vertex ``k`` is SMPL-X vertex
  ``MANO_SMPLX_vertex_ids.pkl[side][k]`` (contiguous ids 4613.. and 7349..),
  FLAME vertex ``i`` is SMPL-X vertex ``SMPL-X__FLAME_vertex_ids.npy[i]``, and
  FLAME's faces are SMPL-X's faces inside that region.  Hand and head vertices
  are skinned only to hand / head joints, so MANO and FLAME weights are the
  SMPL-X ones restricted to the region.
* ``J_regressor @ v_template`` reproduces the designed joint positions to
  within a millimetre; regressor rows are non-negative, sum to one and use 8-14
  vertices; skinning weights use at most 4 joints per vertex.
* MANO fingertips: the tip vertex of each finger is 745 (thumb), 320 (index),
  445 (middle), 556 (ring), 673 (pinky); the other ids in use (PyPI
  ``smplx``: 744, 443, 554, 671; Hand4Whole: 317, 444) lie on the fingertip's
  last ring, within 3 mm of it.  The SMPL-X fingertip ids are the tip vertices
  too, except the thumbs (on the last ring, within 3 mm).
* The seed changes the blend shapes, pose correctives, hand PCA basis and
  coefficients, not the template meshes.

Pickle format.  The official SMPL / MANO / FLAME pickles were written by
Python 2 with ``chumpy`` installed: ``v_template``, ``shapedirs``, ``weights``
and ``J`` are ``chumpy.ch.Ch`` objects (pickled as ``NEWOBJ`` of the global
``chumpy.ch Ch`` followed by ``BUILD`` with the object's ``__dict__``, whose
``'x'`` entry holds the ndarray), ``J_regressor`` is a
``scipy.sparse.csc.csc_matrix`` (old module path, state ``_shape``,
``indices``, ``indptr``, ``data``, ``maxprint``), ndarrays reference
``numpy.core.multiarray._reconstruct`` and their raw bytes are Python-2
``str`` objects (``BINSTRING``), which is why they must be loaded with
``pickle.load(f, encoding='latin1')``.  With ``chumpy=True`` (default) this
module writes exactly such streams (protocol 2) without needing chumpy: the
opcodes are emitted directly.  Loading them with plain ``pickle`` therefore
fails with ``ModuleNotFoundError: No module named 'chumpy'``, just like the
real files on a machine without chumpy.  With ``chumpy=False`` the
"cleaned" variant is written instead (plain ndarrays and a current
``scipy.sparse.csc_matrix``), which is what ``smplx``'s clean-up tool
produces; those load with the PyPI ``smplx`` package.  The SMPL-X ``.npz``
/ ``.pkl`` files and the auxiliary files are identical in both modes (the
SMPL-X pickle, like the official one, also needs ``encoding='latin1'``;
``SMPLX_to_J14.pkl``, ``MANO_SMPLX_vertex_ids.pkl`` and
``flame_static_embedding.pkl`` load with any encoding).

Usage::

    from smplx_jax.synthetic import write_human_model_files
    root = write_human_model_files('/tmp/human_model_files', seed=0)

or ``python -m smplx_jax.synthetic OUT_DIR [--seed N] [--no-chumpy]``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import struct
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import sparse
from scipy.interpolate import PchipInterpolator
from scipy.optimize import nnls
from scipy.spatial import cKDTree

from smplx_jax import vertex_ids

__all__ = [
    'write_human_model_files',
    'status',
    'SMPLX_JOINT_NAMES',
    'SMPLX_PARENTS',
    'SMPL_PARENTS',
    'MANO_PARENTS',
    'FLAME_PARENTS',
    'SMPLX_NUM_VERTS',
    'SMPLX_NUM_FACES',
    'SMPL_NUM_VERTS',
    'SMPL_NUM_FACES',
    'MANO_NUM_VERTS',
    'MANO_NUM_FACES',
    'FLAME_NUM_VERTS',
    'FLAME_NUM_FACES',
]

# ----------------------------------------------------------------------------
# Official sizes and kinematic trees
# ----------------------------------------------------------------------------
SMPLX_NUM_VERTS, SMPLX_NUM_FACES = 10475, 20908
SMPL_NUM_VERTS, SMPL_NUM_FACES = 6890, 13776
MANO_NUM_VERTS, MANO_NUM_FACES = 778, 1538
FLAME_NUM_VERTS, FLAME_NUM_FACES = 5023, 9976

_BODY_NAMES = (
    'pelvis', 'left_hip', 'right_hip', 'spine1', 'left_knee', 'right_knee',
    'spine2', 'left_ankle', 'right_ankle', 'spine3', 'left_foot', 'right_foot',
    'neck', 'left_collar', 'right_collar', 'head', 'left_shoulder',
    'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist')
_FINGERS = ('index', 'middle', 'pinky', 'ring', 'thumb')  # SMPL-X / MANO order
SMPLX_JOINT_NAMES = _BODY_NAMES + ('jaw', 'left_eye_smplhf', 'right_eye_smplhf') + tuple(
    f'{side}_{finger}{k}' for side in ('left', 'right') for finger in _FINGERS
    for k in (1, 2, 3))

SMPLX_PARENTS = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
    15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16,
                17, 18, 19, 20, 21)
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
FLAME_PARENTS = (-1, 0, 1, 1, 1)

# vertex ids that the PyPI ``smplx`` package reads as extra joints
_SMPLX_VIDS = vertex_ids.SMPLX
_SMPL_VIDS = vertex_ids.SMPLH

# SMPL-X vertex-id layout of the regions.  Head (= FLAME topology):
# [0, _H1) U [_H2, V); left hand (= MANO topology, MANO vertex k is SMPL-X
# vertex _L0 + k): [_L0, _L0 + 778); right hand [_R0, _R0 + 778); body: rest.
_H1, _H2 = 3548, 9000
_L0, _R0 = 4613, 7349
# Local (MANO) vertex indices that sit at the fingertips.  The first one of
# each finger is the tip (pole) vertex, the others lie on the last tiny ring
# (< 3 mm from it).  They serve Hand4Whole's MANO fingertips (745, 317, 445,
# 556, 673), the PyPI smplx MANO ids (744, 320, 443, 554, 671) and, through
# the hand offsets _L0/_R0, SMPL-X's fingertip ids (local 748/730 for the
# left/right thumb, 320, 445, 556, 673 for the other fingers of both hands).
_MANO_TIPS = {
    'thumb': (745, 744, 748, 730),   # H4W, smplx-MANO, SMPL-X left, SMPL-X right
    'index': (320, 317),             # smplx-MANO & SMPL-X l/r, H4W
    'middle': (445, 443, 444),       # SMPL-X l/r & H4W, smplx-MANO, H4W (alt)
    'ring': (556, 554),              # SMPL-X l/r & H4W, smplx-MANO
    'pinky': (673, 671),             # SMPL-X l/r & H4W, smplx-MANO
}

_BIG = 4294967295  # root "parent" in the official kintree tables


# ----------------------------------------------------------------------------
# Protocol-2 pickle writer (Python-2 flavoured)
# ----------------------------------------------------------------------------
class _PyObj:
  """An instance to be pickled as ``NEWOBJ(module.name)`` + ``BUILD(state)``."""

  def __init__(self, module: str, name: str, state: dict):
    self.module, self.name, self.state = module, name, state


class _P2Writer:
  """Emit protocol-2 pickle opcodes for a small set of types.

  ``py2=True`` writes text and array bytes as Python-2 ``str`` (``BINSTRING``),
  exactly like the official Python-2 pickles; those must be read with
  ``encoding='latin1'``.  ``py2=False`` writes text as ``BINUNICODE`` and bytes
  the way Python 3 does at protocol 2 (``_codecs.encode(.., 'latin1')``), so the
  stream loads with any ``encoding``.
  """

  def __init__(self, fh, py2: bool = True):
    self.fh, self.py2 = fh, py2

  def dump(self, obj) -> None:
    self.fh.write(b'\x80\x02')
    self._save(obj)
    self.fh.write(b'.')

  # -- scalars ---------------------------------------------------------------
  def _int(self, v: int) -> None:
    w = self.fh.write
    if 0 <= v < 256:
      w(b'K' + bytes((v,)))
    elif 0 <= v < 65536:
      w(b'M' + struct.pack('<H', v))
    elif -2 ** 31 <= v < 2 ** 31:
      w(b'J' + struct.pack('<i', v))
    else:
      n = (v.bit_length() + 8) // 8
      w(b'\x8a' + bytes((n,)) + v.to_bytes(n, 'little', signed=True))

  def _text(self, s: str) -> None:
    if self.py2:
      self._binstring(s.encode('latin1'))
    else:
      b = s.encode('utf-8')
      self.fh.write(b'X' + struct.pack('<I', len(b)) + b)

  def _binstring(self, b) -> None:
    n = len(b)
    if n < 256:
      self.fh.write(b'U' + bytes((n,)))
    else:
      self.fh.write(b'T' + struct.pack('<i', n))
    self.fh.write(b)

  def _bytes(self, b) -> None:
    if self.py2:
      self._binstring(b)
    else:
      self.fh.write(b'c_codecs\nencode\n')
      self._text(bytes(b).decode('latin1'))
      self._text('latin1')
      self.fh.write(b'\x86R')

  def _global(self, module: str, name: str) -> None:
    self.fh.write(b'c' + module.encode() + b'\n' + name.encode() + b'\n')

  # -- containers ------------------------------------------------------------
  def _tuple(self, t) -> None:
    w = self.fh.write
    if len(t) == 0:
      w(b')')
      return
    if len(t) <= 3:
      for x in t:
        self._save(x)
      w((b'\x85', b'\x86', b'\x87')[len(t) - 1])
      return
    w(b'(')
    for x in t:
      self._save(x)
    w(b't')

  def _dtype(self, dt: np.dtype) -> None:
    self._global('numpy', 'dtype')
    self._tuple((dt.kind + str(dt.itemsize), False, True))
    self.fh.write(b'R')
    order = '|' if dt.itemsize == 1 or dt.kind == 'O' else '<'
    self._tuple((3, order, None, None, None, -1, -1, 63 if dt.kind == 'O' else 0))
    self.fh.write(b'b')

  def _ndarray(self, a: np.ndarray) -> None:
    if a.dtype.kind not in 'fiubO':
      raise TypeError(f'cannot pickle dtype {a.dtype}')
    if a.dtype.kind == 'O':  # object arrays store a list of their elements
      self._global('numpy.core.multiarray', '_reconstruct')
      self._global('numpy', 'ndarray')
      self._tuple((0,))
      self._bytes(b'b')
      self.fh.write(b'\x87R(')
      self._int(1)
      self._tuple(tuple(int(s) for s in a.shape))
      self._dtype(a.dtype)
      self.fh.write(b'\x89')
      self._save(list(a.ravel()))
      self.fh.write(b'tb')
      return
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == '>':
      a = a.astype(a.dtype.newbyteorder('<'))
    w = self.fh.write
    self._global('numpy.core.multiarray', '_reconstruct')
    self._global('numpy', 'ndarray')
    self._tuple((0,))
    self._bytes(b'b')
    w(b'\x87R(')
    self._int(1)
    self._tuple(tuple(int(s) for s in a.shape))
    self._dtype(a.dtype)
    w(b'\x89')
    self._bytes(memoryview(a).cast('B'))
    w(b'tb')

  def _save(self, obj) -> None:
    w = self.fh.write
    if obj is None:
      w(b'N')
    elif obj is True:
      w(b'\x88')
    elif obj is False:
      w(b'\x89')
    elif isinstance(obj, _PyObj):
      self._global(obj.module, obj.name)
      w(b')\x81')
      self._save(obj.state)
      w(b'b')
    elif isinstance(obj, np.ndarray):
      self._ndarray(obj)
    elif isinstance(obj, (int, np.integer)):
      self._int(int(obj))
    elif isinstance(obj, (float, np.floating)):
      w(b'G' + struct.pack('>d', float(obj)))
    elif isinstance(obj, str):
      self._text(obj)
    elif isinstance(obj, (bytes, bytearray)):
      self._bytes(bytes(obj))
    elif isinstance(obj, tuple):
      self._tuple(obj)
    elif isinstance(obj, list):
      w(b']')
      if obj:
        w(b'(')
        for x in obj:
          self._save(x)
        w(b'e')
    elif isinstance(obj, (set, frozenset)):
      self._global('__builtin__', 'set')
      self._save(sorted(obj))
      w(b'\x85R')
    elif isinstance(obj, dict):
      w(b'}')
      if obj:
        w(b'(')
        for k, v in obj.items():
          self._save(k)
          self._save(v)
        w(b'u')
    else:
      raise TypeError(f'cannot pickle {type(obj)!r}')


def _chumpy(x: np.ndarray) -> _PyObj:
  """Stand-in for a pickled ``chumpy.ch.Ch`` wrapping ``x``."""
  return _PyObj('chumpy.ch', 'Ch', {'x': np.ascontiguousarray(x), '_dirty_vars': set(),
                                    '_itr': None, '_depends_on_deps': {}})


def _old_csc(m: sparse.spmatrix) -> _PyObj:
  """Stand-in for an old-scipy ``scipy.sparse.csc.csc_matrix``."""
  m = sparse.csc_matrix(m)
  m.sort_indices()
  return _PyObj('scipy.sparse.csc', 'csc_matrix', {
      '_shape': (int(m.shape[0]), int(m.shape[1])),
      'indices': m.indices.astype(np.int32), 'indptr': m.indptr.astype(np.int32),
      'data': m.data.astype(np.float64), 'maxprint': 50})


def _new_csc(m: sparse.spmatrix) -> _PyObj:
  """A current ``scipy.sparse.csc_matrix``, pickled the way pickle itself does."""
  m = sparse.csc_matrix(m)
  m.sort_indices()
  state = {}
  for k, v in m.__dict__.items():
    if k == '_shape':
      v = (int(v[0]), int(v[1]))
    elif isinstance(v, np.integer):
      v = int(v)
    state[k] = v
  cls = type(m)
  return _PyObj(cls.__module__, cls.__qualname__, state)


_PARTIAL = '.partial-'


@contextlib.contextmanager
def _atomic_open(path):
  """Writes under a temporary name, renamed to ``path`` when complete: a killed run leaves
  no half-written model file under the official name."""
  path = pathlib.Path(path)
  tmp = path.with_name(f'{path.name}{_PARTIAL}{os.getpid()}')
  try:
    with open(tmp, 'wb') as fh:
      yield fh
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def _write_pickle(path, obj, py2: bool = True) -> None:
  with _atomic_open(path) as fh:
    _P2Writer(fh, py2=py2).dump(obj)


def _write_npy(fh, arr: np.ndarray) -> None:
  """``np.save`` to an open file; object arrays are pickled (protocol 2) with the
  ``numpy.core`` paths that every numpy version reads (numpy 2 itself would
  write ``numpy._core``, which numpy 1.x cannot unpickle)."""
  arr = np.asanyarray(arr)
  if arr.dtype.kind != 'O':
    np.lib.format.write_array(fh, arr, allow_pickle=False)
    return
  np.lib.format.write_array_header_1_0(
      fh, {'descr': '|O', 'fortran_order': False, 'shape': arr.shape})
  _P2Writer(fh, py2=False).dump(arr)


def _write_npz(path, arrays: Dict[str, np.ndarray]) -> None:
  """``np.savez`` equivalent with fixed zip timestamps (byte-reproducible)."""
  with _atomic_open(path) as out, \
      zipfile.ZipFile(out, 'w', compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
    for key, val in arrays.items():
      info = zipfile.ZipInfo(key + '.npy', date_time=(1980, 1, 1, 0, 0, 0))
      info.compress_type = zipfile.ZIP_STORED
      info.external_attr = 0o644 << 16
      with zf.open(info, 'w', force_zip64=True) as fh:
        _write_npy(fh, val)


def _save_npy(path, arr) -> None:
  with _atomic_open(path) as fh:
    _write_npy(fh, arr)


# ----------------------------------------------------------------------------
# Small geometry toolkit: rings, zipper strips, caps, lofts
# ----------------------------------------------------------------------------
def _unit(v) -> np.ndarray:
  v = np.asarray(v, dtype=np.float64)
  return v / np.linalg.norm(v)


def _cross3(a, b) -> np.ndarray:
  return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2],
                   a[0] * b[1] - a[1] * b[0]])


def _frame(axis, up=None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  d = _unit(axis)
  if up is None:
    up = (0.0, 1.0, 0.0) if abs(d[1]) < 0.9 else (0.0, 0.0, 1.0)
  up = np.asarray(up, dtype=np.float64)
  u = up - d * np.dot(up, d)
  u /= np.linalg.norm(u)
  return d, u, _cross3(d, u)


def _ring_pts(center, axis, up, a, b, n, p=2.0, phase=0.0) -> np.ndarray:
  """``n`` points of a (super)ellipse: half-axis ``a`` along ``up``, ``b`` along axis x up."""
  _, u, w = _frame(axis, up)
  phi = phase + 2.0 * np.pi * np.arange(n) / n
  c, s = np.cos(phi), np.sin(phi)
  if p != 2.0:
    c = np.sign(c) * np.abs(c) ** (2.0 / p)
    s = np.sign(s) * np.abs(s) ** (2.0 / p)
  return np.asarray(center, float) + a * c[:, None] * u + b * s[:, None] * w


def _perimeter(a, b, p=2.0) -> float:
  h = ((a - b) / (a + b)) ** 2 if a + b > 0 else 0.0
  per = np.pi * (a + b) * (1 + 3 * h / (10 + np.sqrt(4 - 3 * h)))
  return float(per * (1.0 + 0.08 * (p - 2.0)))


def _wrap(x):
  return (np.asarray(x) + np.pi) % (2 * np.pi) - np.pi


class _Mesh:
  """Growing triangle mesh with an integer tag per vertex."""

  def __init__(self, cap: int = 4096):
    self.P = np.zeros((cap, 3))
    self.tag = np.zeros(cap, np.int32)
    self.n = 0
    self.F: List[np.ndarray] = []

  def add(self, pts, tag: int) -> np.ndarray:
    pts = np.atleast_2d(np.asarray(pts, dtype=np.float64))
    k = len(pts)
    while self.n + k > len(self.P):
      self.P = np.concatenate([self.P, np.zeros_like(self.P)])
      self.tag = np.concatenate([self.tag, np.zeros_like(self.tag)])
    self.P[self.n:self.n + k] = pts
    self.tag[self.n:self.n + k] = tag
    idx = np.arange(self.n, self.n + k)
    self.n += k
    return idx

  def tris(self, t) -> np.ndarray:
    t = np.asarray(t, dtype=np.int64).reshape(-1, 3)
    self.F.append(t)
    return t

  def faces(self) -> np.ndarray:
    return np.concatenate(self.F) if self.F else np.zeros((0, 3), np.int64)

  def verts(self) -> np.ndarray:
    return self.P[:self.n].copy()

  def insert(self, P, F, tags) -> int:
    off = self.n
    self.add(P, 0)
    self.tag[off:self.n] = tags
    self.F.append(np.asarray(F, np.int64) + off)
    return off


def _polar(P, c, u, w):
  Q = P - c
  return np.arctan2(Q @ w, Q @ u)


def _signed_area(P, c, u, w) -> float:
  Q = P - c
  x, y = Q @ u, Q @ w
  return 0.5 * float(x[:-1] @ y[1:] - x[1:] @ y[:-1] + x[-1] * y[0] - x[0] * y[-1])


def _orient(M: _Mesh, L, c, u, w):
  L = np.asarray(L)
  return L if _signed_area(M.P[L], c, u, w) >= 0 else L[::-1]


_TIE = 1e-9


def _first_min(values) -> int:
  """Index of the first value within _TIE of the minimum (a CPU-independent argmin)."""
  values = np.asarray(values)
  return int(np.flatnonzero(values <= values.min() + _TIE)[0])


def _stitch(M: _Mesh, A, B, axis=None) -> np.ndarray:
  """Zipper-triangulate the strip between loops ``A`` and ``B`` (outward normals)."""
  A, B = np.asarray(A), np.asarray(B)
  PA, PB = M.P[A], M.P[B]
  ca, cb = PA.mean(0), PB.mean(0)
  _, u, w = _frame(cb - ca if axis is None else axis)
  A, B = _orient(M, A, ca, u, w), _orient(M, B, cb, u, w)
  ta, tb = _polar(M.P[A], ca, u, w), _polar(M.P[B], cb, u, w)
  j0 = _first_min(np.abs(_wrap(tb - ta[0])))
  B = np.concatenate([B[j0:], B[:j0]])
  tb = np.concatenate([tb[j0:], tb[:j0]])
  na, nb = len(A), len(B)
  A, B = A.tolist(), B.tolist()
  ua = ta[0] + np.concatenate([[0.0], np.cumsum(_wrap(np.diff(ta)))])
  ub = ta[0] + _wrap(tb[0] - ta[0]) + np.concatenate([[0.0], np.cumsum(_wrap(np.diff(tb)))])
  ua = np.append(ua, ua[0] + 2 * np.pi)
  ub = np.append(ub, ub[0] + 2 * np.pi)
  out = []
  i = j = 0
  while i < na or j < nb:
    # Aligned rings make exact ties common: a tolerance keeps the choice the same
    # whatever the last bit of the angles (which differs between CPUs' libm).
    if j >= nb or (i < na and ua[i + 1] <= ub[j + 1] + _TIE):
      out.append((A[i], A[(i + 1) % na], B[j % nb]))
      i += 1
    else:
      out.append((A[i % na], B[(j + 1) % nb], B[j]))
      j += 1
  return M.tris(out)


def _cap(M: _Mesh, R, pole: int, axis=None) -> np.ndarray:
  R = np.asarray(R)
  c = M.P[R].mean(0)
  _, u, w = _frame(M.P[pole] - c if axis is None else axis)
  R = _orient(M, R, c, u, w)
  n = len(R)
  return M.tris([(R[i], R[(i + 1) % n], pole) for i in range(n)])


def _loft_points(PL, PT, n_inter, axis=None, ease_lat=None, bulge=0.0):
  """Rings interpolating from loop points ``PL`` to ring points ``PT``.

  ``bulge`` pushes the intermediate rings radially outward by
  ``bulge * sin(pi s)`` (a rounded transition instead of a straight loft).
  """
  cl, ct = PL.mean(0), PT.mean(0)
  d, u, w = _frame(ct - cl if axis is None else axis)
  angT = _polar(PT, ct, u, w)
  angL = _polar(PL, cl, u, w)
  Q = np.stack([np.interp(angT, angL, PL[:, k], period=2 * np.pi) for k in range(3)], 1)
  rings = []
  for k in range(1, n_inter + 1):
    s = k / (n_inter + 1.0)
    D = PT - Q
    ax = (D @ d)[:, None] * d
    e = s if ease_lat is None else ease_lat(s)
    ring = Q + s * ax + e * (D - ax)
    if bulge:
      rad = ring - ring.mean(0)
      rad -= (rad @ d)[:, None] * d
      rad /= np.linalg.norm(rad, axis=1, keepdims=True) + 1e-12
      ring = ring + bulge * np.sin(np.pi * s) * rad
    rings.append(ring)
  return rings


def _split_loop(R, i0, i1, chord):
  """Split cyclic loop ``R`` by a chord from ``R[i0]`` to ``R[i1]``.

  ``chord`` holds the chord's interior vertices ordered from ``R[i0]`` to
  ``R[i1]``.  Returns (loop through ``R[i0..i1]``, loop through ``R[i1..i0]``).
  """
  R = np.asarray(R)
  chord = np.asarray(chord, dtype=np.int64)
  arc1 = _arc(R, i0, i1)
  arc2 = _arc(R, i1, i0)
  return np.concatenate([arc1, chord[::-1]]), np.concatenate([arc2, chord])


def _arc(R, i, j):
  R = np.asarray(R)
  return R[i:j + 1] if i <= j else np.concatenate([R[i:], R[:j + 1]])


def _smoothstep(x):
  x = np.clip(x, 0.0, 1.0)
  return x * x * (3.0 - 2.0 * x)


# ----------------------------------------------------------------------------
# Resolution bookkeeping: exact vertex counts
# ----------------------------------------------------------------------------
class _Res:
  """Ring-size oracle.  ``n(key, perimeter)`` = round(perimeter / h) (+ bonus)."""

  def __init__(self, h: float, bonus: Optional[dict] = None):
    self.h = h
    self.bonus = dict(bonus or {})
    self.log: Dict[object, list] = {}

  def n(self, key, perimeter: float, nmin: int = 6, mod: int = 1) -> int:
    rec = self.log.setdefault(key, [perimeter, nmin, mod, 0])
    rec[3] += 1
    return self._size(rec[0], nmin, mod, self.h) + (self.bonus.get(key, 0) if mod == 1 else 0)

  @staticmethod
  def _size(per, nmin, mod, h):
    k = max(nmin, int(round(per / h)))
    return -(-k // mod) * mod


def _fit_count(build: Callable[[_Res], object], target: int, h0: float, count=lambda o: o.n):
  """Build twice: once to learn the ring structure, once with exact ring sizes."""
  res = _Res(h0)
  out = build(res)
  recs = list(res.log.items())

  def ring_total(h):
    return sum(r[3] * _Res._size(r[0], r[1], r[2], h) for _, r in recs)

  fixed = count(out) - ring_total(h0)
  lo, hi = h0 / 8.0, h0 * 8.0
  for _ in range(60):
    mid = 0.5 * (lo + hi)
    if fixed + ring_total(mid) > target:
      lo = mid
    else:
      hi = mid
  h = hi
  rem = target - fixed - ring_total(h)
  if rem < 0:
    raise RuntimeError('vertex budget cannot be met')
  adjustable = sorted([(r[0], k, r[3]) for k, r in recs if r[2] == 1],
                      key=lambda t: -t[0])
  bonus: Dict[object, int] = {}
  for _ in range(6):
    _distribute(bonus, adjustable, rem)
    res2 = _Res(h, bonus)
    out2 = build(res2)
    rem = target - count(out2)
    if rem == 0:
      return out2
  raise RuntimeError(f'vertex count {count(out2)} != {target}')


def _distribute(bonus, adjustable, rem):
  """Add (rem > 0) or remove (rem < 0) ``|rem|`` vertices over the largest rings."""
  step = 1 if rem > 0 else -1
  rem = abs(rem)
  guard = 0
  while rem > 0:
    progressed = False
    for _, key, mult in adjustable:
      if 0 < mult <= rem:
        bonus[key] = bonus.get(key, 0) + step
        rem -= mult
        progressed = True
        if rem == 0:
          break
    guard += 1
    if not progressed or guard > 10000:
      raise RuntimeError('cannot distribute the vertex remainder')


# ----------------------------------------------------------------------------
# Body dimensions (neutral template, metres; left side, right is mirrored)
# ----------------------------------------------------------------------------
_JL = {  # joint targets of the neutral template (left side + midline)
    0: (0.0, 0.0, 0.0),
    1: (0.085, -0.075, -0.005),
    3: (0.0, 0.105, -0.02),
    4: (0.095, -0.48, 0.005),
    6: (0.0, 0.24, -0.015),
    7: (0.10, -0.875, -0.04),
    9: (0.0, 0.30, -0.005),
    10: (0.113, -0.94, 0.085),
    12: (0.0, 0.505, -0.012),
    13: (0.075, 0.425, -0.015),
    15: (0.0, 0.597, 0.0),
    16: (0.185, 0.437, -0.025),
    18: (0.45, 0.437, -0.035),
    20: (0.695, 0.437, -0.03),
    22: (0.0, 0.585, 0.035),
}
_MIRROR = {2: 1, 5: 4, 8: 7, 11: 10, 14: 13, 17: 16, 19: 18, 21: 20}


def _body_joint_targets() -> np.ndarray:
  J = np.zeros((22, 3))
  for k, v in _JL.items():
    if k < 22:
      J[k] = v
  for r, l in _MIRROR.items():
    J[r] = J[l] * (-1.0, 1.0, 1.0)
  return J


_TORSO_KEYS = np.array([  # y, half-width, front z, back z
    (-0.095, 0.160, 0.085, -0.112),
    (-0.050, 0.168, 0.094, -0.122),
    (0.020, 0.160, 0.100, -0.108),
    (0.110, 0.136, 0.095, -0.088),
    (0.200, 0.145, 0.104, -0.086),
    (0.290, 0.160, 0.114, -0.094),
    (0.370, 0.168, 0.106, -0.096),
])
_ARM_KEYS = np.array([  # x, center y, center z, half-height (y), half-depth (z)
    (0.225, 0.437, -0.025, 0.056, 0.058),
    (0.280, 0.437, -0.027, 0.049, 0.052),
    (0.360, 0.437, -0.030, 0.043, 0.045),
    (0.450, 0.437, -0.035, 0.037, 0.041),
    (0.500, 0.437, -0.034, 0.039, 0.043),
    (0.580, 0.437, -0.032, 0.032, 0.038),
    (0.662, 0.437, -0.030, 0.022, 0.031),
])
_LEG_KEYS = np.array([  # y, center x, center z, half-width (x), half-depth (z)
    (-0.170, 0.088, -0.008, 0.080, 0.088),
    (-0.300, 0.092, 0.000, 0.068, 0.072),
    (-0.420, 0.094, 0.004, 0.055, 0.058),
    (-0.480, 0.095, 0.006, 0.050, 0.053),
    (-0.560, 0.096, -0.006, 0.050, 0.056),
    (-0.630, 0.097, -0.016, 0.049, 0.057),
    (-0.750, 0.098, -0.028, 0.037, 0.041),
    (-0.860, 0.100, -0.038, 0.032, 0.037),
])
# horizontal foot slices relative to the ankle joint: dy, back dz, front dz, half-width
_FOOT_KEYS = np.array([
    (-0.012, -0.042, 0.040, 0.034),
    (-0.032, -0.050, 0.095, 0.041),
    (-0.052, -0.052, 0.165, 0.046),
    (-0.068, -0.049, 0.205, 0.047),
    (-0.078, -0.043, 0.212, 0.045),
])
_SOLE_DY = -0.080
_ARCH_X, _ARCH_H = 0.150, 0.100  # shoulder-crest chords of the torso top ring
_HEAD_TOP = 0.745


def _pchip(x, Y):
  return PchipInterpolator(np.asarray(x, float), np.asarray(Y, float), axis=0)


def _stations(s0, s1, h):
  m = max(1, int(round((s1 - s0) / h)))
  return np.linspace(s0, s1, m + 1)[1:]


# ----------------------------------------------------------------------------
# Head (FLAME topology in SMPL-X)
# ----------------------------------------------------------------------------
class _HeadShape:
  """Parametric head: horizontal elliptic sections (y, a, front z, back z) + bumps."""

  def __init__(self):
    th = np.radians(np.linspace(0.0, 95.0, 14))
    dome = np.stack([0.655 + 0.090 * np.cos(th), 0.078 * np.sin(th),
                     0.003 + 0.097 * np.sin(th), 0.003 - 0.103 * np.sin(th)], 1)
    lower = np.array([
        (0.625, 0.0745, 0.100, -0.090),
        (0.600, 0.0690, 0.098, -0.078),
        (0.580, 0.0640, 0.096, -0.068),
        (0.562, 0.0590, 0.088, -0.064),
        (0.548, 0.0560, 0.066, -0.063),
        (0.525, 0.0550, 0.046, -0.064),
    ])
    K = np.concatenate([dome, lower])
    dK = np.diff(K, axis=0)
    ds = (2 * np.hypot(dK[:, 0], dK[:, 1]) + np.hypot(dK[:, 0], dK[:, 2])
          + np.hypot(dK[:, 0], dK[:, 3])) / 4.0
    self.s = np.concatenate([[0.0], np.cumsum(ds)])
    self.length = float(self.s[-1])
    self.prof = _pchip(self.s, K)
    self.eye_x, self.eye_y = 0.031, 0.657
    self.mouth_y = 0.597

  def section(self, s):
    y, a, zf, zb = np.moveaxis(np.atleast_2d(self.prof(s)), -1, 0)
    return y, np.maximum(a, 0.0), (zf + zb) / 2.0, np.maximum((zf - zb) / 2.0, 0.0)

  def section_at_y(self, y):
    ss = np.linspace(0.0, self.length, 400)
    ys = self.prof(ss)[:, 0]
    return self.section(np.interp(-np.asarray(y), -ys, ss))

  def deform(self, P, c, b):
    """Nose, lips, chin, brows, eye sockets and ears (P: (n,3), c/b per point)."""
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    front = np.clip((z - c) / np.maximum(0.5 * b, 1e-9), 0.0, 1.0)
    nose_h = (0.020 * np.exp(-((y - 0.622) / 0.011) ** 2)
              + 0.007 * np.exp(-((y - 0.648) / 0.014) ** 2))
    nose_w = 0.010 + 0.004 * np.exp(-((y - 0.616) / 0.010) ** 2)
    dz = nose_h * np.exp(-(x / nose_w) ** 2)
    dz += 0.005 * np.exp(-(x / 0.022) ** 2 - ((y - self.mouth_y) / 0.008) ** 2)
    dz += 0.004 * np.exp(-(x / 0.020) ** 2 - ((y - 0.566) / 0.010) ** 2)
    dz += 0.004 * np.exp(-((y - 0.674) / 0.008) ** 2 - ((np.abs(x) - 0.030) / 0.025) ** 2)
    dz -= 0.003 * np.exp(-((np.abs(x) - self.eye_x) / 0.012) ** 2 - ((y - self.eye_y) / 0.010) ** 2)
    ear = 0.011 * np.exp(-((y - 0.645) / 0.020) ** 2 - ((z + 0.008) / 0.013) ** 2)
    Q = P.copy()
    Q[:, 2] += dz * front
    Q[:, 0] += np.sign(x) * ear
    return Q

  def point(self, y, phi):
    """Surface point at height ``y`` and section angle ``phi`` (pi/2 = front)."""
    y = np.atleast_1d(np.asarray(y, float))
    phi = np.broadcast_to(np.asarray(phi, float), y.shape)
    _, a, c, b = self.section_at_y(y)
    P = np.stack([a * np.cos(phi), y, c + b * np.sin(phi)], 1)
    return self.deform(P, c, b)

  def front_point(self, x, y):
    x = np.atleast_1d(np.asarray(x, float))
    y = np.broadcast_to(np.asarray(y, float), x.shape)
    _, a, c, b = self.section_at_y(y)
    phi = np.arccos(np.clip(x / a, -1.0, 1.0))
    return self.point(y, phi)


_HEAD = _HeadShape()

_TAG_HEAD, _TAG_EYE_L, _TAG_EYE_R = 1, 2, 3
_TAG_TORSO, _TAG_NECK = 4, 5
_TAG_ARM_L, _TAG_ARM_R, _TAG_LEG_L, _TAG_LEG_R = 6, 7, 8, 9
_TAG_HAND_L, _TAG_HAND_R = 10, 11


class _Part:
  """A separately built mesh piece (head or hand template)."""

  def __init__(self, M: _Mesh, **info):
    self.P = M.verts()
    self.F = M.faces()
    self.tag = M.tag[:M.n].copy()
    self.n = M.n
    self.__dict__.update(info)


def _build_head(res: _Res, h_long: float, neck_n: Optional[int], eyes: bool,
                holes: bool) -> _Part:
  H = _HEAD
  M = _Mesh(8192)
  K = max(4, int(round(H.length / h_long)))
  svals = np.linspace(0.0, H.length, K + 1)[1:]
  pole = M.add([(0.0, _HEAD_TOP, float(H.prof(0.0)[2]))], _TAG_HEAD)[0]
  rings, strips = [], []
  prev = None
  for k, s in enumerate(svals):
    y, a, c, b = (float(v[0]) for v in H.section(s))
    last = k == len(svals) - 1
    if last and neck_n is not None:
      n = neck_n
    else:
      n = res.n(('head', k), _perimeter(a, b), nmin=6)
    P = _ring_pts((0.0, y, c), (0, -1, 0), (1, 0, 0), a, b, n)
    P = H.deform(P, np.full(n, c), np.full(n, b))
    R = M.add(P, _TAG_HEAD)
    if prev is None:
      strips.append(_cap(M, R, pole))
    else:
      strips.append(_stitch(M, prev, R, axis=(0, -1, 0)))
    rings.append((y, R))
    prev = R
  neck_ring = prev
  eye_centers = []
  if eyes:
    for side, tag in ((1.0, _TAG_EYE_L), (-1.0, _TAG_EYE_R)):
      surf = H.front_point(side * H.eye_x, H.eye_y)[0]
      ctr = surf - np.array([0.0, 0.0, 0.006])
      eye_centers.append(ctr)
      _uv_sphere(M, ctr, 0.0115, 9, 14, tag)
  removed = []
  if holes:
    targets = [(0.0, H.mouth_y, 18), (H.eye_x, H.eye_y, 6), (-H.eye_x, H.eye_y, 6)]
    ys = np.array([r[0] for r in rings])
    for tx, ty, m in targets:
      k = int(np.searchsorted(-ys, -ty))  # first ring below ty
      strip = strips[k]  # strip between ring k-1 and ring k
      cen = M.P[strip].mean(1)
      goal = H.front_point(tx, ty)[0]
      c0 = int(np.argmin(np.linalg.norm(cen - goal, axis=1)))
      sel = (c0 - m // 2 + np.arange(m)) % len(strip)
      removed.extend(map(tuple, strip[sel]))
  part = _Part(M, neck_ring=neck_ring, eye_centers=eye_centers, pole=pole)
  if removed:
    rm = {tuple(t) for t in removed}
    keep = np.array([tuple(t) not in rm for t in part.F.tolist()])
    part.F = part.F[keep]
  return part


def _uv_sphere(M: _Mesh, ctr, r, n_rings, n_seg, tag):
  """Sphere with its poles on the z axis; returns (front pole, back pole)."""
  ctr = np.asarray(ctr, float)
  front = M.add(ctr + (0, 0, r), tag)[0]
  prev = None
  rings = []
  for k in range(1, n_rings + 1):
    th = np.pi * k / (n_rings + 1)
    R = M.add(_ring_pts(ctr + (0, 0, r * np.cos(th)), (0, 0, -1), (1, 0, 0),
                        r * np.sin(th), r * np.sin(th), n_seg,
                        phase=np.pi / n_seg * (k % 2)), tag)
    if prev is None:
      _cap(M, R, front)
    else:
      _stitch(M, prev, R, axis=(0, 0, -1))
    prev = R
    rings.append(R)
  back = M.add(ctr - (0, 0, r), tag)[0]
  _cap(M, prev, back)
  return front, back


# ----------------------------------------------------------------------------
# Hand template (MANO topology).  Local frame: x = distal, y = thumb side,
# z = dorsal (back of the hand); the wrist joint is at the origin.
# ----------------------------------------------------------------------------
_HT_PALM, _HT_THUMB = 0, 1
_HT_FINGER = {'index': 2, 'middle': 3, 'ring': 4, 'pinky': 5}
_PALM_KEYS = np.array([  # d, half-width, half-height, centre t, centre n
    (-0.010, 0.029, 0.018, 0.000, 0.001),
    (0.004, 0.032, 0.018, 0.000, 0.002),
    (0.020, 0.038, 0.017, 0.000, 0.002),
    (0.032, 0.040, 0.016, -0.003, 0.002),
    (0.055, 0.043, 0.015, -0.001, 0.001),
    (0.075, 0.044, 0.014, 0.000, 0.000),
    (0.090, 0.045, 0.013, 0.000, 0.000),
    (0.100, 0.045, 0.011, 0.000, 0.000),
])
_FINGER_SPEC = {  # MCP joint, direction, length, base half-width, base half-height
    'index': ((0.090, 0.026, 0.0), (1.0, 0.05, 0.0), 0.088, 0.0093, 0.0085),
    'middle': ((0.092, 0.007, 0.0), (1.0, 0.0, 0.0), 0.097, 0.0096, 0.0088),
    'ring': ((0.089, -0.012, 0.0), (1.0, -0.05, 0.0), 0.091, 0.0090, 0.0083),
    'pinky': ((0.083, -0.030, -0.001), (1.0, -0.12, 0.0), 0.074, 0.0080, 0.0074),
}
_THUMB_JOINTS = np.array([(0.018, 0.020, -0.005), (0.048, 0.045, -0.012),
                          (0.075, 0.060, -0.016), (0.100, 0.070, -0.018)])
_WEB_CHORDS_T = (0.0165, -0.0025, -0.021)


def _hand_joints_local() -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
  """16 MANO joints (wrist, index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3) + tips."""
  J = np.zeros((16, 3))
  tips = {}
  for fi, name in enumerate(_FINGERS):
    if name == 'thumb':
      J[13:16] = _THUMB_JOINTS[:3]
      tips[name] = _THUMB_JOINTS[3].copy()
      continue
    mcp, dr, L, _, _ = _FINGER_SPEC[name]
    mcp, dr = np.asarray(mcp), _unit(dr)
    for k, f in enumerate((0.0, 0.45, 0.74)):
      J[1 + 3 * fi + k] = mcp + f * L * dr
    tips[name] = mcp + L * dr
  return J, tips


def _sweep_finger(M: _Mesh, res: _Res, loop, key, path_fn, length, s0, radius_fn,
                  h_long, tag, up=(0.0, 1.0, 0.0), r_tip=None):
  """Tube from a branch loop along ``path_fn(s)`` (s in [s0, length]) with a domed tip."""
  a0, b0 = radius_fn(s0)
  r_tip = r_tip if r_tip is not None else min(radius_fn(length))
  s_body = np.linspace(s0, length - 0.5 * r_tip,
                       max(2, int(round((length - 0.5 * r_tip - s0) / h_long)) + 1))
  s_all = list(s_body) + [length - 0.18 * r_tip, length - 0.0005]
  prev = np.asarray(loop)
  last = None
  for k, s in enumerate(s_all):
    n = res.n(key, _perimeter(a0, b0), nmin=8)
    c, t = path_fn(s)
    a, b = radius_fn(s)
    dome_start = length - r_tip
    if s > dome_start:
      f = np.sqrt(max(0.0, 1.0 - ((s - dome_start) / r_tip) ** 2))
      a, b = a * f, b * f
    pts = _ring_pts(c, t, up, a, b, n)
    if k == 0:
      for ring in _loft_points(M.P[prev], pts, 1):
        res.n(key, _perimeter(a0, b0), nmin=8)
        R = M.add(ring, tag)
        _stitch(M, prev, R)
        prev = R
    R = M.add(pts, tag)
    _stitch(M, prev, R, axis=t)
    prev = R
    last = R
  tip_pos, t = path_fn(length)
  pole = M.add(tip_pos, tag)[0]
  _cap(M, prev, pole, axis=t)
  return pole, last


def _build_hand(res: _Res, h_long: float) -> _Part:
  M = _Mesh(1024)
  prof = _pchip(_PALM_KEYS[:, 0], _PALM_KEYS[:, 1:])

  def palm_ring(d, key, nfix=None):
    hw, hh, ct, cn = prof(d)
    n = nfix if nfix is not None else res.n(key, _perimeter(hw, hh, 3.0), nmin=10)
    return _ring_pts((d, ct, cn), (1, 0, 0), (0, 1, 0), hw, hh, n, p=3.0), (ct, cn)

  pts, _ = palm_ring(-0.010, None, nfix=16)
  wrist = M.add(pts, _HT_PALM)
  prev = wrist
  ds = _stations(-0.010, 0.020, 1.5 * h_long)
  for k, d in enumerate(ds):
    pts, (ct, cn) = palm_ring(d, ('palm', k))
    R = M.add(pts, _HT_PALM)
    _stitch(M, prev, R, axis=(1, 0, 0))
    prev = R
  # --- thumb branch: split the ring at d=0.020 by a dorsal-palmar chord
  split = prev
  P = M.P[split]
  ct0 = float(prof(0.020)[2])
  side = (P[:, 1] - ct0) > 0.014
  n = len(split)
  starts = [i for i in range(n) if side[i] and not side[i - 1]]
  i0 = starts[0]
  i1 = i0
  while side[(i1 + 1) % n]:
    i1 = (i1 + 1) % n
  A, B = M.P[split[i0]], M.P[split[i1]]
  m = max(1, int(round(2 * float(prof(0.020)[1]) / h_long)) - 1)
  ts = np.arange(1, m + 1) / (m + 1.0)
  chord_pts = A + ts[:, None] * (B - A)
  chord = M.add(chord_pts, _HT_PALM)
  thumb_loop, palm_loop = _split_loop(split, i0, i1, chord)
  # palm continues
  prev = palm_loop
  ds = _stations(0.020, 0.100, 1.5 * h_long)
  web = None
  for k, d in enumerate(ds):
    pts, (ct, cn) = palm_ring(d, ('palm2', k))
    R = M.add(pts, _HT_PALM)
    _stitch(M, prev, R, axis=(1, 0, 0))
    prev = R
  web = prev
  # --- four fingers from the web ring
  P = M.P[web]
  cn = 0.0
  dors = P[:, 2] > cn
  iD, iP, chords = [], [], []
  for tk in _WEB_CHORDS_T:
    cand = np.where(dors)[0]
    iD.append(int(cand[np.argmin(np.abs(P[cand, 1] - tk))]))
    cand = np.where(~dors)[0]
    iP.append(int(cand[np.argmin(np.abs(P[cand, 1] - tk))]))
  for a_, b_ in zip(iD, iP):
    A, B = M.P[web[a_]], M.P[web[b_]]
    m = max(1, int(round(2 * float(prof(0.100)[1]) / h_long)) - 1)
    ts = np.arange(1, m + 1) / (m + 1.0)
    chords.append(M.add(A + ts[:, None] * (B - A), _HT_PALM))
  # order check: dorsal indices increase from the thumb side (+y) to the pinky side
  if not (iD[0] < iD[1] < iD[2] < iP[2] < iP[1] < iP[0]):
    raise RuntimeError('unexpected web-ring ordering')
  R = web
  c1, c2, c3 = chords
  loops = {
      'index': np.concatenate([_arc(R, iP[0], iD[0]), c1]),
      'middle': np.concatenate([_arc(R, iD[0], iD[1]), c2, _arc(R, iP[1], iP[0]), c1[::-1]]),
      'ring': np.concatenate([_arc(R, iD[1], iD[2]), c3, _arc(R, iP[2], iP[1]), c2[::-1]]),
      'pinky': np.concatenate([_arc(R, iD[2], iP[2]), c3[::-1]]),
  }
  tips, last_rings = {}, {}
  for name in ('index', 'middle', 'ring', 'pinky'):
    mcp, dr, L, hw, hh = _FINGER_SPEC[name]
    mcp, dr = np.asarray(mcp, float), _unit(dr)

    def path(s, mcp=mcp, dr=dr):
      return mcp + s * dr, dr

    def radius(s, hw=hw, hh=hh, L=L):
      f = 1.0 - 0.22 * s / L
      bump = 1.0 + 0.05 * (np.exp(-((s - 0.45 * L) / 0.006) ** 2)
                           + np.exp(-((s - 0.74 * L) / 0.005) ** 2))
      return hw * f * bump, hh * f * bump

    s0 = (0.108 - mcp[0]) / dr[0]
    tips[name], last_rings[name] = _sweep_finger(
        M, res, loops[name], ('finger', name), path, L, s0, radius, h_long,
        _HT_FINGER[name], r_tip=0.78 * hh)
  # --- thumb
  TJ = _THUMB_JOINTS
  seg = np.linalg.norm(np.diff(TJ, axis=0), axis=1)
  cum = np.concatenate([[0.0], np.cumsum(seg)])
  Lt = float(cum[-1])

  def tpath(s):
    def pos(q):
      q = np.clip(q, 0.0, Lt)
      return np.stack([np.interp(q, cum, TJ[:, k]) for k in range(3)])
    eps = 0.008
    return pos(s), _unit(pos(s + eps) - pos(s - eps))

  def tradius(s):
    f = 1.0 - 0.25 * s / Lt
    return 0.0112 * f, 0.0100 * f

  tips['thumb'], last_rings['thumb'] = _sweep_finger(
      M, res, thumb_loop, ('finger', 'thumb'), tpath, Lt, 0.016, tradius, h_long,
      _HT_THUMB, up=(0.0, 0.0, 1.0), r_tip=0.0078)
  return _Part(M, wrist=wrist, tips=tips, last_rings=last_rings)


def _hand_template_order(hand: _Part) -> np.ndarray:
  """Local (MANO) vertex order: build order with fingertip vertices placed at the
  ids listed in ``_MANO_TIPS``."""
  order = np.arange(hand.n)
  pos = np.arange(hand.n)  # pos[v] = position of template vertex v
  placed = set()
  for name, ids in _MANO_TIPS.items():
    pole = hand.tips[name]
    ring = hand.last_rings[name]
    # remaining ids go to last-ring vertices, most palmar first (finger pad)
    cands = [pole] + list(ring[np.argsort(hand.P[ring, 2])])
    for slot, v in zip(ids, cands):
      _swap_into(order, pos, slot, v, placed)
  return order


def _swap_into(order, pos, slot, v, placed):
  cur = pos[v]
  other = order[slot]
  if other in placed and other != v:
    raise RuntimeError('vertex-id placement conflict')
  order[slot], order[cur] = v, other
  pos[v], pos[other] = slot, cur
  placed.add(v)


def _hand_world(P_local, wrist, side):
  """Map hand-template coordinates to body coordinates (side=+1 left, -1 right)."""
  P = np.asarray(P_local)
  return np.asarray(wrist) + np.stack([side * P[:, 0], P[:, 2], P[:, 1]], 1)


# ----------------------------------------------------------------------------
# Whole body
# ----------------------------------------------------------------------------
class _Body:
  pass


def _assemble_body(res: _Res, head: _Part, hand: _Part, h_long: float) -> _Body:
  """Torso, neck, arms, legs and feet around an existing head and two hands."""
  M = _Mesh(12000)
  head_off = M.insert(head.P, head.F, head.tag)
  Jb = _body_joint_targets()
  hand_off = {}
  for side, tag in ((1.0, _TAG_HAND_L), (-1.0, _TAG_HAND_R)):
    wrist = Jb[20] if side > 0 else Jb[21]
    P = _hand_world(hand.P, wrist, side)
    F = hand.F if side < 0 else hand.F[:, ::-1]
    hand_off[side] = M.insert(P, F, np.full(hand.n, tag))
  # ---------------------------------------------------------------- torso
  tprof = _pchip(_TORSO_KEYS[:, 0], _TORSO_KEYS[:, 1:])
  ys = np.concatenate([[_TORSO_KEYS[0, 0]],
                       _stations(_TORSO_KEYS[0, 0], _TORSO_KEYS[-1, 0], h_long)])
  rings = []
  prev = None
  for k, y in enumerate(ys):
    a, zf, zb = tprof(y)
    c, b = (zf + zb) / 2, (zf - zb) / 2
    n = res.n(('torso', k), _perimeter(a, b, 2.4), nmin=16, mod=4 if k == 0 else 1)
    R = M.add(_ring_pts((0.0, y, c), (0, 1, 0), (1, 0, 0), a, b, n, p=2.4), _TAG_TORSO)
    if prev is not None:
      _stitch(M, prev, R, axis=(0, 1, 0))
    rings.append(R)
    prev = R
  bottom, top = rings[0], rings[-1]
  # --------------------------------------------------------------- crotch
  Pb = M.P[bottom]
  i_front = int(np.argmax(Pb[:, 2] - 10 * np.abs(Pb[:, 0])))
  i_back = int(np.argmin(Pb[:, 2] + 10 * np.abs(Pb[:, 0])))
  A, B = M.P[bottom[i_front]], M.P[bottom[i_back]]
  m = max(1, int(round((_TORSO_KEYS[0, 2] - _TORSO_KEYS[0, 3]) / h_long)) - 1)
  ts = np.arange(1, m + 1) / (m + 1.0)
  cp = A + ts[:, None] * (B - A)
  cp[:, 1] -= 0.028 * np.sin(np.pi * ts)
  cp[:, 0] = 0.0
  crotch = M.add(cp, _TAG_TORSO)
  loopA, loopB = _split_loop(bottom, i_front, i_back, crotch)
  leg_loop = {}
  for L in (loopA, loopB):
    leg_loop[1.0 if M.P[L][:, 0].mean() > 0 else -1.0] = L
  # ------------------------------------------------------ shoulder arches
  Pt = M.P[top]
  ct = Pt[:, 2].mean()
  ends = {}
  for side in (1.0, -1.0):
    for fb in (1.0, -1.0):
      cand = np.where((Pt[:, 2] - ct) * fb > 0)[0]
      ends[side, fb] = int(cand[np.argmin(np.abs(Pt[cand, 0] - side * _ARCH_X))])
  arches = {}
  for side in (1.0, -1.0):
    A, B = M.P[top[ends[side, 1.0]]], M.P[top[ends[side, -1.0]]]
    _, zf_, zb_ = tprof(_TORSO_KEYS[-1, 0])
    length = 0.5 * np.pi * (_ARCH_H + 0.5 * (zf_ - zb_))
    m = max(2, int(round(length / h_long)) - 1)
    ts = np.arange(1, m + 1) / (m + 1.0)
    ap = A + ts[:, None] * (B - A)
    ap[:, 1] += _ARCH_H * np.sin(np.pi * ts)
    ap[:, 0] += side * 0.008 * np.sin(np.pi * ts)
    arches[side] = M.add(ap, _TAG_TORSO)  # ordered front -> back
  # split the top ring: first the left arm off, then the right arm off the rest
  arm_loop = {}
  rest = top
  for side in (1.0, -1.0):
    iF = int(np.where(rest == top[ends[side, 1.0]])[0][0])
    iB = int(np.where(rest == top[ends[side, -1.0]])[0][0])
    l1, l2 = _split_loop(rest, iF, iB, arches[side])
    # the arm loop is the one whose ring part lies laterally
    if M.P[l1][:, 0].mean() * side > M.P[l2][:, 0].mean() * side:
      arm_loop[side], rest = l1, l2
    else:
      arm_loop[side], rest = l2, l1
  neck_loop = rest
  # ----------------------------------------------------------------- neck
  neck_ring = head.neck_ring + head_off
  d = M.P[neck_ring].mean(0)[1] - M.P[neck_loop].mean(0)[1]
  n_inter = max(2, int(round(d / h_long)))
  prev = neck_loop
  for ring in _loft_points(M.P[neck_loop], M.P[neck_ring], n_inter, axis=(0, 1, 0),
                           ease_lat=lambda s: s * s):
    R = M.add(ring, _TAG_NECK)
    _stitch(M, prev, R, axis=(0, 1, 0))
    prev = R
  _stitch(M, prev, neck_ring, axis=(0, 1, 0))
  # ----------------------------------------------------------------- arms
  aprof = _pchip(_ARM_KEYS[:, 0], _ARM_KEYS[:, 1:])
  for side, tag in ((1.0, _TAG_ARM_L), (-1.0, _TAG_ARM_R)):
    xs = np.concatenate([[_ARM_KEYS[0, 0]], _stations(_ARM_KEYS[0, 0], _ARM_KEYS[-1, 0], h_long)])
    prev = arm_loop[side]
    for k, x in enumerate(xs):
      cy, cz, ry, rz = aprof(x)
      n = res.n(('arm', k), _perimeter(ry, rz), nmin=10)
      pts = _ring_pts((side * x, cy, cz), (side, 0, 0), (0, 1, 0), ry, rz, n)
      if k == 0:
        for ring in _loft_points(M.P[prev], pts, 3, axis=(side, 0, 0), bulge=0.006):
          res.n(('arm', k), _perimeter(ry, rz), nmin=10)
          R = M.add(ring, tag)
          _stitch(M, prev, R, axis=(side, 0, 0))
          prev = R
      R = M.add(pts, tag)
      _stitch(M, prev, R, axis=(side, 0, 0))
      prev = R
    _stitch(M, prev, hand.wrist + hand_off[side], axis=(side, 0, 0))
  # ----------------------------------------------------------------- legs
  lprof = _pchip(-_LEG_KEYS[:, 0], _LEG_KEYS[:, 1:])
  fprof = _pchip(-_FOOT_KEYS[:, 0], _FOOT_KEYS[:, 1:])
  foot_info = {}
  for side, tag in ((1.0, _TAG_LEG_L), (-1.0, _TAG_LEG_R)):
    ys = np.concatenate([[_LEG_KEYS[0, 0]],
                         -_stations(-_LEG_KEYS[0, 0], -_LEG_KEYS[-1, 0], h_long)])
    prev = leg_loop[side]
    for k, y in enumerate(ys):
      cx, cz, a, b = lprof(-y)
      n = res.n(('leg', k), _perimeter(a, b), nmin=10)
      pts = _ring_pts((side * cx, y, cz), (0, -1, 0), (1, 0, 0), a, b, n)
      if k == 0:
        for ring in _loft_points(M.P[prev], pts, 2, axis=(0, -1, 0)):
          res.n(('leg', k), _perimeter(a, b), nmin=10)
          R = M.add(ring, tag)
          _stitch(M, prev, R, axis=(0, -1, 0))
          prev = R
      R = M.add(pts, tag)
      _stitch(M, prev, R, axis=(0, -1, 0))
      prev = R
    # foot: horizontal slices below the ankle, then a flat sole
    ankle = Jb[7] * (side, 1, 1)
    dys = np.concatenate([[_FOOT_KEYS[0, 0]],
                          -_stations(-_FOOT_KEYS[0, 0], -_FOOT_KEYS[-1, 0], 0.6 * h_long)])
    for k, dy in enumerate(dys):
      bz, fz, a = fprof(-dy)
      c, b = ankle[2] + (fz + bz) / 2, (fz - bz) / 2
      n = res.n(('foot', k), _perimeter(a, b), nmin=10)
      pts = _ring_pts((ankle[0], ankle[1] + dy, c), (0, -1, 0), (1, 0, 0), a, b, n)
      pts[:, 0] += side * 0.10 * (pts[:, 2] - ankle[2])
      R = M.add(pts, tag)
      _stitch(M, prev, R, axis=(0, -1, 0))
      prev = R
    sole_y = ankle[1] + _SOLE_DY
    P = M.P[prev]
    cen = P.mean(0)
    for k, f in enumerate((0.66, 0.33)):
      Q = cen + f * (P - cen)
      Q[:, 1] = sole_y
      nq = res.n(('sole', k), f * _perimeter(0.045, 0.13), nmin=6)
      if nq != len(Q):
        ang = np.linspace(0, 2 * np.pi, nq, endpoint=False)
        a_, b_ = f * 0.046, f * 0.128
        Q = np.stack([cen[0] + a_ * np.cos(ang), np.full(nq, sole_y),
                      cen[2] + b_ * np.sin(ang)], 1)
        Q[:, 0] += side * 0.10 * (Q[:, 2] - ankle[2])
      R = M.add(Q, tag)
      _stitch(M, prev, R, axis=(0, -1, 0))
      prev = R
    pole = M.add(np.array([cen[0], sole_y, cen[2]]), tag)[0]
    _cap(M, prev, pole, axis=(0, -1, 0))
    foot_info[side] = dict(ankle=ankle, sole_y=sole_y)
  body = _Body()
  body.M = M
  body.n = M.n
  body.head_off = head_off
  body.hand_off = hand_off
  body.foot_info = foot_info
  return body


# ----------------------------------------------------------------------------
# Skinning weights, regressors, blend shapes
# ----------------------------------------------------------------------------
def _seg_dist(P, A, B):
  AB = B - A
  L2 = float(AB @ AB)
  if L2 < 1e-12:
    return np.linalg.norm(P - A, axis=1)
  t = np.clip((P - A) @ AB / L2, 0.0, 1.0)
  return np.linalg.norm(P - (A + t[:, None] * AB), axis=1)


def _bone_weights(P, joints: Sequence[int], bones: Dict[int, list], tau: float,
                  nj: int) -> np.ndarray:
  """Nearest-bone skinning with exponential blending near joints (<= 4 influences)."""
  joints = list(joints)
  D = np.stack([np.min([_seg_dist(P, np.asarray(a), np.asarray(b)) for a, b in bones[j]], 0)
                for j in joints], 1)
  W = np.exp(-(D - D.min(1, keepdims=True)) / tau)
  W[W < 0.03] = 0.0
  if W.shape[1] > 4:
    kth = -np.sort(-W, axis=1)[:, 3:4]
    W[W < kth] = 0.0
  W /= W.sum(1, keepdims=True)
  out = np.zeros((len(P), nj))
  out[:, joints] = W
  return out


_DIRS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)
                  if abs(i) + abs(j) + abs(k) in (1, 3)], float)  # 6 axes + 8 diagonals
_DIRS /= np.linalg.norm(_DIRS, axis=1, keepdims=True)


def _regress(P, cand, target, mu=2e-5) -> Tuple[np.ndarray, np.ndarray]:
  """Non-negative weights (sum 1) on a few candidate vertices reproducing ``target``.

  Picks, among the candidates nearest to ``target``, the vertex in each of 14
  directions around it, then solves a small non-negative least-squares problem
  (with a ridge that spreads the weights)."""
  cand = np.asarray(cand)
  target = np.asarray(target, float)
  order = np.argsort(np.linalg.norm(P[cand] - target, axis=1), kind='stable')
  best = None
  for k in (300, 1200, len(cand)):
    near = cand[order[:k]]
    D = P[near] - target
    nrm = np.linalg.norm(D, axis=1) + 1e-9
    score = (D / nrm[:, None]) @ _DIRS.T - 0.025 * (nrm / nrm.min())[:, None]
    picks = np.unique(near[np.argmax(score, axis=0)])
    X = P[picks]
    m = len(picks)
    A = np.vstack([X.T, 100.0 * np.ones((1, m)), np.sqrt(mu) * np.eye(m)])
    b = np.concatenate([target, [100.0], np.zeros(m)])
    w, _ = nnls(A, b)
    w[w < 1e-3] = 0.0
    w /= w.sum()
    err = float(np.linalg.norm(w @ X - target))
    if best is None or err < best[0]:
      best = (err, picks[w > 0], w[w > 0])
    if err < 2e-3:
      break
  return best[1], best[2]


def _regressor(P, specs, nv) -> np.ndarray:
  R = np.zeros((len(specs), nv))
  for r, (cand, target) in enumerate(specs):
    idx, w = _regress(P, cand, target)
    R[r, idx] = w
  return R


def _vertex_normals(P, F) -> np.ndarray:
  fn = np.cross(P[F[:, 1]] - P[F[:, 0]], P[F[:, 2]] - P[F[:, 0]])
  N = np.stack([np.bincount(F.ravel(), np.repeat(fn[:, k], 3), len(P)) for k in range(3)], 1)
  return N / (np.linalg.norm(N, axis=1, keepdims=True) + 1e-12)


def _posedirs(P, N, J, sigma, amp, rng, zero=()) -> np.ndarray:
  """Smooth, small pose correctives: (V, 3, 9 * (nj - 1))."""
  nj = len(J)
  d2 = ((P[:, None, :] - J[None, 1:, :]) ** 2).sum(-1)
  g = np.exp(-d2 / (2.0 * np.asarray(sigma)[None, 1:] ** 2))
  g[g < 1e-3] = 0.0  # exact zeros far from the joint (no float32 denormals)
  for z in zero:
    g[:, z - 1] = 0.0
  S = rng.uniform(-1.0, 1.0, size=(nj - 1, 9))
  out = (amp * g)[:, None, :, None] * N[:, :, None, None] * S[None, None]
  return out.reshape(len(P), 3, 9 * (nj - 1))


def _fourier_fields(P, n, rng, kmin, kmax, amp0, decay, nfeat=48) -> np.ndarray:
  """``n`` smooth random displacement fields (V, 3, n)."""
  dirs = rng.normal(size=(nfeat, 3))
  dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
  freq = rng.uniform(kmin, kmax, size=nfeat)
  phase = rng.uniform(0, 2 * np.pi, size=nfeat)
  Phi = np.cos(P @ (dirs * freq[:, None]).T + phase)
  amp = amp0 / (1.0 + np.arange(n) / decay)
  C = rng.normal(size=(nfeat, n, 3)) * (amp[None, :, None] / np.sqrt(nfeat / 2.0))
  out = (Phi @ C.reshape(nfeat, -1)).reshape(len(P), n, 3)
  return np.ascontiguousarray(out.transpose(0, 2, 1))


def _bary(P, F, fidx, pts) -> np.ndarray:
  T = P[F[fidx]]
  a, b, c = T[:, 0], T[:, 1], T[:, 2]
  v0, v1, v2 = b - a, c - a, pts - a
  d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
  d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
  den = d00 * d11 - d01 * d01
  v = (d11 * d20 - d01 * d21) / den
  w = (d00 * d21 - d01 * d20) / den
  B = np.stack([1 - v - w, v, w], 1)
  B = np.clip(B, 0.02, None)
  return B / B.sum(1, keepdims=True)


def _landmark_targets() -> Tuple[np.ndarray, np.ndarray]:
  """51 static (iBUG 17..67) and 79 x 17 dynamic contour target points on the head."""
  H = _HEAD
  ex, ey, my = H.eye_x, H.eye_y, H.mouth_y
  xy = []
  xy += list(zip((-0.052, -0.042, -0.031, -0.021, -0.011), (0.672, 0.677, 0.679, 0.678, 0.675)))
  xy += list(zip((0.011, 0.021, 0.031, 0.042, 0.052), (0.675, 0.678, 0.679, 0.677, 0.672)))
  xy += [(0.0, 0.662), (0.0, 0.648), (0.0, 0.635), (0.0, 0.622)]
  xy += list(zip((-0.014, -0.007, 0.0, 0.007, 0.014), (0.612, 0.611, 0.610, 0.611, 0.612)))
  for s in (-1.0, 1.0):
    cx = s * ex
    ring = [(-0.013, 0.0), (-0.0045, 0.0045), (0.0045, 0.0045), (0.013, 0.0),
            (0.0045, -0.004), (-0.0045, -0.004)]
    if s > 0:  # left eye starts at the inner corner
      ring = [(0.013 * -1, 0.0), (-0.0045, 0.0045), (0.0045, 0.0045), (0.013, 0.0),
              (0.0045, -0.004), (-0.0045, -0.004)]
    xy += [(cx + dx, ey + dy) for dx, dy in ring]
  outer = [(-0.024, 0.0), (-0.016, 0.006), (-0.007, 0.009), (0.0, 0.008), (0.007, 0.009),
           (0.016, 0.006), (0.024, 0.0), (0.016, -0.007), (0.007, -0.010), (0.0, -0.011),
           (-0.007, -0.010), (-0.016, -0.007)]
  inner = [(-0.018, 0.0), (-0.007, 0.002), (0.0, 0.002), (0.007, 0.002), (0.018, 0.0),
           (0.007, -0.002), (0.0, -0.002), (-0.007, -0.002)]
  xy += [(dx, my + dy) for dx, dy in outer + inner]
  xy = np.array(xy)
  static = H.front_point(xy[:, 0], xy[:, 1])
  dyn = np.zeros((79, 17, 3))
  t = (np.arange(17) - 8) / 8.0
  base_alpha = np.radians(78.0) * t
  yy = 0.556 + (0.632 - 0.556) * np.abs(t) ** 1.3
  for b in range(79):
    a_deg = b if b <= 39 else 39 - b
    psi = np.radians(-a_deg)
    alpha = np.clip(base_alpha - psi * np.abs(t), -np.radians(85), np.radians(85))
    dyn[b] = H.point(yy, np.pi / 2 - alpha)
  return static, dyn


def _nearest_faces(P, F, face_ok, pts) -> Tuple[np.ndarray, np.ndarray]:
  fids = np.where(face_ok)[0]
  cen = P[F[fids]].mean(1)
  _, j = cKDTree(cen).query(pts.reshape(-1, 3))
  fidx = fids[j]
  return fidx.reshape(pts.shape[:-1]), _bary(P, F, fidx, pts.reshape(-1, 3)).reshape(pts.shape)


def _hand_pca(rng, side: float):
  """Relaxed-curl mean and orthonormal PCA basis for one hand (SMPL-X frame)."""
  curl = np.zeros((15, 3))
  flex = np.array([0.12, 0.22, 0.15])
  for fi in range(4):
    curl[3 * fi:3 * fi + 3, 2] = flex * (1.0 + 0.1 * fi)
    curl[3 * fi:3 * fi + 3, 1] = 0.03 * (fi - 1.5)
  curl[12:15] = [(0.10, 0.05, 0.12), (0.05, 0.02, 0.10), (0.02, 0.0, 0.12)]
  mean_r = curl.ravel()  # right hand: flexion about +z
  G = rng.normal(size=(45, 45))
  G[:, 0] = mean_r  # first component: the overall curl direction
  Q, _ = np.linalg.qr(G)
  comps_r = np.ascontiguousarray(Q.T)
  if np.dot(comps_r[0], mean_r) < 0:
    comps_r[0] *= -1
  mirror = np.tile([1.0, -1.0, -1.0], 15)
  if side > 0:
    return mean_r * mirror, comps_r * mirror[None, :]
  return mean_r, comps_r


def _gender_warp(P, gender: str) -> np.ndarray:
  if gender == 'neutral':
    return P.copy()
  s, dsh, dhip = (1.045, 0.012, -0.004) if gender == 'male' else (0.955, -0.010, 0.012)
  x, y = P[:, 0], P[:, 1]
  Q = P.copy()
  fsh = (_smoothstep((np.abs(x) - 0.06) / 0.14) * _smoothstep((y - 0.25) / 0.13)
         * _smoothstep((0.53 - y) / 0.04))
  fhip = _smoothstep(np.abs(x) / 0.15) * np.exp(-((y + 0.05) / 0.13) ** 2)
  Q[:, 0] += np.sign(x) * (dsh * fsh + dhip * fhip)
  return Q * s


# ----------------------------------------------------------------------------
# Model assembly
# ----------------------------------------------------------------------------
def _bones_body(J, hand_mid: Dict[float, np.ndarray], head_top, chin, heel, toe):
  b = {
      0: [(J[0], J[3]), (J[0], 0.6 * J[1]), (J[0], 0.6 * J[2])],
      3: [(J[3], J[6])], 6: [(J[6], J[9])],
      9: [(J[9], J[12]), (J[9], J[13]), (J[9], J[14])],
      12: [(J[12], J[15])], 15: [(J[15], head_top)], 22: [(J[22], chin)],
  }
  for side, (hip, knee, ank, foot, col, sho, elb, wri) in (
          (1.0, (1, 4, 7, 10, 13, 16, 18, 20)), (-1.0, (2, 5, 8, 11, 14, 17, 19, 21))):
    b[hip] = [(J[hip], J[knee])]
    b[knee] = [(J[knee], J[ank])]
    b[ank] = [(J[ank], J[foot]), (J[ank], heel[side])]
    b[foot] = [(J[foot], toe[side])]
    b[col] = [(J[col], J[sho])]
    b[sho] = [(J[sho], J[elb])]
    b[elb] = [(J[elb], J[wri])]
    b[wri] = [(J[wri], hand_mid[side])]
  return b


def _hand_template_weights(hand: _Part) -> np.ndarray:
  """Weights over the 16 MANO joints, in hand-template coordinates."""
  J, tips = _hand_joints_local()
  bones = {0: [(J[0], J[1]), (J[0], J[4]), (J[0], J[7]), (J[0], J[10])]}
  for fi, name in enumerate(_FINGERS):
    j1 = 1 + 3 * fi
    bones[j1] = [(J[j1], J[j1 + 1])]
    bones[j1 + 1] = [(J[j1 + 1], J[j1 + 2])]
    bones[j1 + 2] = [(J[j1 + 2], tips[name])]
  W = np.zeros((hand.n, 16))
  groups = {_HT_PALM: [0, 1, 4, 7, 10, 13], _HT_THUMB: [0, 13, 14, 15]}
  for name, tag in _HT_FINGER.items():
    fi = _FINGERS.index(name)
    groups[tag] = [0, 1 + 3 * fi, 2 + 3 * fi, 3 + 3 * fi]
  for tag, joints in groups.items():
    sel = hand.tag == tag
    W[sel] = _bone_weights(hand.P[sel], joints, bones, 0.0035, 16)
  return W


def _hand_template_regressor(hand: _Part) -> np.ndarray:
  J, _ = _hand_joints_local()
  allv = np.arange(hand.n)
  specs = []
  for j in range(16):
    if j == 0:
      cand = allv[hand.tag == _HT_PALM]
    elif j >= 13:
      cand = allv[(hand.tag == _HT_THUMB) | (hand.tag == _HT_PALM)]
    else:
      fi = (j - 1) // 3
      cand = allv[(hand.tag == _HT_FINGER[_FINGERS[fi]]) | (hand.tag == _HT_PALM)]
    specs.append((cand, J[j]))
  return _regressor(hand.P, specs, hand.n)


def _head_weights(P, jaw_z, with_jaw=True):
  """(neck, head, jaw) weights for head-surface vertices: the lower face below the
  mouth follows the jaw, the neck blends from the neck joint to the head joint."""
  y, z = P[:, 1], P[:, 2]
  H = _HEAD
  if with_jaw:
    w_jaw = (_smoothstep((H.mouth_y - 0.001 - y) / 0.006 + 0.5)
             * _smoothstep((z - jaw_z - 0.005) / 0.03)
             * _smoothstep((y - 0.535) / 0.015))
  else:
    w_jaw = np.zeros(len(P))
  w_neck = (1.0 - w_jaw) * _smoothstep((0.585 - y) / 0.035)
  w_head = 1.0 - w_jaw - w_neck
  return w_neck, w_head, w_jaw


class _Built:
  pass


def _build_smplx_geometry() -> _Built:
  """Neutral SMPL-X-sized mesh with FLAME/MANO-compatible head and hands."""
  head = _fit_count(lambda r: _build_head(r, 0.0056, 30, True, True),
                    FLAME_NUM_VERTS, 0.0056)
  hand = _fit_count(lambda r: _build_hand(r, 0.0075), MANO_NUM_VERTS, 0.0075)
  body = _fit_count(lambda r: _assemble_body(r, head, hand, 0.020), SMPLX_NUM_VERTS, 0.02)
  out = _Built()
  out.head, out.hand, out.body = head, hand, body
  return out


def _build_smpl_geometry() -> _Built:
  head = _build_head(_Res(0.0125), 0.0125, None, False, False)
  hand = _build_hand(_Res(0.0105), 0.0105)
  body = _fit_count(lambda r: _assemble_body(r, head, hand, 0.0165), SMPL_NUM_VERTS, 0.0165)
  out = _Built()
  out.head, out.hand, out.body = head, hand, body
  return out


def _swap_specials(local_old: np.ndarray, slots: np.ndarray, specials) -> np.ndarray:
  """Reorder a region's vertices so that special vertices land on given ids.

  ``local_old[k]`` is the (build) vertex placed on id ``slots[k]``;
  ``specials`` is a list of (id, build vertex)."""
  order = np.array(local_old)
  pos = {int(v): k for k, v in enumerate(order)}
  placed = set()
  for vid, v in specials:
    slot = int(np.searchsorted(slots, vid))
    if slot >= len(slots) or slots[slot] != vid:
      raise RuntimeError(f'id {vid} is not in the expected region')
    cur = pos[int(v)]
    other = int(order[slot])
    if other in placed and other != v:
      raise RuntimeError('vertex-id placement conflict')
    order[slot], order[cur] = v, other
    pos[int(v)], pos[other] = slot, cur
    placed.add(int(v))
  return order


def _foot_specials(P, tag, foot_info):
  """(big toe, small toe, heel) build-vertex ids for the left (+1) / right (-1) foot."""
  out = {}
  for side, t in ((1.0, _TAG_LEG_L), (-1.0, _TAG_LEG_R)):
    sole = foot_info[side]['sole_y']
    cand = np.where((tag == t) & (P[:, 1] < sole + 0.06))[0]
    x, y, z = P[cand, 0], P[cand, 1], P[cand, 2]
    low = np.abs(y - (sole + 0.012))
    big = cand[np.argmax(z - 0.5 * side * x - 0.3 * low)]
    small = cand[np.argmax(0.7 * z + 0.7 * side * x - 0.3 * low)]
    heel = cand[np.argmax(-z - 0.3 * low)]
    out[side] = (big, small, heel)
  return out


def _hand_tip_ids(hand: _Part, off: int) -> Dict[str, int]:
  return {name: int(hand.tips[name]) + off for name in _FINGERS}


def _uv(P) -> np.ndarray:
  u = 0.5 + np.arctan2(P[:, 0], P[:, 2]) / (2 * np.pi)
  v = (P[:, 1] - P[:, 1].min()) / np.ptp(P[:, 1])
  return np.stack([u, v], 1)


def _kintree(parents) -> np.ndarray:
  p = np.array(parents, dtype=np.int64)
  p[0] = _BIG
  return np.stack([p, np.arange(len(parents), dtype=np.int64)])


def _region_rigid(sd, idx):
  """Make blend-shape displacements of a rigid part (an eyeball) a pure translation."""
  sd[idx] = sd[idx].mean(0, keepdims=True)


class _SmplxData:
  pass


def _make_smplx(seed: int) -> _SmplxData:
  g = _build_smplx_geometry()
  head, hand, body = g.head, g.hand, g.body
  M = body.M
  P0, F0, tag0 = M.verts(), M.faces(), M.tag[:M.n].copy()
  V = len(P0)
  assert V == SMPLX_NUM_VERTS and len(F0) == SMPLX_NUM_FACES
  hl, hr = body.hand_off[1.0], body.hand_off[-1.0]
  # --------------------------------------------------------------- ordering
  head_old = np.arange(head.n) + body.head_off
  head_slots = np.concatenate([np.arange(0, _H1), np.arange(_H2, V)])
  hsurf = head_old[tag0[head_old] == _TAG_HEAD]
  ear_band = hsurf[np.abs(P0[hsurf, 1] - 0.645) < 0.02]
  eye_l = np.where(tag0 == _TAG_EYE_L)[0]
  eye_r = np.where(tag0 == _TAG_EYE_R)[0]
  specials = [
      (_SMPLX_VIDS['nose'], hsurf[np.argmax(P0[hsurf, 2])]),
      (_SMPLX_VIDS['lear'], ear_band[np.argmax(P0[ear_band, 0])]),
      (_SMPLX_VIDS['rear'], ear_band[np.argmin(P0[ear_band, 0])]),
      (_SMPLX_VIDS['leye'], eye_l[np.argmax(P0[eye_l, 2])]),
      (_SMPLX_VIDS['reye'], eye_r[np.argmax(P0[eye_r, 2])]),
  ]
  head_order = _swap_specials(head_old, head_slots, specials)
  hand_order = _hand_template_order(hand)
  lslots, rslots = np.arange(_L0, _L0 + hand.n), np.arange(_R0, _R0 + hand.n)
  taken = np.zeros(V, bool)
  taken[head_old] = True
  taken[hl:hl + hand.n] = True
  taken[hr:hr + hand.n] = True
  body_old = np.where(~taken)[0]
  used = np.zeros(V, bool)
  used[head_slots] = used[lslots] = used[rslots] = True
  body_slots = np.where(~used)[0]
  feet = _foot_specials(P0, tag0, body.foot_info)
  bspecials = [(_SMPLX_VIDS['LBigToe'], feet[1.0][0]), (_SMPLX_VIDS['LSmallToe'], feet[1.0][1]),
               (_SMPLX_VIDS['LHeel'], feet[1.0][2]), (_SMPLX_VIDS['RBigToe'], feet[-1.0][0]),
               (_SMPLX_VIDS['RSmallToe'], feet[-1.0][1]), (_SMPLX_VIDS['RHeel'], feet[-1.0][2])]
  body_order = _swap_specials(body_old, body_slots, bspecials)
  new_of_old = np.empty(V, np.int64)
  new_of_old[head_order] = head_slots
  new_of_old[hl + hand_order] = lslots
  new_of_old[hr + hand_order] = rslots
  new_of_old[body_order] = body_slots
  P = np.empty_like(P0)
  P[new_of_old] = P0
  tag = np.empty_like(tag0)
  tag[new_of_old] = tag0
  F = new_of_old[F0]
  # ----------------------------------------------------------------- joints
  Jt = np.zeros((55, 3))
  Jt[:22] = _body_joint_targets()
  Jt[22] = _JL[22]
  Jt[23], Jt[24] = head.eye_centers[0], head.eye_centers[1]
  Jh, _ = _hand_joints_local()
  for side, base in ((1.0, 25), (-1.0, 40)):
    wrist = Jt[20] if side > 0 else Jt[21]
    Jt[base:base + 15] = _hand_world(Jh[1:], wrist, side)
  allv = np.arange(V)

  def tags(*ts):
    return allv[np.isin(tag, ts)]

  cand = {0: tags(_TAG_TORSO), 1: tags(_TAG_TORSO, _TAG_LEG_L), 2: tags(_TAG_TORSO, _TAG_LEG_R),
          3: tags(_TAG_TORSO), 6: tags(_TAG_TORSO), 9: tags(_TAG_TORSO),
          4: tags(_TAG_LEG_L), 7: tags(_TAG_LEG_L), 10: tags(_TAG_LEG_L),
          5: tags(_TAG_LEG_R), 8: tags(_TAG_LEG_R), 11: tags(_TAG_LEG_R),
          12: tags(_TAG_NECK), 13: tags(_TAG_TORSO, _TAG_NECK), 14: tags(_TAG_TORSO, _TAG_NECK),
          15: tags(_TAG_HEAD), 22: tags(_TAG_HEAD), 23: tags(_TAG_EYE_L), 24: tags(_TAG_EYE_R),
          16: tags(_TAG_TORSO, _TAG_ARM_L), 18: tags(_TAG_ARM_L),
          17: tags(_TAG_TORSO, _TAG_ARM_R), 19: tags(_TAG_ARM_R)}
  Jreg = np.zeros((55, V))
  for j, c in cand.items():
    idx, w = _regress(P, c, Jt[j])
    Jreg[j, idx] = w
  Rh = _hand_template_regressor(hand)  # (16, template vertices)
  inv_hand = np.empty(hand.n, np.int64)
  inv_hand[hand_order] = np.arange(hand.n)  # template vertex -> local id
  for side, wj, base, off in ((1.0, 20, 25, _L0), (-1.0, 21, 40, _R0)):
    cols = off + inv_hand
    Jreg[wj, cols] = Rh[0]
    Jreg[base:base + 15][:, cols] = Rh[1:]
  J = Jreg @ P
  # ---------------------------------------------------------------- weights
  W = np.zeros((V, 55))
  heel = {s: Jt[7 if s > 0 else 8] + (0.0, -0.06, -0.015) for s in (1.0, -1.0)}
  toe = {s: Jt[10 if s > 0 else 11] + (0.005 * s, -0.005, 0.085) for s in (1.0, -1.0)}
  hand_mid = {1.0: J[28], -1.0: J[43]}
  head_top = np.array([0.0, _HEAD_TOP - 0.02, 0.0])
  chin = np.array([0.0, 0.56, 0.085])
  bones = _bones_body(J, hand_mid, head_top, chin, heel, toe)
  groups = {_TAG_TORSO: [0, 1, 2, 3, 6, 9, 13, 14, 16, 17], _TAG_NECK: [9, 12, 13, 14],
            _TAG_ARM_L: [9, 13, 16, 18, 20], _TAG_ARM_R: [9, 14, 17, 19, 21],
            _TAG_LEG_L: [0, 1, 4, 7, 10], _TAG_LEG_R: [0, 2, 5, 8, 11]}
  for t, joints in groups.items():
    sel = tag == t
    W[sel] = _bone_weights(P[sel], joints, bones, 0.009, 55)
  sel = tag == _TAG_HEAD
  wn, wh, wj = _head_weights(P[sel], J[22, 2])
  W[sel, 12], W[sel, 15], W[sel, 22] = wn, wh, wj
  W[tag == _TAG_EYE_L, 23] = 1.0
  W[tag == _TAG_EYE_R, 24] = 1.0
  Wh = _hand_template_weights(hand)[hand_order]  # (778, 16) in local order
  for wj, base, off in ((20, 25, _L0), (21, 40, _R0)):
    W[off:off + hand.n, wj] = Wh[:, 0]
    W[off:off + hand.n, base:base + 15] = Wh[:, 1:]
  # ------------------------------------------------------------ blend shapes
  N = _vertex_normals(P, F)
  rng = np.random.default_rng([seed, 1])
  sigma = np.full(55, 0.06)
  sigma[25:] = 0.012
  sigma[[20, 21]] = 0.035
  sigma[[12, 15]] = 0.05
  sigma[22] = 0.03
  posedirs = _posedirs(P, N, J, sigma, 0.003, rng, zero=(23, 24))
  shapedirs = np.empty((V, 3, 400))
  floor = np.array([0.0, P[:, 1].min(), 0.0])
  shapedirs[:, :, 0] = 0.03 * (P - floor)
  small = (_TAG_HEAD, _TAG_EYE_L, _TAG_EYE_R, _TAG_HAND_L, _TAG_HAND_R)
  mask = np.where(np.isin(tag, small), 0.3, 1.0)
  shapedirs[:, :, 1] = 0.01 * N * mask[:, None]
  shapedirs[:, :, 2:300] = _fourier_fields(P, 298, np.random.default_rng([seed, 2]),
                                           2.0, 10.0, 0.006, 15.0)
  expr = np.zeros((V, 3, 100))
  hs = np.where(tag == _TAG_HEAD)[0]
  Ph = P[hs]
  face = (_smoothstep(Ph[:, 2] / 0.05) * _smoothstep((0.70 - Ph[:, 1]) / 0.04)
          * _smoothstep((Ph[:, 1] - 0.54) / 0.02))
  expr[hs, :, 1:] = face[:, None, None] * _fourier_fields(
      Ph, 99, np.random.default_rng([seed, 3]), 15.0, 45.0, 0.004, 8.0)
  expr[hs, 1, 0] = -0.006 * W[hs, 22]
  expr[hs, 2, 0] = -0.002 * W[hs, 22]
  shapedirs[:, :, 300:] = expr
  for e in (np.where(tag == _TAG_EYE_L)[0], np.where(tag == _TAG_EYE_R)[0]):
    _region_rigid(shapedirs, e)
  # ---------------------------------------------------------------- hands
  mean_l, comps_l = _hand_pca(np.random.default_rng([seed, 4]), 1.0)
  mean_r, comps_r = _hand_pca(np.random.default_rng([seed, 4]), -1.0)
  crng = np.random.default_rng([seed, 5])
  std = 0.8 / (1.0 + np.arange(45) / 4.0)
  coeffs_r = crng.normal(size=(32, 45)) * std
  coeffs_l = coeffs_r.copy()
  # ------------------------------------------------------------- landmarks
  face_ok = np.all(tag[F] == _TAG_HEAD, axis=1)
  st_pts, dyn_pts = _landmark_targets()
  lmk_f, lmk_b = _nearest_faces(P, F, face_ok, st_pts)
  dyn_f, dyn_b = _nearest_faces(P, F, face_ok, dyn_pts)

  out = _SmplxData()
  out.P, out.F, out.tag, out.J, out.Jreg, out.W = P, F, tag, J, Jreg, W
  out.posedirs, out.shapedirs = posedirs, shapedirs
  out.hand = dict(mean_l=mean_l, mean_r=mean_r, comps_l=comps_l, comps_r=comps_r,
                  coeffs_l=coeffs_l, coeffs_r=coeffs_r)
  out.lmk = (lmk_f, lmk_b, dyn_f, dyn_b)
  out.head_slots = head_slots
  out.hand_order = hand_order
  out.hand_part = hand
  out.head_part = head
  out.Jt = Jt
  # ------------------------------------------------------------ J14 (LSP)
  lsp = [8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12]
  tgt = J[lsp].copy()
  tgt[2] += (-0.012, -0.02, 0.0)
  tgt[3] += (0.012, -0.02, 0.0)
  j14 = np.zeros((14, V))
  for r, j in enumerate(lsp):
    c = cand.get(j)
    if c is None:  # wrists: forearm end + hand
      c = tags(_TAG_ARM_L, _TAG_HAND_L) if j == 20 else tags(_TAG_ARM_R, _TAG_HAND_R)
    idx, w = _regress(P, c, tgt[r])
    j14[r, idx] = w
  idx, w = _regress(P, tags(_TAG_HEAD), (0.0, _HEAD_TOP - 0.008, 0.0))
  j14[13, idx] = w
  out.j14 = j14
  return out


def _smplx_dict(d: _SmplxData, gender: str) -> dict:
  lmk_f, lmk_b, dyn_f, dyn_b = d.lmk
  v = _gender_warp(d.P, gender)
  F = d.F.astype(np.uint32)
  return {
      'v_template': v,
      'f': F,
      'shapedirs': d.shapedirs,
      'posedirs': d.posedirs,
      'J_regressor': d.Jreg,
      'kintree_table': _kintree(SMPLX_PARENTS),
      'weights': d.W,
      'hands_componentsl': d.hand['comps_l'],
      'hands_componentsr': d.hand['comps_r'],
      'hands_meanl': d.hand['mean_l'],
      'hands_meanr': d.hand['mean_r'],
      'hands_coeffsl': d.hand['coeffs_l'],
      'hands_coeffsr': d.hand['coeffs_r'],
      'lmk_faces_idx': lmk_f.astype(np.int64),
      'lmk_bary_coords': lmk_b,
      'dynamic_lmk_faces_idx': dyn_f.astype(np.int64),
      'dynamic_lmk_bary_coords': dyn_b,
      'vt': _uv(d.P),
      'ft': F,
      'joint2num': {name: i for i, name in enumerate(SMPLX_JOINT_NAMES)},
      'part2num': {'head': 0, 'leftEye': 1, 'rightEye': 2, 'torso': 3, 'neck': 4,
                   'leftArm': 5, 'rightArm': 6, 'leftLeg': 7, 'rightLeg': 8,
                   'leftHand': 9, 'rightHand': 10},
  }


def _make_mano(d: _SmplxData, seed: int) -> Dict[str, dict]:
  hand, order = d.hand_part, d.hand_order
  inv = np.empty(hand.n, np.int64)
  inv[order] = np.arange(hand.n)
  Pr = _hand_world(hand.P, (0.0, 0.0, 0.0), -1.0)[order]
  Fr = inv[hand.F]
  Rh = _hand_template_regressor(hand)[:, order]
  Wh = _hand_template_weights(hand)[order]
  rng = np.random.default_rng([seed, 6])
  N = _vertex_normals(Pr, Fr)
  J = Rh @ Pr
  sigma = np.full(16, 0.012)
  posedirs = _posedirs(Pr, N, J, sigma, 0.002, rng)
  sd = np.empty((hand.n, 3, 10))
  sd[:, :, 0] = 0.05 * Pr
  sd[:, :, 1] = 0.0015 * N
  sd[:, :, 2:] = _fourier_fields(Pr, 8, np.random.default_rng([seed, 7]), 10.0, 40.0, 0.002, 4.0)
  mirror = np.array([-1.0, 1.0, 1.0])
  out = {}
  for side in ('RIGHT', 'LEFT'):
    if side == 'RIGHT':
      P, F, sdir, pdir = Pr, Fr, sd, posedirs
      mean, comps, coeffs = d.hand['mean_r'], d.hand['comps_r'], d.hand['coeffs_r']
    else:
      P = Pr * mirror
      F = Fr[:, ::-1]
      sdir = sd * mirror[None, :, None]
      pdir = posedirs * mirror[None, :, None]
      mean, comps, coeffs = d.hand['mean_l'], d.hand['comps_l'], d.hand['coeffs_l']
    out[side] = {
        'v_template': np.ascontiguousarray(P),
        'f': np.ascontiguousarray(F).astype(np.uint32),
        'shapedirs': np.ascontiguousarray(sdir),
        'posedirs': np.ascontiguousarray(pdir),
        'J_regressor': sparse.csc_matrix(Rh),
        'kintree_table': _kintree(MANO_PARENTS),
        'weights': Wh,
        'J': Rh @ P,
        'hands_components': comps,
        'hands_mean': mean,
        'hands_coeffs': coeffs,
        'bs_style': 'lbs',
        'bs_type': 'lrotmin',
    }
  return out


def _make_flame(d: _SmplxData, seed: int):
  hs = d.head_slots
  V = len(d.P)
  inv = np.full(V, -1, np.int64)
  inv[hs] = np.arange(len(hs))
  fmask = np.all(inv[d.F] >= 0, axis=1)
  F = inv[d.F[fmask]]
  assert len(F) == FLAME_NUM_FACES
  face_map = np.full(len(d.F), -1, np.int64)
  face_map[np.where(fmask)[0]] = np.arange(len(F))
  ring = d.P[hs][(d.tag[hs] == _TAG_HEAD)]
  origin = np.array([0.0, ring[:, 1].min(), 0.0])
  bottom = ring[ring[:, 1] < origin[1] + 1e-6]
  origin = bottom.mean(0)
  P = d.P[hs] - origin
  tag = d.tag[hs]
  Jt = np.stack([np.zeros(3), d.J[15] - origin, d.J[22] - origin, d.J[23] - origin,
                 d.J[24] - origin])
  R = np.zeros((5, len(hs)))
  for r, sj in enumerate((None, 15, 22, 23, 24)):
    if sj is None:
      idx, w = _regress(P, np.where(P[:, 1] < 0.03)[0], Jt[0])
      R[0, idx] = w
    else:
      R[r] = d.Jreg[sj, hs]
  W = d.W[hs][:, [12, 15, 22, 23, 24]]
  W /= W.sum(1, keepdims=True)
  N = _vertex_normals(P, F)
  J = R @ P
  sigma = np.array([0.05, 0.05, 0.03, 0.01, 0.01])
  posedirs = _posedirs(P, N, J, sigma, 0.002, np.random.default_rng([seed, 8]), zero=(3, 4))
  sd = np.empty((len(hs), 3, 400))
  ctr = np.array([0.0, 0.12, 0.0])
  sd[:, :, 0] = 0.04 * (P - ctr)
  sd[:, :, 1] = 0.004 * N
  sd[:, :, 2:300] = _fourier_fields(P, 298, np.random.default_rng([seed, 9]),
                                    5.0, 20.0, 0.004, 15.0)
  sd[:, :, 300:] = d.shapedirs[hs, :, 300:]
  for t in (_TAG_EYE_L, _TAG_EYE_R):
    _region_rigid(sd, np.where(tag == t)[0])
  model = {
      'v_template': P,
      'f': F.astype(np.uint32),
      'shapedirs': sd,
      'posedirs': posedirs,
      'J_regressor': sparse.csc_matrix(R),
      'kintree_table': _kintree(FLAME_PARENTS),
      'weights': W,
      'J': J,
      'bs_style': 'lbs',
      'bs_type': 'lrotmin',
  }
  lmk_f, lmk_b, dyn_f, dyn_b = d.lmk
  static = {'lmk_face_idx': face_map[lmk_f].astype(np.uint32), 'lmk_b_coords': lmk_b.copy()}
  dynamic = {'lmk_face_idx': face_map[dyn_f].astype(np.int64), 'lmk_b_coords': dyn_b.copy()}
  assert (static['lmk_face_idx'] >= 0).all() and (dynamic['lmk_face_idx'] >= 0).all()
  return model, static, dynamic


def _make_smpl(seed: int) -> Dict[str, dict]:
  g = _build_smpl_geometry()
  hand, body = g.hand, g.body
  M = body.M
  P0, F0, tag0 = M.verts(), M.faces(), M.tag[:M.n].copy()
  V = len(P0)
  assert V == SMPL_NUM_VERTS and len(F0) == SMPL_NUM_FACES
  H = _HEAD
  hsurf = np.where(tag0 == _TAG_HEAD)[0]
  ear_band = hsurf[np.abs(P0[hsurf, 1] - 0.645) < 0.025]
  eyepos = H.front_point(np.array([H.eye_x, -H.eye_x]), H.eye_y)
  near_eye = [hsurf[np.argmin(np.linalg.norm(P0[hsurf] - e, axis=1))] for e in eyepos]
  feet = _foot_specials(P0, tag0, body.foot_info)
  specials = [('nose', hsurf[np.argmax(P0[hsurf, 2])]),
              ('lear', ear_band[np.argmax(P0[ear_band, 0])]),
              ('rear', ear_band[np.argmin(P0[ear_band, 0])]),
              ('leye', near_eye[0]), ('reye', near_eye[1]),
              ('LBigToe', feet[1.0][0]), ('LSmallToe', feet[1.0][1]), ('LHeel', feet[1.0][2]),
              ('RBigToe', feet[-1.0][0]), ('RSmallToe', feet[-1.0][1]), ('RHeel', feet[-1.0][2])]
  for side, prefix in ((1.0, 'l'), (-1.0, 'r')):
    tips = _hand_tip_ids(hand, body.hand_off[side])
    specials += [(prefix + name, tips[name]) for name in _FINGERS]
  order = _swap_specials(np.arange(V), np.arange(V), [(_SMPL_VIDS[k], v) for k, v in specials])
  new_of_old = np.empty(V, np.int64)
  new_of_old[order] = np.arange(V)
  P = np.empty_like(P0)
  P[new_of_old] = P0
  tag = np.empty_like(tag0)
  tag[new_of_old] = tag0
  F = new_of_old[F0]
  allv = np.arange(V)

  def tags(*ts):
    return allv[np.isin(tag, ts)]

  Jt = np.zeros((24, 3))
  Jt[:22] = _body_joint_targets()
  Jt[22] = Jt[20] + (0.085, 0.0, 0.0)
  Jt[23] = Jt[21] - (0.085, 0.0, 0.0)
  cand = {0: tags(_TAG_TORSO), 1: tags(_TAG_TORSO, _TAG_LEG_L), 2: tags(_TAG_TORSO, _TAG_LEG_R),
          3: tags(_TAG_TORSO), 6: tags(_TAG_TORSO), 9: tags(_TAG_TORSO),
          4: tags(_TAG_LEG_L), 7: tags(_TAG_LEG_L), 10: tags(_TAG_LEG_L),
          5: tags(_TAG_LEG_R), 8: tags(_TAG_LEG_R), 11: tags(_TAG_LEG_R),
          12: tags(_TAG_NECK), 13: tags(_TAG_TORSO, _TAG_NECK), 14: tags(_TAG_TORSO, _TAG_NECK),
          15: tags(_TAG_HEAD), 16: tags(_TAG_TORSO, _TAG_ARM_L), 18: tags(_TAG_ARM_L),
          17: tags(_TAG_TORSO, _TAG_ARM_R), 19: tags(_TAG_ARM_R),
          20: tags(_TAG_ARM_L, _TAG_HAND_L), 21: tags(_TAG_ARM_R, _TAG_HAND_R),
          22: tags(_TAG_HAND_L), 23: tags(_TAG_HAND_R)}
  Jreg = np.zeros((24, V))
  for j, c in cand.items():
    idx, w = _regress(P, c, Jt[j])
    Jreg[j, idx] = w
  J = Jreg @ P
  W = np.zeros((V, 24))
  heel = {s: J[7 if s > 0 else 8] + (0.0, -0.06, -0.015) for s in (1.0, -1.0)}
  toe = {s: J[10 if s > 0 else 11] + (0.005 * s, -0.005, 0.085) for s in (1.0, -1.0)}
  bones = _bones_body(J, {1.0: J[22], -1.0: J[23]}, np.array([0.0, _HEAD_TOP - 0.02, 0.0]),
                      np.array([0.0, 0.56, 0.085]), heel, toe)
  for s, hj, wj in ((1.0, 22, 20), (-1.0, 23, 21)):
    # SMPL has no finger joints: fingers and thumb follow the "hand" joint
    bones[hj] = [(J[hj], J[hj] + (0.09 * s, 0.0, 0.0)), (J[hj], J[hj] + (0.04 * s, 0.0, 0.05))]
    bones[wj] = [(J[wj], J[wj] + (0.03 * s, 0.0, 0.0))]
  groups = {_TAG_TORSO: [0, 1, 2, 3, 6, 9, 13, 14, 16, 17], _TAG_NECK: [9, 12, 13, 14],
            _TAG_ARM_L: [9, 13, 16, 18, 20], _TAG_ARM_R: [9, 14, 17, 19, 21],
            _TAG_LEG_L: [0, 1, 4, 7, 10], _TAG_LEG_R: [0, 2, 5, 8, 11],
            _TAG_HAND_L: [20, 22], _TAG_HAND_R: [21, 23]}
  for t, joints in groups.items():
    sel = tag == t
    W[sel] = _bone_weights(P[sel], joints, bones, 0.009 if t < _TAG_HAND_L else 0.006, 24)
  sel = tag == _TAG_HEAD
  wn, wh, _ = _head_weights(P[sel], 0.0, with_jaw=False)
  W[sel, 12], W[sel, 15] = wn, wh
  N = _vertex_normals(P, F)
  sigma = np.full(24, 0.06)
  sigma[[20, 21, 22, 23]] = 0.04
  posedirs = _posedirs(P, N, J, sigma, 0.003, np.random.default_rng([seed, 10]))
  sd = np.empty((V, 3, 10))
  floor = np.array([0.0, P[:, 1].min(), 0.0])
  sd[:, :, 0] = 0.03 * (P - floor)
  mask = np.where(np.isin(tag, (_TAG_HEAD, _TAG_HAND_L, _TAG_HAND_R)), 0.3, 1.0)
  sd[:, :, 1] = 0.01 * N * mask[:, None]
  sd[:, :, 2:] = _fourier_fields(P, 8, np.random.default_rng([seed, 11]), 2.0, 10.0, 0.006, 15.0)
  out = {}
  for gender in ('neutral', 'male', 'female'):
    v = _gender_warp(P, gender)
    out[gender] = {
        'v_template': v,
        'f': F.astype(np.uint32),
        'shapedirs': sd,
        'posedirs': posedirs,
        'J_regressor': sparse.csc_matrix(Jreg),
        'kintree_table': _kintree(SMPL_PARENTS),
        'weights': W,
        'J': Jreg @ v,
        'bs_style': 'lbs',
        'bs_type': 'lrotmin',
    }
  return out


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------
_CH_KEYS = ('v_template', 'shapedirs', 'weights', 'J')


def _official(model: dict, chumpy: bool) -> dict:
  """SMPL/MANO/FLAME dict as pickled: chumpy stand-ins (official) or cleaned."""
  out = {}
  for k, v in model.items():
    if k == 'J_regressor':
      out[k] = _old_csc(v) if chumpy else _new_csc(v)
    elif chumpy and k in _CH_KEYS:
      out[k] = _chumpy(v)
    else:
      out[k] = v
  return out


def write_human_model_files(root, seed: int = 0, *, chumpy: bool = True) -> pathlib.Path:
  """Write synthetic SMPL-X / SMPL / MANO / FLAME files under ``root``.

  The layout is Hand4Whole's ``common/utils/human_model_files``::

      smplx/SMPLX_{NEUTRAL,MALE,FEMALE}.{npz,pkl}, SMPLX_to_J14.pkl,
            MANO_SMPLX_vertex_ids.pkl, SMPL-X__FLAME_vertex_ids.npy
      smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl
      mano/MANO_{LEFT,RIGHT}.pkl
      flame/FLAME_NEUTRAL.pkl, flame_static_embedding.pkl, flame_dynamic_embedding.npy

  The contents are synthetic (not the licensed models) but have the official
  keys, dtypes, shapes and vertex/face counts.  Output is a deterministic
  function of ``seed`` (byte-identical files for equal seeds).  With
  ``chumpy=True`` the SMPL / MANO / FLAME pickles reference ``chumpy.ch.Ch``
  and ``scipy.sparse.csc.csc_matrix`` exactly like the official Python-2
  files; with ``chumpy=False`` they are "cleaned" (plain numpy + current
  scipy sparse) and load with the PyPI ``smplx`` package.  Pickles hold
  Python-2 style byte strings: load them with ``encoding='latin1'``.

  Each file is written under a temporary name and renamed when complete, and
  ``SYNTHETIC_MODELS.json`` records the set: ``"complete": false`` before the
  first file, the file list with sizes after the last. A run killed midway
  therefore leaves a folder that ``status`` calls ``'incomplete'``, which the
  quickstart writes again.

  Returns ``pathlib.Path(root)``.
  """
  root = pathlib.Path(root)
  for sub in ('smplx', 'smpl', 'mano', 'flame'):
    (root / sub).mkdir(parents=True, exist_ok=True)
    for stale in (root / sub).glob(f'*{_PARTIAL}*'):   # left by a killed earlier run
      stale.unlink(missing_ok=True)
  seed = int(seed)
  _write_marker(root, {'complete': False, 'seed': seed, 'chumpy': chumpy})
  # the arrays are large (about 1.6 GB in total): files are written by a small
  # thread pool (file I/O and CRCs release the GIL) while the next models are built
  with ThreadPoolExecutor(max_workers=3) as pool:
    jobs = []

    def submit(fn, *args, **kw):
      jobs.append(pool.submit(fn, *args, **kw))

    d = _make_smplx(seed)
    for gender in ('neutral', 'male', 'female'):
      model = _smplx_dict(d, gender)
      name = f'SMPLX_{gender.upper()}'
      npz = {k: (np.array(v, dtype=object) if isinstance(v, dict) else v)
             for k, v in model.items()}
      submit(_write_npz, root / 'smplx' / f'{name}.npz', npz)
      submit(_write_pickle, root / 'smplx' / f'{name}.pkl', model)
    submit(_write_pickle, root / 'smplx' / 'SMPLX_to_J14.pkl', d.j14, py2=False)
    submit(_write_pickle, root / 'smplx' / 'MANO_SMPLX_vertex_ids.pkl', {
        'left_hand': np.arange(_L0, _L0 + MANO_NUM_VERTS, dtype=np.int64),
        'right_hand': np.arange(_R0, _R0 + MANO_NUM_VERTS, dtype=np.int64)}, py2=False)
    submit(_save_npy, root / 'smplx' / 'SMPL-X__FLAME_vertex_ids.npy',
           d.head_slots.astype(np.int64))
    for side, model in _make_mano(d, seed).items():
      submit(_write_pickle, root / 'mano' / f'MANO_{side}.pkl', _official(model, chumpy))
    flame, static, dynamic = _make_flame(d, seed)
    submit(_write_pickle, root / 'flame' / 'FLAME_NEUTRAL.pkl', _official(flame, chumpy))
    submit(_write_pickle, root / 'flame' / 'flame_static_embedding.pkl', static, py2=False)
    submit(_save_npy, root / 'flame' / 'flame_dynamic_embedding.npy',
           np.array(dynamic, dtype=object))
    for gender, model in _make_smpl(seed).items():
      submit(_write_pickle, root / 'smpl' / f'SMPL_{gender.upper()}.pkl',
             _official(model, chumpy))
    for job in jobs:
      job.result()
  written = sorted(p for p in root.rglob('*') if p.is_file() and p.name != MARKER
                   and p.parent != root and _PARTIAL not in p.name)
  _write_marker(root, {'complete': True, 'seed': seed, 'chumpy': chumpy,
                       'files': {p.relative_to(root).as_posix(): p.stat().st_size
                                 for p in written}})
  return root


MARKER = 'SYNTHETIC_MODELS.json'


def _write_marker(root: pathlib.Path, record: dict) -> None:
  with _atomic_open(root / MARKER) as fh:
    fh.write(json.dumps({'writer': 'smplx_jax.synthetic', **record}, indent=1).encode())


def status(root) -> str:
  """What ``root`` holds, for writers that fill a folder once (quickstart, demo).

  Returns:
    'complete': a finished set of synthetic files, each of its recorded size;
    'incomplete': a synthetic set whose writing did not finish (or a file
      went missing or changed size since): write it again;
    'other': SMPL-X files not written by this module (the licensed ones, or
      synthetic ones from before the marker existed): never overwrite;
    'absent': no SMPL-X file and no marker: write.
  """
  root = pathlib.Path(root)
  try:
    record = json.loads((root / MARKER).read_text())
  except FileNotFoundError:
    has_smplx = any((root / 'smplx' / f'SMPLX_NEUTRAL.{ext}').exists() for ext in ('npz', 'pkl'))
    return 'other' if has_smplx else 'absent'
  except (ValueError, OSError):
    return 'incomplete'
  files = record.get('files') if isinstance(record, dict) else None
  if not isinstance(record, dict) or record.get('complete') is not True \
      or not isinstance(files, dict) or not files:
    return 'incomplete'
  for name, size in files.items():
    path = root / name
    if not path.is_file() or path.stat().st_size != size:
      return 'incomplete'
  return 'complete'


def _main(argv=None) -> int:
  ap = argparse.ArgumentParser(
      prog='python -m smplx_jax.synthetic',
      description='Write synthetic (not the licensed) SMPL-X/SMPL/MANO/FLAME model files '
                  'in the layout of Hand4Whole\'s common/utils/human_model_files.')
  ap.add_argument('out_dir', help='output folder (created if needed)')
  ap.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
  ap.add_argument('--no-chumpy', dest='chumpy', action='store_false',
                  help='write "cleaned" SMPL/MANO/FLAME pickles (no chumpy references)')
  args = ap.parse_args(argv)
  t0 = time.perf_counter()
  root = write_human_model_files(args.out_dir, seed=args.seed, chumpy=args.chumpy)
  dt = time.perf_counter() - t0
  files = sorted(p for p in root.rglob('*') if p.is_file())
  for p in files:
    print(f'{p.stat().st_size / 1e6:10.2f} MB  {p}')
  print(f'wrote {len(files)} synthetic model files under {root} in {dt:.2f} s '
        f'(seed={args.seed}, chumpy={args.chumpy})')
  return 0


if __name__ == '__main__':
  sys.exit(_main())
