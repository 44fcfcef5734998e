"""Loaders for the Hand4Whole extras that live beside the SMPL-X files.

`SMPLX_to_J14.pkl` (the 14 LSP joints regressed from SMPL-X vertices, for the
EHF body PA-MPJPE), `MANO_SMPLX_vertex_ids.pkl` (the SMPL-X vertices of each
hand) and `SMPL-X__FLAME_vertex_ids.npy` (the SMPL-X vertices of the face).
Each returns numpy arrays checked against the SMPL-X vertex count.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from smplx_jax.model_files import ModelFileError, read_raw

SMPLX_NUM_VERTS = 10475
J14_FILE = 'SMPLX_to_J14.pkl'
HAND_IDS_FILE = 'MANO_SMPLX_vertex_ids.pkl'
FACE_IDS_FILE = 'SMPL-X__FLAME_vertex_ids.npy'


def _read(path: Path):
  if not path.exists():
    raise ModelFileError(f'{path}: file not found (see `python -m smplx_jax.check`)')
  return read_raw(path, expect_mapping=False)


def _vertex_ids(value, path: Path, what: str, count: int, num_verts: int) -> np.ndarray:
  ids = np.asarray(value)
  if ids.shape != (count,) or not np.issubdtype(ids.dtype, np.integer):
    raise ModelFileError(f'{path}: {what} has shape {ids.shape} and dtype {ids.dtype}; '
                         f'expected ({count},) integers')
  if ids.min() < 0 or ids.max() >= num_verts:
    raise ModelFileError(f'{path}: {what} has vertex ids outside [0, {num_verts})')
  return ids.astype(np.int64)


def load_j14_regressor(smplx_dir: str | os.PathLike,
                       num_verts: int = SMPLX_NUM_VERTS) -> np.ndarray:
  """(14, V) float32 regressor from `smplx_dir/SMPLX_to_J14.pkl`."""
  path = Path(smplx_dir) / J14_FILE
  reg = np.asarray(_read(path))
  if reg.shape != (14, num_verts) or not np.issubdtype(reg.dtype, np.floating):
    raise ModelFileError(f'{path}: regressor has shape {reg.shape} and dtype {reg.dtype}; '
                         f'expected (14, {num_verts}) floats')
  return reg.astype(np.float32)


def load_hand_vertex_ids(smplx_dir: str | os.PathLike,
                         num_verts: int = SMPLX_NUM_VERTS) -> dict[str, np.ndarray]:
  """{'left_hand': (778,), 'right_hand': (778,)} from MANO_SMPLX_vertex_ids.pkl."""
  path = Path(smplx_dir) / HAND_IDS_FILE
  data = _read(path)
  if not isinstance(data, dict) or not {'left_hand', 'right_hand'} <= set(data):
    raise ModelFileError(f"{path}: expected a dict with 'left_hand' and 'right_hand'")
  return {side: _vertex_ids(data[side], path, side, 778, num_verts)
          for side in ('left_hand', 'right_hand')}


def load_face_vertex_ids(smplx_dir: str | os.PathLike,
                         num_verts: int = SMPLX_NUM_VERTS) -> np.ndarray:
  """(5023,) SMPL-X vertex ids of the FLAME face from SMPL-X__FLAME_vertex_ids.npy."""
  path = Path(smplx_dir) / FACE_IDS_FILE
  return _vertex_ids(_read(path), path, 'face vertex ids', 5023, num_verts)
