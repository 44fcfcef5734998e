"""Per-sample transform in grain workers: record -> example (numpy/cv2 only).

upstream: the shared part of every dataset's `__getitem__`: `augmentation`,
`process_db_coord` and `process_hand_face_bbox`. The SMPL-X targets
(`process_human_model_output`) are not computed here: the example carries the
fit and the augmentation, and `h4w_jax.models.targets` computes them batched on the
device (SPEC_DATA §9, hot spot 1).

Randomness is per record: `sample_aug(rng)` takes a generator that the
pipeline seeds from (seed, global position), so augmentation does not depend
on the number of workers or hosts (quirk Q22 is not reproduced).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from h4w_jax.common import spaces
from h4w_datasets import db as dbm
from h4w_datasets import example as ex
from h4w_datasets import preprocessing as pre

_HM_D, _HM_H, _HM_W = spaces.OUTPUT_HM_SHAPE
_IMG_H, _IMG_W = spaces.INPUT_IMG_SHAPE


@dataclasses.dataclass(frozen=True)
class AugParams:
  """upstream: the return of get_aug_config (test mode: the defaults)."""
  scale: float = 1.0
  rot: float = 0.0
  color_scale: tuple = (1.0, 1.0, 1.0)
  do_flip: bool = False


TEST_AUG = AugParams()


def sample_aug(rng: np.random.Generator) -> AugParams:
  """upstream: get_aug_config's distribution, drawn from one generator.

  scale in [0.75, 1.25]; rotation in [-60, 60] degrees with probability 0.6,
  else 0; per-channel colour gain U(0.8, 1.2); flip with probability 0.5 (the
  `<= 0.6` and `<= 0.5` tests of upstream).
  """
  scale = float(np.clip(rng.standard_normal(), -1.0, 1.0) * 0.25 + 1.0)
  rot = float(np.clip(rng.standard_normal(), -2.0, 2.0) * 30) if rng.random() <= 0.6 else 0.0
  color_scale = tuple(float(c) for c in rng.uniform(0.8, 1.2, size=3))
  do_flip = bool(rng.random() <= 0.5)
  return AugParams(scale, rot, color_scale, do_flip)


def process_db_coord(joint_img, joint_cam, joint_valid, aug: AugParams, img_shape,
                     img2bb_trans, info: dbm.DatasetInfo):
  """upstream: process_db_coord(..., src=info.joint_names, dst=smpl_x.joints_name).

  Returns joint_img (137, 3) body-hm units, joint_cam (137, 3), joint_valid
  (137, 1) and joint_trunc (137, 1) = valid * inside, float32.
  """
  joint_img = np.array(joint_img, np.float32)
  joint_cam = np.array(joint_cam, np.float32)
  joint_valid = np.array(joint_valid, np.float32)
  if aug.do_flip:
    joint_cam[:, 0] = -joint_cam[:, 0]
    joint_img[:, 0] = img_shape[1] - 1 - joint_img[:, 0]
    perm = info.flip_perm
    joint_img, joint_cam, joint_valid = joint_img[perm], joint_cam[perm], joint_valid[perm]
  joint_cam = joint_cam @ pre.rz(aug.rot).T
  xy = pre.affine_points(img2bb_trans, joint_img[:, :2])
  joint_img[:, 0] = xy[:, 0] / _IMG_W * _HM_W
  joint_img[:, 1] = xy[:, 1] / _IMG_H * _HM_H
  inside = ((joint_img[:, 0] >= 0) & (joint_img[:, 0] < _HM_W) & (joint_img[:, 1] >= 0)
            & (joint_img[:, 1] < _HM_H) & (joint_img[:, 2] >= 0) & (joint_img[:, 2] < _HM_D))
  joint_trunc = joint_valid * inside.reshape(-1, 1).astype(np.float32)
  index = info.to_smplx
  return (dbm.remap(joint_img, index), dbm.remap(joint_cam, index),
          dbm.remap(joint_valid, index), dbm.remap(joint_trunc, index))


def process_hand_face_bbox(bbox_xyxy, valid, aug: AugParams, img_shape, img2bb_trans,
                           x_scale_index: int = 2, dummy=((0.0, 0.0), (1.0, 1.0))):
  """upstream: MSCOCO.process_hand_face_bbox (EHF's: x_scale_index=1, zero dummy).

  Returns corners [[x1, y1], [x2, y2]] (2, 2) in body-hm units of the
  axis-aligned box around the four warped corners; `dummy` when invalid.
  Unlike upstream, the caller's box is never flipped in place.
  """
  if not valid:
    corners = np.array(dummy, np.float32)
  else:
    x0, y0, x1, y1 = np.asarray(bbox_xyxy, np.float32)
    if aug.do_flip:
      x0, x1 = img_shape[1] - x1 - 1, img_shape[1] - x0 - 1
    quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
    xy = pre.affine_points(img2bb_trans, quad)
    xy[:, 0] = xy[:, 0] / _IMG_W * spaces.OUTPUT_HM_SHAPE[x_scale_index]
    xy[:, 1] = xy[:, 1] / _IMG_H * _HM_H
    corners = np.array([xy.min(axis=0), xy.max(axis=0)], np.float32)
  return corners


def image_of(record: Mapping, where: str) -> np.ndarray:
  if 'img_bytes' in record:
    return pre.decode_image(bytes(record['img_bytes']), where)
  return pre.load_image(str(record['img_path']), where)


def make_example(record: Mapping, info: dbm.DatasetInfo, aug: AugParams = TEST_AUG, *,
                 crop_dtype=np.uint8, where: str = '') -> dict[str, np.ndarray]:
  """One record and its augmentation -> one example (see example.py for the fields).

  crop_dtype: uint8 (default; the device applies the colour gain, so the crop
    differs from upstream's float crop by rounding only, <= 0.5 grey levels
    before the gain) or float32 (upstream's exact numbers, 4x the bytes).
  """
  where = where or f"{info.name} {record.get('img_path', '')}"
  img = image_of(record, where)
  img_shape = img.shape[:2]
  if tuple(record['img_shape']) != img_shape:
    raise ValueError(f"{where}: the annotation says the image is {tuple(record['img_shape'])} "
                     f'(H, W) but the file is {img_shape}')
  if np.dtype(crop_dtype) != np.uint8:
    img = img.astype(crop_dtype)
  patch, img2bb, bb2img = pre.crop(img, record['bbox'], aug.scale, aug.rot, aug.do_flip)

  joint_img, joint_cam, joint_valid, joint_trunc = process_db_coord(
      record['joint_img'], record['joint_cam'], record['joint_valid'], aug, img_shape, img2bb,
      info)
  out = {
      'img': patch, 'color_scale': np.asarray(aug.color_scale, np.float32),
      'img2bb_trans': img2bb, 'bb2img_trans': bb2img,
      'rot': np.float32(aug.rot), 'do_flip': np.float32(aug.do_flip),
      'joint_img': joint_img, 'joint_cam': joint_cam, 'joint_valid': joint_valid,
      'joint_trunc': joint_trunc,
      'smplx_pose_mask': info.smplx_pose_mask, 'smplx_joint_mask': info.smplx_joint_mask,
      'is_3D': np.float32(info.is_3d), 'joints_from_smplx': np.float32(info.joints_from_smplx),
  }
  boxes = {}
  for part in ex.HAND_FACE_PARTS:
    valid = float(record[f'{part}_bbox_valid'])
    corners = process_hand_face_bbox(record[f'{part}_bbox'], valid > 0, aug, img_shape, img2bb,
                                     info.hand_face_box_x_scale, info.hand_face_box_dummy)
    boxes[part] = ((corners[0] + corners[1]) / 2, corners[1] - corners[0], np.float32(valid))
  if aug.do_flip:  # upstream swaps the hands' boxes and flags after flipping them
    boxes['lhand'], boxes['rhand'] = boxes['rhand'], boxes['lhand']
  for part, (center, size, valid) in boxes.items():
    out[f'{part}_bbox_center'] = center
    out[f'{part}_bbox_size'] = size
    out[f'{part}_bbox_valid'] = valid
  consumed = {'img_path', 'img_bytes', 'source_path', 'joint_img', 'joint_cam', 'joint_valid'}
  consumed |= {f'{part}_bbox{suffix}' for part in ex.HAND_FACE_PARTS for suffix in ('', '_valid')}
  for key, value in record.items():
    if key not in consumed:
      out[key] = np.asarray(value)
  return out


def test_example(record, info, **kwargs):
  return make_example(record, info, TEST_AUG, **kwargs)


def train_example(record, info, aug, **kwargs):
  return make_example(record, info, aug, **kwargs)
