"""From the hand network's predictions to upstream's test-mode outputs and losses.

upstream: Pose2Pose `main/model.py` `Model.get_coord` and the two tails of
`Model.forward` with `cfg.parts == 'hand'`, and the MANO settings of
`common/utils/human_models.py` `MANO`. Plain functions over `HandNetOutput`
and a `HandModel`: the right MANO layer (use_pca=False, flat_hand_mean=False,
as upstream's `mano.layer['right']`) with upstream's 21-joint regressor.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp

import smplx_jax
from h4w_jax.common import joint_sets as js
from h4w_jax.common import mano as mano_lib
from h4w_jax.common import spaces
from h4w_jax.models import geometry as geo
from h4w_jax.models.hand_only import HandNetOutput
from h4w_jax.models.outputs import coord_loss, param_loss

_EXACT = 'highest'


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HandModel:
  """The right MANO layer the network's poses drive, and the 21-joint regressor."""
  layer: smplx_jax.MANO
  regressor: jax.Array   # (21, 778)

  @property
  def faces(self):
    return self.layer.faces


def hand_model(human_model_path) -> HandModel:
  """upstream's `Model.mano_layer` (a copy of mano.layer['right']) and regressor."""
  layer = mano_lib.mano_layer(human_model_path, True)
  return HandModel(layer=layer, regressor=jnp.asarray(mano_lib.joint_regressor(layer), layer.dtype))


def regress_joints(regressor, mesh):
  """(21, 778) @ (B, 778, 3) -> (B, 21, 3), as upstream's torch.bmm."""
  return jnp.einsum('jv,bvc->bjc', regressor.astype(mesh.dtype), mesh, precision=_EXACT)


def get_coord(out: HandNetOutput, model: HandModel):
  """upstream: Model.get_coord (parts='hand').

  Returns joint_proj (B, 21, 2) in heatmap units of the crop, joint_cam
  (B, 21, 3) wrist-relative (metres), mesh_cam (B, 778, 3) = vertices + cam_trans.
  """
  mano = model.layer(betas=out.shape, global_orient=out.root_pose, hand_pose=out.hand_pose)
  joint_cam = regress_joints(model.regressor, mano.vertices)
  joint_proj = geo.project_joints(joint_cam, out.cam_trans, spaces.HAND_FOCAL,
                                  spaces.HAND_PRINCPT, spaces.HAND_INPUT_SHAPE,
                                  spaces.HAND_HM_SHAPE)
  joint_cam = joint_cam - joint_cam[:, js.MANO_ROOT_IDX, None]
  mesh_cam = mano.vertices + out.cam_trans[:, None]
  return joint_proj, joint_cam, mesh_cam


def mano_pose(out: HandNetOutput):
  """(B, 48): root then the 15 finger joints, MANO pose order."""
  return jnp.concatenate([out.root_pose, out.hand_pose], axis=1)


def test_outputs(out: HandNetOutput, model: HandModel) -> dict[str, jax.Array]:
  """upstream: the `mode != 'train'` tail of Model.forward (parts='hand'), its keys.

  mano_mesh_cam (B, 778, 3) metres in the crop's virtual camera (focal 5000 px,
  principal point (128, 128) of the 256x256 crop); joint_img (B, 21, 3)
  heatmap voxels; mano_pose (B, 48) radians; mano_shape (B, 10); cam_trans (B, 3).
  Left hands were mirrored into right ones by the data pipeline: mirror x of
  the mesh (and negate the y, z of every pose joint) to get them back.
  """
  _, _, mesh_cam = get_coord(out, model)
  return {'cam_trans': out.cam_trans, 'joint_img': out.joint_img, 'mano_mesh_cam': mesh_cam,
          'mano_pose': mano_pose(out), 'mano_shape': out.shape}


def train_losses(out: HandNetOutput, model: HandModel, targets: Mapping[str, jax.Array],
                 meta_info: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """upstream: the `mode == 'train'` tail of Model.forward (parts='hand'):
  the seven unreduced loss terms (SPEC_STAGE2 §2.2). The step takes the mean
  of each (masked entries included) and sums them with weight 1."""
  joint_proj, joint_cam, _ = get_coord(out, model)
  is_3d = meta_info['is_3D']
  return {
      'joint_img': coord_loss(out.joint_img, targets['joint_img'], meta_info['joint_trunc'],
                              is_3d),
      'mano_joint_img': coord_loss(out.joint_img, targets['mano_joint_img'],
                                   meta_info['mano_joint_trunc']),
      'mano_pose': param_loss(mano_pose(out), targets['mano_pose'], meta_info['mano_pose_valid']),
      'mano_shape': param_loss(out.shape, targets['mano_shape'],
                               meta_info['mano_shape_valid'][:, None]),
      'joint_proj': coord_loss(joint_proj, targets['joint_img'][..., :2],
                               meta_info['joint_trunc']),
      'joint_cam': coord_loss(joint_cam, targets['joint_cam'],
                              meta_info['joint_valid'] * is_3d[:, None, None]),
      'mano_joint_cam': coord_loss(joint_cam, targets['mano_joint_cam'],
                                   meta_info['mano_joint_valid']),
  }
