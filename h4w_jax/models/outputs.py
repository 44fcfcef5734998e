"""From the network's predictions to upstream's test-mode outputs and losses.

upstream: main/model.py `Model.get_coord` and the two tails of
`Model.forward` (mode == 'train' returns the loss dict, otherwise the output
dict). Plain functions over `NetOutput`, the SMPL-X layer (a `smplx_jax.SMPLX`
pytree: neutral, use_pca=False, use_face_contour=True, flat_hand_mean=False,
as upstream's `smpl_x.layer['neutral']`) and the targets.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

import smplx_jax
from h4w_jax.common import spaces
from h4w_jax.models import geometry as geo
from h4w_jax.common import joint_sets as js
from h4w_jax.models.hand4whole import NetOutput

sg = jax.lax.stop_gradient


def smplx_layer(human_model_path) -> smplx_jax.SMPLX:
  """Upstream's SMPL-X layer from a human_model_files folder."""
  return smplx_jax.create(human_model_path, 'smplx', gender='neutral', use_pca=False,
                          use_face_contour=True, flat_hand_mean=False)


def _part(x, name, parts=js.JOINT_PART):
  start, stop = parts[name]
  return x[:, start:stop]


def _rebase(joint_cam, part, root_idx):
  """Subtracts joint `root_idx` from the joints of `part` (in sequence, as upstream)."""
  start, stop = js.JOINT_PART[part]
  return joint_cam.at[:, start:stop].add(-joint_cam[:, root_idx, None])


def get_coord(out: NetOutput, layer: smplx_jax.SMPLX, all_joints: bool = False,
              detach_joints_for_projection: bool = False):
  """upstream: Model.get_coord.

  Returns joint_proj (B, J, 2) in body-heatmap units, joint_cam (B, J, 3)
  pelvis-relative with hands wrist-relative and face neck-relative (metres),
  mesh_cam (B, 10475, 3) = vertices + cam_trans. J = 137, or all 144 SMPL-X
  joints with `all_joints` (upstream's AGORA test mode; its re-rooting then
  uses the 137-set indices on the 144 joints, quirk Q10, reproduced).
  `detach_joints_for_projection` is upstream's AGORA-only training branch.
  """
  smplx_out = layer(betas=out.shape, body_pose=out.body_pose, global_orient=out.root_pose,
                    right_hand_pose=out.rhand_pose, left_hand_pose=out.lhand_pose,
                    jaw_pose=out.jaw_pose, expression=out.expr)
  joint_cam = smplx_out.joints if all_joints else smplx_out.joints[:, js.JOINT_IDX]
  joint_proj = geo.project_joints(sg(joint_cam) if detach_joints_for_projection else joint_cam,
                                  out.cam_trans)
  joint_cam = joint_cam - joint_cam[:, js.ROOT_IDX, None]
  joint_cam = _rebase(joint_cam, 'lhand', js.LWRIST_IDX)
  joint_cam = _rebase(joint_cam, 'rhand', js.RWRIST_IDX)
  joint_cam = _rebase(joint_cam, 'face', js.NECK_IDX)
  mesh_cam = smplx_out.vertices + out.cam_trans[:, None]
  return joint_proj, joint_cam, mesh_cam


def _px_to_hm(v, axis):
  """input_body pixels -> body-heatmap units along x (axis 0) or y (axis 1),
  in upstream's operation order (v / 192 * 6)."""
  return v / spaces.INPUT_BODY_SHAPE[1 - axis] * spaces.OUTPUT_HM_SHAPE[2 - axis]


def _to_hand_space(x, y, bbox):
  """Body-heatmap (x, y) -> that hand box's hand-heatmap units (upstream's in-place ops)."""
  _, hand_h, hand_w = spaces.OUTPUT_HAND_HM_SHAPE
  x = (x - _px_to_hm(bbox[:, None, 0], 0)) * (
      hand_w / _px_to_hm(bbox[:, None, 2] - bbox[:, None, 0], 0))
  y = (y - _px_to_hm(bbox[:, None, 1], 1)) * (
      hand_h / _px_to_hm(bbox[:, None, 3] - bbox[:, None, 1], 1))
  return x, y


