"""The hand-only Pose2Pose network of stage 2 in Flax linen (channels-last).

upstream: branch Pose2Pose, `main/model.py` `Model` and `common/nets/module.py`
`PositionNet` / `RotationNet` with `cfg.parts == 'hand'`. The paper trains this
model on FreiHAND, InterHand2.6M and MSCOCO hands, then copies its backbone into
the whole-body model (`h4w_jax.weights.stages.merge_hand`).

`HandOnly` maps a (B, 256, 256, 3) hand crop in [0, 1] (right hands; left hands
are mirrored by the data pipeline) to `HandNetOutput`: 21 joints by soft-argmax
on an 8x8x8 heatmap, the MANO root and finger poses from 6D, MANO shape and the
virtual camera. The MANO layer, the test-mode dict and the losses are plain
functions in `h4w_jax.models.hand_outputs`.

The heads are the whole-body model's pieces with the hand's sizes:
PositionNet is `hand4whole.PositionNet` (21 joints, 2048 -> 21 * 8 channels), the
rotation head samples `conv_bn_relu` features at each joint as the whole-body
RotationNets do. Module names follow upstream's keys (`rotation_net/conv_1` is
`module.rotation_net.conv.1`), so `h4w_jax.weights.keys` converts by rule.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from h4w_jax.common import joint_sets as js
from h4w_jax.common import spaces
from h4w_jax.models import geometry as geo
from h4w_jax.models.hand4whole import (PositionNet, conv_bn_relu, dense, sample_with_coords,
                                       upstream_head_init)
from h4w_jax.models.resnet import ResNetBackbone

sg = jax.lax.stop_gradient

# Pose2Pose's hand snapshot: these keys tell a hand-only state dict from a whole-body one.
SIGNATURE_KEYS = ('position_net.conv.0.weight', 'rotation_net.root_pose_out.0.weight',
                  'rotation_net.pose_out.0.weight')


@dataclasses.dataclass(frozen=True)
class HandModelConfig:
  """Static settings of the hand-only model; the defaults are upstream's.

  depth: the ResNet backbone (50 upstream; 10/18 for tests and the quickstart).
    Stage 3 takes this backbone into the whole-body model, so it must equal the
    whole-body model's hand_depth.
  torch_cross_quirk: reproduce upstream's `torch.cross` without `dim`, which
    makes the root pose wrong when exactly 3 crops are converted in one batch
    (SPEC_STAGE2 B7; see geometry.rot6d_to_rotmat). Off: the right cross.
  bn_group_size: samples per BatchNorm statistics group in training (see
    resnet.BatchNorm); None syncs over the global batch.
  dtype: what the backbone's convolutions compute in (None: the input's; bfloat16
    for mixed precision); the heads and everything after them compute in at least
    float32, the parameters stay float32.
  """
  depth: int = 50
  torch_cross_quirk: bool = False
  bn_group_size: Optional[int] = None
  dtype: Optional[Any] = None
  remat: str = 'none'   # 'blocks': recompute the backbone's blocks in the backward pass


class HandRotationNet(nn.Module):
  """upstream: module.py RotationNet (parts='hand'): 6D root and finger poses,
  MANO shape and the camera parameters, from features sampled at the joints."""
  bn_group_size: Optional[int] = None

  @nn.compact
  def __call__(self, img_feat, joint_coord, train: bool):
    pooled = img_feat.mean(axis=(1, 2))
    shape = dense(js.SHAPE_PARAM_DIM, 'shape_out_0')(pooled)
    cam_param = dense(3, 'cam_out_0')(pooled)
    joints = sample_with_coords(conv_bn_relu(img_feat, 512, 'conv', train, self.bn_group_size),
                                joint_coord)
    feat = joints.reshape(joints.shape[0], -1)   # index joint * 515 + channel, as upstream
    root_pose = dense(6, 'root_pose_out_0')(feat)
    pose = dense((js.NUM_MANO_ORIG_JOINTS - 1) * 6, 'pose_out_0')(feat)
    return root_pose, pose, shape, cam_param


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HandNetOutput:
  """The hand network's predictions before the MANO layer (B = batch).

  joint_img (B, 21, 3): x, y, z in heatmap voxels (0..7; x, y 32 px of the crop
  each, z a bin of the 0.3 m wrist-relative depth range), MANO joint order.
  root_pose (B, 3), hand_pose (B, 45): axis-angle, the fingers relative to the
  MANO mean hand (flat_hand_mean=False), MANO pose order. shape (B, 10).
  cam_trans (B, 3): metres, the MANO origin in the crop's virtual camera.
  """
  joint_img: jax.Array
  root_pose: jax.Array
  hand_pose: jax.Array
  shape: jax.Array
  cam_trans: jax.Array


class HandOnly(nn.Module):
  """upstream: Pose2Pose main/model.py Model.forward (parts='hand') up to MANO."""
  config: HandModelConfig = HandModelConfig()

  @nn.compact
  def __call__(self, img, train: bool = False) -> HandNetOutput:
    cfg = self.config
    rot6d = functools.partial(geo.rot6d_to_axis_angle, torch_cross_quirk=cfg.torch_cross_quirk)
    batch = img.shape[0]
    img_feat = ResNetBackbone(cfg.depth, cfg.bn_group_size, dtype=cfg.dtype,
                              remat=cfg.remat, name='backbone')(img, train)
    img_feat = img_feat.astype(jnp.promote_types(img_feat.dtype, jnp.float32))
    _, joint_img = PositionNet(js.NUM_MANO_JOINTS, spaces.HAND_HM_SHAPE,
                               name='position_net')(img_feat)
    root6, pose6, shape, cam_param = HandRotationNet(cfg.bn_group_size, name='rotation_net')(
        img_feat, sg(joint_img), train)
    return HandNetOutput(
        joint_img=joint_img, root_pose=rot6d(root6),
        hand_pose=rot6d(pose6.reshape(-1, 6)).reshape(batch, -1), shape=shape,
        cam_trans=geo.get_camera_trans(cam_param, spaces.HAND_CAMERA_K))


def init_variables(rng, config: HandModelConfig = HandModelConfig(), batch: int = 1
                   ) -> dict[str, Any]:
  """{'params', 'batch_stats'} of a freshly initialised model (flax's init)."""
  img = jnp.zeros((batch,) + spaces.HAND_INPUT_SHAPE + (3,), jnp.float32)
  return HandOnly(config).init(rng, img, train=False)


def variable_shapes(config: HandModelConfig = HandModelConfig()):
  """The variables' shapes and dtypes (no compute): what the converter fills."""
  return jax.eval_shape(functools.partial(init_variables, config=config), jax.random.key(0))


def upstream_init(rng, config: HandModelConfig = HandModelConfig()) -> dict[str, Any]:
  """upstream: get_model('train') before the ImageNet weights: `init_weights` on
  position_net and rotation_net (conv N(0, 0.001), linear N(0, 0.01), biases 0,
  BatchNorm 1/0), and the backbone's own init (convs N(0, 0.001), BatchNorm 1/0),
  which upstream then overwrites with torchvision's ImageNet ResNet (see
  `h4w_jax.weights.stages.initial_hand_variables`)."""
  return upstream_head_init(rng, variable_shapes(config))
