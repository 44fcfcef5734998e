"""Per-sample transform of the hand sets in grain workers: hand record -> hand example.

upstream (Pose2Pose, parts='hand'): the shared part of FreiHAND, InterHand26M and
MSCOCO `__getitem__`: `augmentation(img, bbox, split, enforce_flip)` to the
256x256 hand crop and `process_db_coord` for the dataset's own joints. The MANO
targets (`process_human_model_output`) are computed batched on the device from
the fit and the augmentation the example carries (`h4w_jax.models.hand_targets`).

The flip is never random for hands: every hand dataset passes enforce_flip
(FreiHAND False, the others hand_type == 'left'), so right hands are never
mirrored and left hands always are (SPEC_STAGE2 Q1). Scale, rotation and colour
are upstream's get_aug_config draws, one generator per sample (transforms.sample_aug).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from h4w_jax.common import spaces
from h4w_datasets import hand_example as hx
from h4w_datasets import preprocessing as pre
from h4w_datasets import transforms as tf

_HM_D, _HM_H, _HM_W = spaces.HAND_HM_SHAPE
_IMG_H, _IMG_W = spaces.HAND_INPUT_SHAPE
# The crop's aspect ratio (W / H = 1): process_bbox squares hand boxes.
ASPECT_RATIO = _IMG_W / _IMG_H

# Fields the transform consumes; every other record field passes into the example.
_CONSUMED = ('img_path', 'img_bytes', 'joint_img', 'joint_cam', 'joint_valid')


def process_bbox(bbox, img_width, img_height):
  """upstream (Pose2Pose): process_bbox with the hand crop's aspect ratio 1."""
  return pre.process_bbox(bbox, img_width, img_height, aspect_ratio=ASPECT_RATIO)


def with_enforced_flip(aug: tf.AugParams, is_left) -> tf.AugParams:
  """upstream's enforce_flip: mirror exactly the left hands."""
  return dataclasses.replace(aug, do_flip=bool(is_left))


def process_db_coord(joint_img, joint_cam, joint_valid, aug: tf.AugParams, img_shape,
                     img2bb_trans):
  """upstream (Pose2Pose): process_db_coord for a hand (no flip pairs), MANO order in and out.

  joint_img (21, 3): u, v original pixels, z wrist-relative depth (metres);
  joint_cam (21, 3) metres. Returns joint_img (21, 3) heatmap voxels (z the bin
  (z / 0.15 + 1) / 2 * 8), joint_cam (21, 3) mirrored and rotated by Rz(-rot),
  joint_valid (21, 1) and joint_trunc (21, 1) = valid * inside the 8x8x8 volume,
  float32.
  """
  joint_img = np.array(joint_img, np.float32)
  joint_cam = np.array(joint_cam, np.float32)
  joint_valid = np.array(joint_valid, np.float32)
  if aug.do_flip:
    joint_cam[:, 0] = -joint_cam[:, 0]
    joint_img[:, 0] = img_shape[1] - 1 - joint_img[:, 0]
  joint_cam = joint_cam @ pre.rz(aug.rot).T
  xy = pre.affine_points(img2bb_trans, joint_img[:, :2])
  joint_img[:, 0] = xy[:, 0] / _IMG_W * _HM_W
  joint_img[:, 1] = xy[:, 1] / _IMG_H * _HM_H
  joint_img[:, 2] = (joint_img[:, 2] / np.float32(spaces.HAND_3D_SIZE / 2) + 1) / 2.0 * _HM_D
  inside = ((joint_img[:, 0] >= 0) & (joint_img[:, 0] < _HM_W) & (joint_img[:, 1] >= 0)
            & (joint_img[:, 1] < _HM_H) & (joint_img[:, 2] >= 0) & (joint_img[:, 2] < _HM_D))
  joint_trunc = joint_valid * inside.reshape(-1, 1).astype(np.float32)
  return joint_img, joint_cam, joint_valid, joint_trunc