def test_outputs(out: NetOutput, layer: smplx_jax.SMPLX, all_joints: bool = False
                 ) -> dict[str, jax.Array]:
  """upstream: the `mode != 'train'` tail of Model.forward, with its key names.

  joint_img (B, 65, 3) in body-heatmap units (hand z stays in hand units);
  boxes xyxy in the 512x384 input crop's pixels.
  """
  joint_proj, _, mesh_cam = get_coord(out, layer, all_joints=all_joints)
  joint_img = out.joint_img
  _, hand_h, hand_w = spaces.OUTPUT_HAND_HM_SHAPE
  for part, bbox in (('lhand', out.lhand_bbox), ('rhand', out.rhand_bbox)):
    start, stop = js.POS_JOINT_PART[part]
    x = joint_img[:, start:stop, 0] * (_px_to_hm(bbox[:, None, 2] - bbox[:, None, 0], 0) / hand_w)
    x = x + _px_to_hm(bbox[:, None, 0], 0)
    y = joint_img[:, start:stop, 1] * (_px_to_hm(bbox[:, None, 3] - bbox[:, None, 1], 1) / hand_h)
    y = y + _px_to_hm(bbox[:, None, 1], 1)
    joint_img = joint_img.at[:, start:stop, 0].set(x).at[:, start:stop, 1].set(y)
  img_h, img_w = spaces.INPUT_IMG_SHAPE
  body_h, body_w = spaces.INPUT_BODY_SHAPE
  to_img = jnp.asarray([img_w / body_w, img_h / body_h] * 2)
  return {
      'joint_img': joint_img,
      'smplx_joint_proj': joint_proj,
      'smplx_mesh_cam': mesh_cam,
      'smplx_root_pose': out.root_pose,
      'smplx_body_pose': out.body_pose,
      'smplx_lhand_pose': out.lhand_pose,
      'smplx_rhand_pose': out.rhand_pose,
      'smplx_jaw_pose': out.jaw_pose,
      'smplx_shape': out.shape,
      'smplx_expr': out.expr,
      'cam_trans': out.cam_trans,
      'lhand_bbox': out.lhand_bbox * to_img,
      'rhand_bbox': out.rhand_bbox * to_img,
      'face_bbox': out.face_bbox * to_img,
  }


def coord_loss(pred, target, valid, is_3d=None):
  """upstream: common/nets/loss.py CoordLoss: |pred - target| * valid, z also * is_3D."""
  loss = jnp.abs(pred - target) * valid
  if is_3d is not None:
    loss = jnp.concatenate([loss[..., :2], loss[..., 2:] * is_3d[:, None, None]], axis=-1)
  return loss


def param_loss(pred, target, valid):
  """upstream: common/nets/loss.py ParamLoss."""
  return jnp.abs(pred - target) * valid


def _translation_align(coord, target_xy, mask):
  """Shift each sample's joints by the mean target-minus-prediction offset over
  `mask` (zero when no joint is valid). Not detached, as upstream (Q18)."""
  mask = mask[..., None]
  count = jnp.sum(mask, axis=1, keepdims=True)
  offset = jnp.sum(mask * (target_xy - coord), axis=1, keepdims=True) / jnp.maximum(count, 1)
  return coord + jnp.where(count > 0, offset, 0.0)


