"""The hand datasets' data contracts (stage 2): a reader's *record* and a worker's *example*.

The hand-only model (upstream's Pose2Pose branch, parts='hand') reads single-hand
crops: FreiHAND, InterHand2.6M and MSCOCO-WholeBody hands. Data flows as for the
whole-body sets (example.py): annotation files -> records (readers) -> examples
(hand_transforms, in grain workers) -> batches -> MANO targets on the device
(`h4w_jax.models.hand_targets`) -> the step. Joints are in the MANO order of
`h4w_jax.common.joint_sets.MANO_JOINT_NAMES` (Wrist, Thumb_1..4, Index_1..4,
Middle, Ring, Pinky); readers reorder their own sets by name.

Record (what `reader[i]` returns; one hand):

  img_path      str          absolute path of the original image (`img_bytes`
                             when read back from ArrayRecord)
  img_shape     (2,) int32   original image (H, W)
  bbox          (4,) f32     hand box, xywh in original pixels, as the crop uses it
                             (through `process_bbox` with aspect 1, except
                             FreiHAND's evaluation boxes, which RootNet made square)
  joint_img     (21, 3) f32  the dataset's joints: u, v original pixels; z the
                             wrist-relative depth in metres (3D sets) or 0 (2D sets)
  joint_cam     (21, 3) f32  metres, wrist-relative (3D sets), else zeros
  joint_valid   (21, 1) f32
  root_cam      (3,) f32     the annotated wrist in the camera frame, metres (3D
                             sets; evaluation roots the ground-truth mesh there)
  mano_pose (48,), mano_shape (10,), mano_trans (3,) f32
                             the MANO fit (root first, axis-angle; metres), in the
                             frame of cam_R/cam_t (identity/zeros: camera frame);
                             zeros when there is no fit
  mano_valid    () f32       1 when a fit exists
  is_left       () f32       1 for a left hand: its crop is mirrored into a right
                             hand (upstream's enforce_flip) and its fit runs
                             through the left MANO layer
  cam_focal, cam_princpt (2,) f32   pixels of the original image
  cam_R (3, 3), cam_t (3,) f32      extrinsics (t in metres) of the fit
  ann_id, img_id () int64    the annotation's ids

  Readers may add fixed-shape fields (FreiHAND's `db_idx`); they pass through.

Example (what a worker emits per sample; batched with a leading B):

  img           (256, 256, 3) uint8   RGB hand crop, mirrored for a left hand,
                                      before the colour jitter
  color_scale   (3,) f32              applied on device (clip(img*s, 0, 255)/255)
  img2bb_trans, bb2img_trans (2, 3) f32   original pixels <-> crop pixels
  rot () f32 degrees; do_flip () f32 (= is_left)
  joint_img     (21, 3) f32  heatmap voxels (x, y: crop pixels / 32; z: the
                             depth bin of the 0.3 m range); zeros for FreiHAND
  joint_cam     (21, 3) f32  metres, mirrored and rotated like the image
  joint_valid, joint_trunc (21, 1) f32   trunc already multiplied by valid
  is_3D         () f32
  the record's bbox, mano_*, is_left, cam_*, root_cam, img_shape, ann_id, img_id,
  plus dataset_id () int32, index () int64, num_skipped () int32, sample_valid () f32
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from h4w_jax.common import joint_sets as js

KIND = 'hand'
NUM_JOINTS = js.NUM_MANO_JOINTS


@dataclasses.dataclass(frozen=True)
class HandDatasetInfo:
  """Static facts about one hand dataset.

  name: upstream's class name ('FreiHAND', 'InterHand26M', 'MSCOCO').
  is_3d: upstream's is_3D (3D group in the mixing, depth supervised).
  has_joints: the dataset supervises its own joints; FreiHAND's train items
    carry zero joint targets with zero masks (only the MANO terms train).
  """
  name: str
  is_3d: bool
  has_joints: bool = True
  kind: str = KIND


MANO_PARAM_SHAPES = {'mano_pose': (48,), 'mano_shape': (10,), 'mano_trans': (3,)}


def record_spec() -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """Shapes and dtypes of a hand record's array fields (excluding img_path/img_bytes)."""
  f32, i32, i64 = np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64)
  return {
      'img_shape': ((2,), i32), 'bbox': ((4,), f32),
      'joint_img': ((NUM_JOINTS, 3), f32), 'joint_cam': ((NUM_JOINTS, 3), f32),
      'joint_valid': ((NUM_JOINTS, 1), f32), 'root_cam': ((3,), f32),
      **{k: (s, f32) for k, s in MANO_PARAM_SHAPES.items()},
      'mano_valid': ((), f32), 'is_left': ((), f32),
      'cam_focal': ((2,), f32), 'cam_princpt': ((2,), f32), 'cam_R': ((3, 3), f32),
      'cam_t': ((3,), f32), 'ann_id': ((), i64), 'img_id': ((), i64),
  }


