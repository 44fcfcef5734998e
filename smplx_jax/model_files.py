"""Reading and validating the official body-model files.

One table per model type says which keys a file must hold and how their
shapes relate; the loaders and `python -m smplx_jax.check` both use it, so a
file that the checker accepts is a file that `create` loads.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from smplx_jax import safe_pickle


class ModelFileError(ValueError):
  """A body-model file is missing, unreadable or has the wrong content."""


@dataclasses.dataclass(frozen=True)
class Key:
  """An expected array: its shape as ints and symbol names ('V', 'J', ...)."""
  name: str
  shape: tuple[Any, ...]
  integer: bool = False


def _base_keys(pose_dims: Any = 'P') -> tuple[Key, ...]:
  return (
      Key('v_template', ('V', 3)),
      Key('f', ('F', 3), integer=True),
      Key('shapedirs', ('V', 3, 'S')),
      Key('posedirs', ('V', 3, pose_dims)),
      Key('J_regressor', ('J', 'V')),
      Key('kintree_table', (2, 'J'), integer=True),
      Key('weights', ('V', 'J')),
  )


SCHEMAS: Mapping[str, tuple[Key, ...]] = {
    'smpl': _base_keys(),
    'smplx': _base_keys() + (
        Key('hands_componentsl', (45, 45)),
        Key('hands_componentsr', (45, 45)),
        Key('hands_meanl', (45,)),
        Key('hands_meanr', (45,)),
        Key('lmk_faces_idx', ('L',), integer=True),
        Key('lmk_bary_coords', ('L', 3)),
        Key('dynamic_lmk_faces_idx', (79, 17), integer=True),
        Key('dynamic_lmk_bary_coords', (79, 17, 3)),
    ),
    'mano': _base_keys() + (
        Key('hands_components', (45, 45)),
        Key('hands_mean', (45,)),
    ),
    'flame': _base_keys(),
    'flame_static_embedding': (
        Key('lmk_face_idx', ('L',), integer=True),
        Key('lmk_b_coords', ('L', 3)),
    ),
    'flame_dynamic_embedding': (
        Key('lmk_face_idx', (79, 17), integer=True),
        Key('lmk_b_coords', (79, 17, 3)),
    ),
}

# The released models' sizes, which the checker reports against.
OFFICIAL_SIZES = {
    'smplx': {'V': 10475, 'F': 20908, 'J': 55},
    'smpl': {'V': 6890, 'F': 13776, 'J': 24},
    'mano': {'V': 778, 'F': 1538, 'J': 16},
    'flame': {'V': 5023, 'F': 9976, 'J': 5},
}


def read_raw(path: str | os.PathLike, expect_mapping: bool = True) -> Any:
  """Opens a .pkl (restricted unpickler), .npz (no pickle) or .npy file."""
  path = Path(path)
  if not path.exists():
    raise ModelFileError(f'{path}: file not found')
  suffix = path.suffix.lower()
  try:
    if suffix == '.npz':
      return safe_pickle.NpzReader(path)
    if suffix == '.pkl':
      data = safe_pickle.load_pickle(path)
    elif suffix == '.npy':
      data = safe_pickle.load_npy(path)
    else:
      raise ModelFileError(f'{path}: unknown extension {suffix!r} '
                           '(expected .pkl, .npz or .npy)')
  except safe_pickle.UnsafePickleError as e:
    raise ModelFileError(str(e)) from e
  except ModelFileError:
    raise
  except ValueError as e:
    raise ModelFileError(str(e)) from e
  if expect_mapping and not isinstance(data, Mapping):
    raise ModelFileError(f'{path}: expected a dict of arrays, found {type(data).__name__}')
  return data


def validate(raw: Mapping[str, Any], schema: str, where: str) -> dict[str, np.ndarray]:
  """Reads the schema's keys from `raw`, checking shapes and symbol agreement.

  Returns the arrays as numpy; raises ModelFileError listing every problem.
  """
  problems: list[str] = []
  symbols: dict[str, int] = {}
  out: dict[str, np.ndarray] = {}
  for key in SCHEMAS[schema]:
    if key.name not in raw:
      problems.append(f'missing key {key.name!r}')
      continue
    try:
      value = np.asarray(raw[key.name])
    except (ValueError, KeyError) as e:
      problems.append(f'key {key.name!r}: unreadable ({e})')
      continue
    if key.name == 'shapedirs' and value.ndim == 2:
      value = value[..., None]  # smplx accepts a single shape component
    if value.ndim != len(key.shape):
      problems.append(f'key {key.name!r}: shape {value.shape}, expected '
                      f'{len(key.shape)} dims {key.shape}')
      continue
    bad = False
    for dim, want in zip(value.shape, key.shape):
      if isinstance(want, int):
        bad |= dim != want
      elif symbols.setdefault(want, dim) != dim:
        bad = True
    if bad:
      problems.append(f'key {key.name!r}: shape {value.shape} does not fit '
                      f'{key.shape} with {symbols}')
      continue
    if key.integer != np.issubdtype(value.dtype, np.integer) and not (
        key.integer and np.issubdtype(value.dtype, np.floating)
        and np.all(value == np.round(value))):
      problems.append(f'key {key.name!r}: dtype {value.dtype}, expected '
                      f'{"integers" if key.integer else "floats"}')
      continue
    if not key.integer and not np.all(np.isfinite(value)):
      problems.append(f'key {key.name!r}: holds NaN or Inf')
      continue
    if not key.integer and value.size and np.abs(value).max() > np.finfo(np.float32).max:
      problems.append(f'key {key.name!r}: holds values beyond float32 (they would become Inf)')
      continue
    out[key.name] = value
  if 'P' in symbols and 'J' in symbols and symbols['P'] != 9 * (symbols['J'] - 1):
    problems.append(f"key 'posedirs': {symbols['P']} pose components, expected "
                    f"9 * (J - 1) = {9 * (symbols['J'] - 1)}")
  if 'f' in out and 'V' in symbols and out['f'].size and (
      out['f'].max() >= symbols['V'] or out['f'].min() < 0):
    problems.append(f"key 'f': vertex index out of range [0, {symbols['V']})")
  if problems:
    raise ModelFileError(f'{where}: ' + '; '.join(problems))
  return out


def load(path: str | os.PathLike, schema: str) -> dict[str, np.ndarray]:
  """Reads and validates one model file."""
  return validate(read_raw(path), schema, str(path))


def parents_from_kintree(kintree_table: np.ndarray) -> tuple[int, ...]:
  """Row 0 of kintree_table with the root's parent as -1 (stored as 2**32-1)."""
  parents = [int(p) for p in np.asarray(kintree_table[0], dtype=np.int64)]
  parents[0] = -1
  for j, p in enumerate(parents[1:], start=1):
    if not 0 <= p < j:
      raise ModelFileError(
          f'kintree_table: joint {j} has parent {p}; parents must precede '
          'their children')
  return tuple(parents)
