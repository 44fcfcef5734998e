"""The two data contracts: a reader's *record* and a worker's *example*.

Data flows one way (STYLE.md): annotation files -> records (readers, one per
dataset) -> examples (per-sample transforms in grain workers, numpy/cv2) ->
batches on the mesh -> SMPL-X targets on the device (`h4w_jax.models.targets`) -> the
step. Every field has a fixed shape so that records can be stored as TFDS
ArrayRecord datasets (`tfds_builders`) and examples batched without padding.

Record (what `reader[i]` returns; upstream's `datalist` entry, made explicit):

  img_path      str          absolute path of the original image; a record read
                             from a TFDS dataset (`tfds_source`) carries
                             `img_bytes` (the encoded file) and `source_path`
                             (relative to data_root) instead
  img_shape     (2,) int32   original image (H, W)
  bbox          (4,) f32     body box, xywh in original pixels, already through
                             `process_bbox` (aspect 0.75, x1.25)
  joint_img     (J, 3) f32   the dataset's own joints: u, v in original pixels;
                             z is the discretised relative depth (body-hm units,
                             3D sets) or 0 (2D sets)
  joint_cam     (J, 3) f32   metres, root-relative (3D sets) or zeros
  joint_valid   (J, 1) f32
  smplx_*       SMPL-X fit in the camera frame of `cam_*` (world frame when
                cam_R/cam_t are not identity/zero, as Human3.6M):
                root_pose (3,), body_pose (63,), lhand_pose (45,),
                rhand_pose (45,), jaw_pose (3,), shape (10,), expr (10,),
                trans (3,) metres; all zeros when there is no fit
  smplx_valid   () f32       1 when a fit exists
  smplx_lhand_valid, smplx_rhand_valid, smplx_face_valid   () f32
                             upstream's `'lhand_pose' in param and
                             param['lhand_valid']` (and the face's jaw+expr)
  smplx_gender  () int32     0 neutral, 1 male, 2 female (GENDERS)
  cam_focal, cam_princpt (2,) f32   pixels of the original image
  cam_R (3, 3), cam_t (3,) f32      extrinsics in metres; identity / zeros
                                    when the fit is already in camera frame
  lhand_bbox, rhand_bbox, face_bbox (4,) f32   xyxy original pixels
  lhand_bbox_valid, rhand_bbox_valid, face_bbox_valid () f32
  ann_id, img_id () int64    the annotation's ids (result-file names, debugging)

  Readers may add fixed-shape evaluation fields (EHF `smplx_mesh_cam`, 3DPW
  `smpl_*`); the transform passes unknown numeric fields through.

Example (what a worker emits per sample; batched with a leading B):

  img           (512, 384, 3) uint8   RGB crop, before the colour jitter
  color_scale   (3,) f32              applied on device (clip(img*s, 0, 255)/255)
  img2bb_trans, bb2img_trans (2, 3) f32   original pixels <-> crop pixels
  rot           () f32 degrees;  do_flip () f32
  img_shape     (2,) int32  the record's original image (H, W); the device-side
                flip of the SMPL-X targets mirrors x -> W - 1 - x
  joint_img     (137, 3) f32  body-hm units (x/64, y/64, depth bins)
  joint_cam     (137, 3) f32  metres, flipped and rotated like the image
  joint_valid, joint_trunc (137, 1) f32   trunc already multiplied by valid
  lhand_bbox_center, ... face_bbox_size (2,) f32 body-hm units;
  lhand_bbox_valid, rhand_bbox_valid, face_bbox_valid () f32
  smplx_*, cam_* as in the record; the SMPL-X targets are computed from them
                on the device together with rot, do_flip and img2bb_trans
  smplx_pose_mask (53,), smplx_joint_mask (137,) f32   dataset-level masks
                (Human3.6M/MPII/MPI: ankle+wrist rotations, feet joints)
  is_3D, joints_from_smplx () f32   joints_from_smplx: the joint_* targets
                are the SMPL-X ones (AGORA)
  bbox (4,) f32, dataset_id () int32, index () int64, num_skipped () int32
"""

import numpy as np

from h4w_jax.common import joint_sets, spaces