def make_example(record: Mapping, info: hx.HandDatasetInfo, aug: tf.AugParams = tf.TEST_AUG, *,
                 crop_dtype=np.uint8, where: str = '') -> dict[str, np.ndarray]:
  """One hand record and its augmentation -> one hand example (hand_example.py's fields).

  crop_dtype: uint8 (default; the device applies the colour gain) or float32
    (upstream's exact float crop).
  """
  where = where or f"{info.name} {record.get('img_path', '')}"
  aug = with_enforced_flip(aug, float(record['is_left']) > 0)
  img = tf.image_of(record, where)
  img_shape = img.shape[:2]
  if tuple(record['img_shape']) != img_shape:
    raise ValueError(f"{where}: the annotation says the image is {tuple(record['img_shape'])} "
                     f'(H, W) but the file is {img_shape}')
  if np.dtype(crop_dtype) != np.uint8:
    img = img.astype(crop_dtype)
  patch, img2bb, bb2img = pre.crop(img, record['bbox'], aug.scale, aug.rot, aug.do_flip,
                                   spaces.HAND_INPUT_SHAPE)
  if info.has_joints:
    joint_img, joint_cam, joint_valid, joint_trunc = process_db_coord(
        record['joint_img'], record['joint_cam'], record['joint_valid'], aug, img_shape, img2bb)
  else:   # upstream FreiHAND: zero joint targets with zero masks
    joint_img = np.zeros((hx.NUM_JOINTS, 3), np.float32)
    joint_cam = np.zeros((hx.NUM_JOINTS, 3), np.float32)
    joint_valid = np.zeros((hx.NUM_JOINTS, 1), np.float32)
    joint_trunc = np.zeros((hx.NUM_JOINTS, 1), np.float32)
  out = {
      'img': patch, 'color_scale': np.asarray(aug.color_scale, np.float32),
      'img2bb_trans': img2bb, 'bb2img_trans': bb2img,
      'rot': np.float32(aug.rot), 'do_flip': np.float32(aug.do_flip),
      'joint_img': joint_img, 'joint_cam': joint_cam, 'joint_valid': joint_valid,
      'joint_trunc': joint_trunc, 'is_3D': np.float32(info.is_3d),
  }
  for key, value in record.items():
    if key not in _CONSUMED:
      out[key] = np.asarray(value)
  return out


def train_keys() -> frozenset[str]:
  """The fields of every hand training example, whatever its dataset (extras dropped)."""
  keys = {k for k in hx.record_spec() if k not in _CONSUMED}
  keys |= {'img', 'color_scale', 'img2bb_trans', 'bb2img_trans', 'rot', 'do_flip', 'joint_img',
           'joint_cam', 'joint_valid', 'joint_trunc', 'is_3D', 'dataset_id', 'index',
           'num_skipped', 'sample_valid'}
  return frozenset(keys)


def example_spec(crop_dtype=np.uint8) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """Shapes (per sample) and dtypes of a hand training example: what the step's batch holds
  with a leading B (`train_keys()`), as `example.example_spec` is for the whole body."""
  f32, i32, i64 = np.dtype(np.float32), np.dtype(np.int32), np.dtype(np.int64)
  joints = hx.NUM_JOINTS
  spec = {k: v for k, v in hx.record_spec().items() if k not in _CONSUMED}
  spec.update({
      'img': ((*spaces.HAND_INPUT_SHAPE, 3), np.dtype(crop_dtype)), 'color_scale': ((3,), f32),
      'img2bb_trans': ((2, 3), f32), 'bb2img_trans': ((2, 3), f32), 'rot': ((), f32),
      'do_flip': ((), f32), 'joint_img': ((joints, 3), f32), 'joint_cam': ((joints, 3), f32),
      'joint_valid': ((joints, 1), f32), 'joint_trunc': ((joints, 1), f32), 'is_3D': ((), f32),
      'dataset_id': ((), i32), 'index': ((), i64), 'num_skipped': ((), i32),
      'sample_valid': ((), f32)})
  return spec
