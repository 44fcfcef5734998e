"""What the per-sample transform needs to know about a dataset (its `DatasetInfo`).

upstream: the class attributes of each `data/<NAME>/<NAME>.py` (joint set, flip
pairs) and the per-dataset tails of `__getitem__` (which SMPL-X rotations and
joints are trusted, is_3D). Name-based remapping (`transform_joint_to_other_db`)
becomes one precomputed index table.
"""

import contextlib
import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np

from h4w_jax.common import joint_sets as js


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static facts about one dataset.

  name: upstream's class name ('Human36M', 'MSCOCO', ...).
  joint_names / flip_pairs: the dataset's own joint set.
  is_3d: upstream's `is_3D` flag (3D group in the mixing).
  smplx_rotation_invalid: names of the 53 pose joints whose fitted rotations are
    not supervised (Human3.6M, MPII, MPI-INF-3DHP: ankles and wrists).
  smplx_joint_invalid: names of the 137 joints whose fitted coordinates are not
    supervised (the same sets: the six foot joints).
  hand_face_box_x_scale: output_hm_shape index used to scale box x into hm units:
    2 (width, 6) everywhere except EHF, which uses 1 (8) (quirk, harmless: EHF
    boxes are not used at test time).
  hand_face_box_dummy: [[x1, y1], [x2, y2]] emitted for a missing box (MSCOCO
    [[0, 0], [1, 1]]; EHF zeros).
  joints_from_smplx: the joint_* targets are the SMPL-X ones (AGORA).
  kind: which example contract the transform makes ('wholebody'; the hand sets
    of stage 2 have hand_example.HandDatasetInfo with kind 'hand').
  """
  name: str
  joint_names: tuple[str, ...]
  flip_pairs: tuple[tuple[int, int], ...] = ()
  is_3d: bool = False
  smplx_rotation_invalid: tuple[str, ...] = ()
  smplx_joint_invalid: tuple[str, ...] = ()
  hand_face_box_x_scale: int = 2
  hand_face_box_dummy: tuple = ((0.0, 0.0), (1.0, 1.0))
  joints_from_smplx: bool = False
  kind: str = 'wholebody'

  @property
  def num_joints(self) -> int:
    return len(self.joint_names)

  @property
  def flip_perm(self) -> np.ndarray:
    return js.flip_permutation(self.num_joints, self.flip_pairs)

  @property
  def to_smplx(self) -> np.ndarray:
    """(137,) index into this dataset's joints, -1 where the name is missing."""
    return remap_index(self.joint_names, js.JOINT_NAMES)

  @property
  def smplx_pose_mask(self) -> np.ndarray:
    mask = np.ones(js.NUM_ORIG_JOINTS, np.float32)
    mask[[js.ORIG_JOINT_NAMES.index(n) for n in self.smplx_rotation_invalid]] = 0
    return mask

  @property
  def smplx_joint_mask(self) -> np.ndarray:
    mask = np.ones(js.NUM_JOINTS, np.float32)
    mask[[js.JOINT_NAMES.index(n) for n in self.smplx_joint_invalid]] = 0
    return mask


# Datasets without part boxes emit zero centres and sizes (upstream's Human36M, MPII,
# MPI-INF-3DHP set them directly; EHF's missing-box dummy).
ZERO_BOX = ((0.0, 0.0), (0.0, 0.0))

# The masks Human3.6M, MPII and MPI-INF-3DHP put on their body-only fits.
BODY_FIT_ROTATION_INVALID = ('L_Ankle', 'R_Ankle', 'L_Wrist', 'R_Wrist')
BODY_FIT_JOINT_INVALID = ('L_Big_toe', 'L_Small_toe', 'L_Heel', 'R_Big_toe', 'R_Small_toe',
                          'R_Heel')


def remap_index(src_names: Sequence[str], dst_names: Sequence[str]) -> np.ndarray:
  """upstream: transform_joint_to_other_db as a gather table (-1: not in src)."""
  position = {name: i for i, name in enumerate(src_names)}
  return np.array([position.get(name, -1) for name in dst_names], np.int64)


def remap(values: np.ndarray, index: np.ndarray) -> np.ndarray:
  """Gather `values[index]` along axis 0, zeros where index is -1 (float32)."""
  out = np.asarray(values, np.float32)[np.maximum(index, 0)]
  out[index < 0] = 0
  return out


# ---------------------------------------------------------------------------
# Annotation files: every problem names the file


def read_json(path: os.PathLike) -> Any:
  """json.load with the file named in every error (missing, not JSON, not UTF-8)."""
  try:
    with open(path, 'r') as f:
      return json.load(f)
  except FileNotFoundError as e:
    raise FileNotFoundError(f'{path}: annotation file not found') from e
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f'{path}: not valid JSON: {e}') from e


def image_shape(entry, where: str, keys: tuple[str, str] = ('height', 'width')
                ) -> tuple[int, int]:
  """(H, W) of an image entry, each a whole number of pixels in 1..2^31-1 (an int32, as
  records store it), or ValueError naming `where`."""
  try:
    values = [entry[k] for k in keys]
  except (KeyError, TypeError) as e:
    raise ValueError(f'{where}: image entry lacks {e}') from e
  ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
           and 1 <= v < 2 ** 31 and float(v).is_integer() for v in values)
  if not ok:
    raise ValueError(f'{where}: image {keys[0]}/{keys[1]} must be whole pixel counts in '
                     f'1..2^31-1, got {values}')
  return int(values[0]), int(values[1])


@contextlib.contextmanager
def malformed(path, detail: str = ''):
  """Turns what a wrong type or value in an annotation file raises deep inside a reader (a
  null where a number belongs: TypeError; a missing field: KeyError; Infinity for an id:
  OverflowError; ...) into one ValueError naming the file (and `detail`, e.g. the
  annotation). A ValueError that already names the file passes unchanged."""
  where = f'{path}{detail}'
  try:
    yield
  except ValueError as e:
    if str(path) in str(e):
      raise
    raise ValueError(f'{where}: {e}') from e
  except (TypeError, KeyError, AttributeError, IndexError, OverflowError) as e:
    what = f'missing field {e}' if isinstance(e, KeyError) else f'{type(e).__name__}: {e}'
    raise ValueError(f'{where}: malformed ({what})') from e