GENDERS = ('neutral', 'male', 'female')

SMPLX_PARAM_SHAPES = {
    'smplx_root_pose': (3,), 'smplx_body_pose': (63,), 'smplx_lhand_pose': (45,),
    'smplx_rhand_pose': (45,), 'smplx_jaw_pose': (3,), 'smplx_shape': (10,),
    'smplx_expr': (10,), 'smplx_trans': (3,),
}
SMPLX_FLAGS = ('smplx_valid', 'smplx_lhand_valid', 'smplx_rhand_valid', 'smplx_face_valid')
HAND_FACE_PARTS = ('lhand', 'rhand', 'face')


def record_spec(num_joints: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """Shapes and dtypes of a record's array fields (excluding img_path/img_bytes)."""
  f32, i32, i64 = np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64)
  spec = {
      'img_shape': ((2,), i32), 'bbox': ((4,), f32),
      'joint_img': ((num_joints, 3), f32), 'joint_cam': ((num_joints, 3), f32),
      'joint_valid': ((num_joints, 1), f32),
      **{k: (s, f32) for k, s in SMPLX_PARAM_SHAPES.items()},
      **{k: ((), f32) for k in SMPLX_FLAGS},
      'smplx_gender': ((), i32),
      'cam_focal': ((2,), f32), 'cam_princpt': ((2,), f32), 'cam_R': ((3, 3), f32),
      'cam_t': ((3,), f32),
      'ann_id': ((), i64), 'img_id': ((), i64),
  }
  for part in HAND_FACE_PARTS:
    spec[f'{part}_bbox'] = ((4,), f32)
    spec[f'{part}_bbox_valid'] = ((), f32)
  return spec


def empty_record(num_joints: int) -> dict[str, np.ndarray]:
  """A record with every field zero except the identity rotation: readers fill it."""
  record = {k: np.zeros(shape, dtype) for k, (shape, dtype) in record_spec(num_joints).items()}
  record['cam_R'] = np.eye(3, dtype=np.float32)
  return record


def check_record(record, num_joints: int, where: str) -> None:
  """Raise ValueError naming `where` (dataset, index, file) and every bad field."""
  problems = []
  for key, (shape, dtype) in record_spec(num_joints).items():
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


def example_spec(crop_dtype=np.uint8) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """Shapes (per sample) and dtypes of a training example: what the step's batch holds
  with a leading B (`pipeline.train_keys()`, the fields above)."""
  f32, i32, i64 = np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64)
  joints = joint_sets.NUM_JOINTS
  spec = {
      'img': ((*spaces.INPUT_IMG_SHAPE, 3), np.dtype(crop_dtype)), 'color_scale': ((3,), f32),
      'img2bb_trans': ((2, 3), f32), 'bb2img_trans': ((2, 3), f32), 'rot': ((), f32),
      'do_flip': ((), f32), 'img_shape': ((2,), i32), 'bbox': ((4,), f32),
      'joint_img': ((joints, 3), f32), 'joint_cam': ((joints, 3), f32),
      'joint_valid': ((joints, 1), f32), 'joint_trunc': ((joints, 1), f32),
      **{k: (s, f32) for k, s in SMPLX_PARAM_SHAPES.items()},
      **{k: ((), f32) for k in SMPLX_FLAGS},
      'smplx_gender': ((), i32),
      'cam_focal': ((2,), f32), 'cam_princpt': ((2,), f32), 'cam_R': ((3, 3), f32),
      'cam_t': ((3,), f32),
      'smplx_pose_mask': ((joint_sets.NUM_ORIG_JOINTS,), f32),
      'smplx_joint_mask': ((joints,), f32),
      'is_3D': ((), f32), 'joints_from_smplx': ((), f32),
      'ann_id': ((), i64), 'img_id': ((), i64),
      'dataset_id': ((), i32), 'index': ((), i64), 'num_skipped': ((), i32),
      'sample_valid': ((), f32),
  }
  for part in HAND_FACE_PARTS:
    spec[f'{part}_bbox_center'] = ((2,), f32)
    spec[f'{part}_bbox_size'] = ((2,), f32)
    spec[f'{part}_bbox_valid'] = ((), f32)
  return spec