def train_losses(out: NetOutput, layer: smplx_jax.SMPLX, targets: Mapping[str, jax.Array],
                 meta_info: Mapping[str, jax.Array], detach_joints_for_projection: bool = False
                 ) -> dict[str, jax.Array]:
  """upstream: the `mode == 'train'` tail of Model.forward: unreduced loss terms.

  The training step takes the mean of each term (masked entries included,
  quirk Q19) and sums them with weight 1, as upstream's train.py.
  """
  joint_proj, joint_cam, _ = get_coord(out, layer,
                                       detach_joints_for_projection=detach_joints_for_projection)
  pose = jnp.concatenate([out.root_pose, out.body_pose, out.lhand_pose, out.rhand_pose,
                          out.jaw_pose], axis=1)
  loss = {
      'smplx_pose': param_loss(pose, targets['smplx_pose'], meta_info['smplx_pose_valid']),
      'smplx_shape': param_loss(out.shape, targets['smplx_shape'],
                                meta_info['smplx_shape_valid'][:, None]),
      'smplx_expr': param_loss(out.expr, targets['smplx_expr'],
                               meta_info['smplx_expr_valid'][:, None]),
      'joint_cam': coord_loss(joint_cam, targets['joint_cam'],
                              meta_info['joint_valid'] * meta_info['is_3D'][:, None, None]),
      'smplx_joint_cam': coord_loss(joint_cam, targets['smplx_joint_cam'],
                                    meta_info['smplx_joint_valid']),
  }
  for part in ('lhand', 'rhand', 'face'):
    valid = meta_info[f'{part}_bbox_valid'][:, None]
    loss[f'{part}_bbox'] = (
        coord_loss(getattr(out, f'{part}_bbox_center'), targets[f'{part}_bbox_center'], valid)
        + coord_loss(getattr(out, f'{part}_bbox_size'), targets[f'{part}_bbox_size'], valid))

  # Hand targets into each predicted hand box's space (step 1 of SPEC §8).
  coords = {name: targets[name] for name in ('joint_img', 'smplx_joint_img')}
  truncs = {name: meta_info[name] for name in ('joint_trunc', 'smplx_joint_trunc')}
  _, hand_h, hand_w = spaces.OUTPUT_HAND_HM_SHAPE
  depth_scale = spaces.OUTPUT_HAND_HM_SHAPE[0] / spaces.OUTPUT_HM_SHAPE[0]
  for part, bbox in (('lhand', out.lhand_bbox), ('rhand', out.rhand_bbox)):
    start, stop = js.JOINT_PART[part]
    for coord_name, trunc_name in (('joint_img', 'joint_trunc'),
                                   ('smplx_joint_img', 'smplx_joint_trunc')):
      coord = coords[coord_name]
      x, y = _to_hand_space(coord[:, start:stop, 0], coord[:, start:stop, 1], bbox)
      z = coord[:, start:stop, 2] * depth_scale
      inside = (x >= 0) & (x < hand_w) & (y >= 0) & (y < hand_h)
      trunc = truncs[trunc_name]
      truncs[trunc_name] = trunc.at[:, start:stop, 0].multiply(inside.astype(trunc.dtype))
      coords[coord_name] = coord.at[:, start:stop].set(jnp.stack([x, y, z], axis=-1))

  # Predicted hand projections into hand space, aligned by translation (steps 2-3).
  for part, bbox in (('lhand', out.lhand_bbox), ('rhand', out.rhand_bbox)):
    start, stop = js.JOINT_PART[part]
    x, y = _to_hand_space(joint_proj[:, start:stop, 0], joint_proj[:, start:stop, 1], bbox)
    aligned = _translation_align(jnp.stack([x, y], axis=-1),
                                 coords['joint_img'][:, start:stop, :2],
                                 truncs['joint_trunc'][:, start:stop, 0] == 1)
    joint_proj = joint_proj.at[:, start:stop].set(aligned)
  start, stop = js.JOINT_PART['face']
  aligned = _translation_align(joint_proj[:, start:stop], coords['joint_img'][:, start:stop, :2],
                               truncs['joint_trunc'][:, start:stop, 0] == 1)
  joint_proj = joint_proj.at[:, start:stop].set(aligned)

  pos = js.NUM_POS_JOINTS
  loss['joint_proj'] = coord_loss(joint_proj, coords['joint_img'][..., :2], truncs['joint_trunc'])
  loss['joint_img'] = coord_loss(out.joint_img, coords['joint_img'][:, :pos],
                                 truncs['joint_trunc'][:, :pos], meta_info['is_3D'])
  loss['smplx_joint_img'] = coord_loss(out.joint_img, coords['smplx_joint_img'][:, :pos],
                                       truncs['smplx_joint_trunc'][:, :pos])
  return loss


def total_loss(losses: Mapping[str, jax.Array]) -> jax.Array:
  """upstream train.py: sum of the mean of every term."""
  return sum(jnp.mean(v) for v in losses.values())