def empty_record() -> dict[str, np.ndarray]:
  """Every field zero except the identity rotation: readers fill it."""
  record = {k: np.zeros(shape, dtype) for k, (shape, dtype) in record_spec().items()}
  record['cam_R'] = np.eye(3, dtype=np.float32)
  return record


def as_array(value, shape: tuple[int, ...], where: str, name: str) -> np.ndarray:
  """float32 array of an exact size (reshaped), or ValueError naming the field."""
  try:
    array = np.asarray(value, np.float32)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where}: {name!r} is not numeric: {e}') from e
  if array.size != int(np.prod(shape)):
    raise ValueError(f'{where}: {name!r} has {array.size} values, expected shape {shape}')
  array = array.reshape(shape)
  if not np.all(np.isfinite(array)):
    raise ValueError(f'{where}: {name!r} has non-finite values')
  return array


def field(mapping: Any, key: str, where: str) -> Any:
  if not isinstance(mapping, Mapping) or key not in mapping:
    raise ValueError(f'{where}: missing {key!r}')
  return mapping[key]


def mano_fit_fields(param: Any, where: str) -> dict[str, np.ndarray]:
  """A MANO fit {'pose' (48), 'shape' (10), 'trans' (3)} -> the record's mano_* fields.

  None (upstream's missing or null fit) gives mano_valid 0 and zeros.
  """
  out = {k: np.zeros(s, np.float32) for k, s in MANO_PARAM_SHAPES.items()}
  out['mano_valid'] = np.float32(0)
  if param is None:
    return out
  if not isinstance(param, Mapping):
    raise ValueError(f'{where}: the MANO fit is a {type(param).__name__}, expected an object')
  for key, shape in MANO_PARAM_SHAPES.items():
    name = key.removeprefix('mano_')
    out[key] = as_array(field(param, name, where), shape, where, name)
  out['mano_valid'] = np.float32(1)
  return out


def camera_fields(cam: Any, where: str) -> dict[str, np.ndarray]:
  """{'focal', 'princpt'} (pixels) -> cam_focal, cam_princpt."""
  return {'cam_focal': as_array(field(cam, 'focal', where), (2,), where, 'focal'),
          'cam_princpt': as_array(field(cam, 'princpt', where), (2,), where, 'princpt')}


def check_record(record: Mapping, where: str) -> None:
  """ValueError naming `where` and every bad field."""
  problems = []
  for key, (shape, _) in record_spec().items():
    if key not in record:
      problems.append(f'missing {key!r}')
      continue
    value = np.asarray(record[key])
    if value.shape != shape:
      problems.append(f'{key!r} has shape {value.shape}, expected {shape}')
    elif value.dtype.kind == 'f' and not np.all(np.isfinite(value)):
      problems.append(f'{key!r} has non-finite values')
  if 'img_path' not in record and 'img_bytes' not in record:
    problems.append("neither 'img_path' nor 'img_bytes'")
  if problems:
    raise ValueError(f'{where}: malformed record: ' + '; '.join(problems))


class RecordTable:
  """Records as one array per field (no per-item dicts of JSON lists): what readers keep."""

  def __init__(self, rows: list[dict[str, Any]], where: str):
    if not rows:
      raise ValueError(f'{where}: no sample survives the filters')
    self._paths = [r['img_path'] for r in rows]
    keys = [k for k in rows[0] if k != 'img_path']
    self._arrays = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in keys}

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, i: int) -> dict[str, Any]:
    record = {k: v[i].copy() for k, v in self._arrays.items()}
    record['img_path'] = self._paths[i]
    return record

  def column(self, key: str) -> np.ndarray:
    return self._arrays[key]
