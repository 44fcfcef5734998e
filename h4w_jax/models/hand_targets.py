"""MANO training targets of the hand-only model, computed batched on the device.

upstream: Pose2Pose `common/utils/preprocessing.py` `process_human_model_output(
..., 'mano')`, which every loader worker runs per sample with the MANO layer on
the CPU, plus the train tails of the hand datasets' `__getitem__` (FreiHAND,
InterHand26M, MSCOCO with parts='hand') that turn its outputs into masks. The
workers ship the raw fit, the camera and the augmentation (h4w_datasets.hand_example);
`mano_targets` reproduces upstream's numbers for a whole batch, as
`h4w_jax.models.targets` does for SMPL-X (same rotation helpers).

Left hands: upstream runs the fit through the left MANO layer, then mirrors
everything into a right hand (the image is always flipped for a left hand).
Here both layers run on the whole batch and each sample takes its side's
vertices (778 vertices: cheaper than a gather of layers). The joint regressor
is the right layer's for both sides, as upstream's `mano.joint_regressor`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp

import smplx_jax
from h4w_jax.common import joint_sets as js
from h4w_jax.common import mano as mano_lib
from h4w_jax.common import spaces
from h4w_jax.models import hand_outputs
from h4w_jax.models.targets import (apply_extrinsics, axis_angle_to_rotmat, principal_axis_angle,
                                    rot_z, translate_to_camera)

Array = jax.Array
_EXACT = 'highest'


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ManoLayers:
  """upstream's `mano.layer['right']`, `mano.layer['left']` (with its shapedirs fix)
  and `mano.joint_regressor` (21, 778)."""
  right: smplx_jax.MANO
  left: smplx_jax.MANO
  regressor: Array


def mano_layers(human_model_path) -> ManoLayers:
  right, left = mano_lib.mano_layers(human_model_path)
  return ManoLayers(right=right, left=left,
                    regressor=jnp.asarray(mano_lib.joint_regressor(right), right.dtype))


FIT_FIELDS = ('mano_pose', 'mano_shape', 'mano_trans', 'is_left', 'cam_R', 'cam_t')
AUG_FIELDS = ('cam_focal', 'cam_princpt', 'do_flip', 'rot', 'img2bb_trans', 'img_shape')
TRAIN_FIELDS = ('mano_valid', 'is_3D', 'joint_img', 'joint_cam', 'joint_valid', 'joint_trunc',
                'img', 'color_scale')


def _check(batch: Mapping[str, Any], fields) -> None:
  missing = [k for k in fields if k not in batch]
  if missing:
    raise KeyError(f'batch lacks {missing} (see h4w_datasets.hand_example for the fields)')


def _camera_frame(layers: ManoLayers, batch: Mapping[str, Any]):
  """The un-augmented half of process_human_model_output('mano').

  Returns joints (B, 21, 3) and mesh (B, 778, 3) in the camera frame (metres)
  and the pose (B, 16, 3) with the extrinsic rotation applied to the root.
  """
  _check(batch, FIT_FIELDS)
  dtype = layers.right.dtype
  f = lambda key: jnp.asarray(batch[key], dtype)
  pose = f('mano_pose').reshape(-1, js.NUM_MANO_ORIG_JOINTS, 3)
  cam_r, cam_t = f('cam_R'), f('cam_t')
  root = apply_extrinsics(pose[:, 0], cam_r)
  pose = pose.at[:, 0].set(root)
  inputs = dict(betas=f('mano_shape'), global_orient=root,
                hand_pose=pose[:, 1:].reshape(pose.shape[0], -1), transl=f('mano_trans'))
  left = (f('is_left') > 0)[:, None, None]
  mesh = jnp.where(left, layers.left(**inputs).vertices, layers.right(**inputs).vertices)
  joints = hand_outputs.regress_joints(layers.regressor, mesh)
  wrist = joints[:, js.MANO_ROOT_IDX]
  return (translate_to_camera(joints, wrist, cam_r, cam_t),
          translate_to_camera(mesh, wrist, cam_r, cam_t), pose)


def gt_mesh(layers: ManoLayers, batch: Mapping[str, Any]) -> Array:
  """upstream's mano_mesh_cam_orig: the fit's mesh in the camera frame, (B, 778, 3)."""
  return _camera_frame(layers, batch)[1]


def mano_targets(layers: ManoLayers, batch: Mapping[str, Any], with_mesh: bool = False
                 ) -> dict[str, Array]:
  """upstream: process_human_model_output(..., 'mano'), for a batch.

  Args:
    layers: `mano_layers(human_model_path)`.
    batch: example fields with a leading B (h4w_datasets.hand_example):
      mano_pose (48,), mano_shape (10,), mano_trans (3,) metres, is_left (),
      cam_focal, cam_princpt (2,), cam_R (3, 3), cam_t (3,) metres (identity /
      zeros: the fit is in the camera frame), do_flip, rot (degrees),
      img2bb_trans (2, 3), img_shape (2,) (H, W) of the original image.
    with_mesh: also return mesh_cam_orig.
  Returns (in the layers' dtype):
    joint_img (B, 21, 3): x, y heatmap voxels of the crop (pixels / 32), z the
      depth bin (0..8) of the wrist-relative depth over 0.3 m;
    joint_cam (B, 21, 3): metres, wrist-relative, flipped (x -> -x) and
      rotated like the image (Rz(-rot));
    joint_trunc (B, 21, 1): inside the 8x8x8 volume (no validity factor);
    pose (B, 48): every joint's axis-angle y, z negated when flipped (a left
      hand becomes the equivalent right hand), the root rotated by Rz(-rot) with
      its angle in [0, pi];
    shape (B, 10): zeroed if any |beta| > 3 (after the joints used them);
    mesh_cam_orig (B, 778, 3) when asked: camera frame, before augmentation.
  A zero record (no fit) gives non-finite joint_img; hand_train_batch zeroes it.
  """
  _check(batch, FIT_FIELDS + AUG_FIELDS)
  dtype = layers.right.dtype
  f = lambda key: jnp.asarray(batch[key], dtype)
  joints, mesh, pose = _camera_frame(layers, batch)
  b = joints.shape[0]

  focal, princpt = f('cam_focal'), f('cam_princpt')
  x = joints[..., 0] / joints[..., 2] * focal[:, None, 0] + princpt[:, None, 0]
  y = joints[..., 1] / joints[..., 2] * focal[:, None, 1] + princpt[:, None, 1]
  joint_cam = joints - joints[:, js.MANO_ROOT_IDX, None]
  z = joint_cam[..., 2]

  flip = (f('do_flip') > 0)[:, None]
  img_w = jnp.asarray(batch['img_shape'])[:, 1].astype(dtype)[:, None]
  joint_cam = jnp.where(flip[..., None], joint_cam * jnp.asarray([-1.0, 1.0, 1.0], dtype),
                        joint_cam)
  x = jnp.where(flip, img_w - 1 - x, x)

  t = f('img2bb_trans')
  x, y = (t[:, None, 0, 0] * x + t[:, None, 0, 1] * y + t[:, None, 0, 2],
          t[:, None, 1, 0] * x + t[:, None, 1, 1] * y + t[:, None, 1, 2])
  hm_d, hm_h, hm_w = spaces.HAND_HM_SHAPE
  x = x / spaces.HAND_INPUT_SHAPE[1] * hm_w
  y = y / spaces.HAND_INPUT_SHAPE[0] * hm_h
  z = (z / (spaces.HAND_3D_SIZE / 2) + 1) / 2.0 * hm_d
  joint_img = jnp.stack([x, y, z], axis=-1)
  joint_trunc = ((x >= 0) & (x < hm_w) & (y >= 0) & (y < hm_h) & (z >= 0) & (z < hm_d))
  joint_trunc = joint_trunc.astype(dtype)[..., None]

  aug_rot = rot_z(f('rot'))
  joint_cam = jnp.einsum('bij,bnj->bni', aug_rot, joint_cam, precision=_EXACT)
  pose = jnp.where(flip[..., None], pose * jnp.asarray([1.0, -1.0, -1.0], dtype), pose)
  root = principal_axis_angle(jnp.matmul(aug_rot, axis_angle_to_rotmat(pose[:, 0]),
                                         precision=_EXACT))
  pose = pose.at[:, 0].set(root)

  shape = f('mano_shape')
  shape = jnp.where(jnp.any(jnp.abs(shape) > 3, axis=1, keepdims=True), 0.0, shape)
  out = dict(joint_img=joint_img, joint_cam=joint_cam, joint_trunc=joint_trunc,
             pose=pose.reshape(b, -1), shape=shape)
  if with_mesh:
    out['mesh_cam_orig'] = mesh
  return out


def hand_train_batch(layers: ManoLayers, batch: Mapping[str, Any]):
  """A batch of hand examples -> (inputs, targets, meta_info) for hand_outputs.train_losses.

  upstream: the train tails of FreiHAND / InterHand26M / MSCOCO (parts='hand')
  `__getitem__`. With a fit: mano_joint_valid and mano_pose_valid 1,
  mano_shape_valid 1, mano_joint_trunc = the truncation alone (Q4). Without
  one (mano_valid 0: InterHand2.6M frames NeuralAnnot did not fit, and MSCOCO
  hands whose fit is null, which upstream crashes on, B3): every MANO target
  and mask 0, as upstream's InterHand2.6M dummies. The dataset's own joints
  come from the example (FreiHAND's are zeros with zero masks).
  inputs['img'] is clip(img * color_scale, 0, 255) / 255 (NHWC); masks float32.
  """
  _check(batch, TRAIN_FIELDS)
  dtype = layers.right.dtype
  f = lambda key: jnp.asarray(batch[key], dtype)
  t = mano_targets(layers, batch)
  has_fit = f('mano_valid') > 0
  fit = has_fit.astype(dtype)

  def fit_only(x):
    return jnp.where(has_fit.reshape((-1,) + (1,) * (x.ndim - 1)), x, 0.0)

  b = fit.shape[0]
  targets = {
      'joint_img': f('joint_img'),
      'mano_joint_img': fit_only(t['joint_img']),
      'joint_cam': f('joint_cam'),
      'mano_joint_cam': fit_only(t['joint_cam']),
      'mano_pose': fit_only(t['pose']),
      'mano_shape': fit_only(t['shape']),
  }
  meta_info = {
      'joint_valid': f('joint_valid'),
      'joint_trunc': f('joint_trunc'),
      'mano_joint_trunc': fit_only(t['joint_trunc']),
      'mano_joint_valid': jnp.broadcast_to(fit[:, None, None], (b, js.NUM_MANO_JOINTS, 1)),
      'mano_pose_valid': jnp.broadcast_to(fit[:, None], (b, 3 * js.NUM_MANO_ORIG_JOINTS)),
      'mano_shape_valid': fit,
      'is_3D': f('is_3D'),
  }
  img = jnp.asarray(batch['img'], jnp.float32)
  scale = jnp.asarray(batch['color_scale'], jnp.float32)[:, None, None, :]
  inputs = {'img': jnp.clip(img * scale, 0.0, 255.0) / 255.0}
  return inputs, targets, meta_info
