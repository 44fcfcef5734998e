"""The Hand4Whole network in Flax linen (channels-last), identical in math to
upstream's `main/model.py` `Model` and `common/nets/module.py`.

`Hand4Whole` maps a (B, 512, 384, 3) crop in [0, 1] to the network's raw
predictions (`NetOutput`); the SMPL-X layer, the camera, the test-mode output
dict and the training losses are plain functions in `h4w_jax.outputs`.
Submodule and layer names follow upstream's state-dict keys with Sequential
indices joined by '_' (`body_rotation_net/body_conv_1` is
`module.body_rotation_net.body_conv.1`), so the converter maps keys by rule.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from h4w_jax.common import joint_sets as js
from h4w_jax.common import spaces
from h4w_jax.common.sharding import constrain_batch
from h4w_jax.models import geometry as geo
from h4w_jax.models.resnet import BatchNorm, ResNetBackbone, conv
from h4w_jax.models.roi_align import roi_align

sg = jax.lax.stop_gradient


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Static model settings; the defaults are upstream's main branch.

  roi_max_sampling_grid: the bound on torchvision roi_align's per-box sample
    grid (exact for hand boxes up to bound*256 px and face boxes up to
    bound*192 px in the 512x384 crop; larger boxes use bound samples per bin).
  torch_cross_quirk: reproduce upstream's `torch.cross` without `dim`, which
    crosses along the batch axis when exactly 3 rotations are converted (Q3).
  fix_lhand_flip: un-flip the left hand's x as the exact mirror (8 - x)
    instead of upstream's 7 - x (Q1; upstream's own comment calls 7 - x a
    pixel misalignment). Changes outputs: off for weight parity.
  bn_group_size: samples per BatchNorm statistics group in training (see
    resnet.BatchNorm): None syncs statistics over the global batch; the
    per-device batch reproduces upstream's per-GPU statistics.
  dtype: what the convolutions and matmuls of the backbones and heads compute
    in ('bfloat16' for mixed precision; None: the inputs' type, so float64
    under jax_enable_x64 stays float64). Parameters, BatchNorm statistics, the
    crops, the geometric heads (soft-argmax, box restoration, 6D rotations,
    camera) and every output stay float32.
  remat: 'blocks' recomputes the ResNet blocks' activations in the backward
    pass (resnet.ResNetBackbone); 'none' keeps them.
  """
  body_depth: int = 50
  hand_depth: int = 50
  face_depth: int = 18
  roi_max_sampling_grid: int = 4
  torch_cross_quirk: bool = False
  fix_lhand_flip: bool = False
  bn_group_size: Optional[int] = None
  dtype: Optional[str] = None
  remat: str = 'none'


def wide(x):
  """At least float32: bf16 results go back to f32 (the geometric heads' precision); float64
  (jax_enable_x64) stays float64."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def dense(features: int, name: str, dtype=None):
  """nn.Dense with input and output pinned to the batch axes (common.sharding): with an
  fsdp-sharded kernel XLA would otherwise split the features and gather activations."""
  layer = nn.Dense(features, name=name, dtype=dtype)
  return lambda x: constrain_batch(layer(constrain_batch(x)))


def conv_bn_relu(x, features: int, name: str, train: bool, bn_group_size=None, bn_views=1,
                 dtype=None):
  """make_conv_layers([c, features], kernel=1): Conv(bias) -> BN -> ReLU."""
  x = constrain_batch(conv(features, 1, use_bias=True, name=f'{name}_0', dtype=dtype)(x))
  return nn.relu(BatchNorm(use_running_average=not train, group_size=bn_group_size,
                           views=bn_views, name=f'{name}_1')(x))


class PositionNet(nn.Module):
  """upstream: module.py PositionNet. Returns (softmaxed heatmap (N, J, D, H, W),
  soft-argmax coordinates (N, J, 3) as (x, y, z) voxel indices)."""
  joint_num: int
  hm_shape: tuple[int, int, int]
  dtype: Any = None

  @nn.compact
  def __call__(self, feat):
    depth, height, width = self.hm_shape
    hm = conv(self.joint_num * depth, 1, use_bias=True, name='conv_0', dtype=self.dtype)(feat)
    hm = wide(hm)   # the softmax and soft-argmax in float32
    # torch channel c = j * D + d; NHWC -> (N, J, D, H, W).
    hm = hm.reshape(hm.shape[0], height, width, self.joint_num, depth).transpose(0, 3, 4, 1, 2)
    prob = geo.softmax_volume(hm)
    return prob, geo.volume_expectation(prob)


def sample_with_coords(feat, coords):
  """Features at (x, y) of each joint with its (x, y, z) appended: (N, J, C+3)."""
  return constrain_batch(
      jnp.concatenate([geo.sample_joint_features(feat, coords[..., :2]), coords], axis=-1))


class BodyRotationNet(nn.Module):
  """upstream: module.py RotationNet('body'): 6D root and body poses, shape, camera."""
  bn_group_size: Optional[int] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, img_feat, joint_coord, lhand_feat, lhand_coord, rhand_feat, rhand_coord,
               train: bool):
    fc = functools.partial(dense, dtype=self.dtype)
    cbr = functools.partial(conv_bn_relu, train=train, bn_group_size=self.bn_group_size,
                            dtype=self.dtype)
    pooled = img_feat.mean(axis=(1, 2))
    shape = fc(js.SHAPE_PARAM_DIM, 'shape_out_0')(pooled)
    cam_param = fc(3, 'cam_out_0')(pooled)
    parts = [sample_with_coords(cbr(img_feat, 512, 'body_conv'), joint_coord),
             sample_with_coords(cbr(lhand_feat, 512, 'lhand_conv'), lhand_coord),
             sample_with_coords(cbr(rhand_feat, 512, 'rhand_conv'), rhand_coord)]
    feat = jnp.concatenate(parts, axis=1)
    feat = feat.reshape(feat.shape[0], -1)  # index joint * 515 + channel, as upstream
    root_pose = fc(6, 'root_pose_out_0')(feat)
    body_pose = fc(js.NUM_BODY_POSE_JOINTS * 6, 'body_pose_out_0')(feat)
    return tuple(wide(x) for x in (root_pose, body_pose, shape, cam_param))


class HandRotationNet(nn.Module):
  """upstream: module.py RotationNet('hand'): 6D poses of the 15 hand joints."""
  bn_group_size: Optional[int] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, feat, coords, train: bool):
    # feat is [left 0, right 0, left 1, ...]: two views per sample.
    joints = sample_with_coords(
        conv_bn_relu(feat, 512, 'hand_conv', train, self.bn_group_size, bn_views=2,
                     dtype=self.dtype), coords)
    pose6 = dense(js.NUM_HAND_POSE_JOINTS * 6, 'hand_pose_out_0', self.dtype)(
        joints.reshape(joints.shape[0], -1))
    return wide(pose6)


class FaceRegressor(nn.Module):
  """upstream: module.py FaceRegressor: expression and 6D jaw pose from pooled features."""
  dtype: Any = None

  @nn.compact
  def __call__(self, feat):
    pooled = feat.mean(axis=(1, 2))
    expr = dense(js.EXPR_CODE_DIM, 'expr_out_0', self.dtype)(pooled)
    jaw6 = dense(6, 'jaw_pose_out_0', self.dtype)(pooled)
    return wide(expr), wide(jaw6)


class BoxNet(nn.Module):
  """upstream: module.py BoxNet. Centres and sizes (B, 2) of the left hand, right
  hand and face boxes, in body-heatmap units."""
  bn_group_size: Optional[int] = None
  dtype: Any = None

  @nn.compact
  def __call__(self, img_feat, joint_hm, train: bool):
    depth, height, width = spaces.OUTPUT_HM_SHAPE
    batch, joints = joint_hm.shape[:2]
    # (B, J, D, H, W) -> NHWC with channel j * D + d, after the image feature.
    hm = joint_hm.reshape(batch, joints * depth, height, width).transpose(0, 2, 3, 1)
    x = constrain_batch(jnp.concatenate([img_feat, hm.astype(img_feat.dtype)], axis=-1))
    for i in range(3):  # make_deconv_layers: ConvT(k4, s2, p1, no bias) -> BN -> ReLU
      x = constrain_batch(nn.ConvTranspose(
          256, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), transpose_kernel=True,
          use_bias=False, name=f'deconv_{3 * i}', dtype=self.dtype)(x))
      x = nn.relu(BatchNorm(use_running_average=not train, group_size=self.bn_group_size,
                            name=f'deconv_{3 * i + 1}')(x))
      x = constrain_batch(x)
    center_hm = conv(3, 1, use_bias=True, name='bbox_center_0', dtype=self.dtype)(x)
    center_hm = wide(center_hm).transpose(0, 3, 1, 2)
    centers = geo.soft_argmax_2d(center_hm)  # (B, 3, 2): lhand, rhand, face; 64x48 units
    sizes = []
    for k, part in enumerate(('lhand', 'rhand', 'face')):
      feat = constrain_batch(geo.sample_joint_features(x, sg(centers[:, k:k + 1]))[:, 0])
      hidden = nn.relu(dense(256, f'{part}_size_0', self.dtype)(feat))
      sizes.append(wide(dense(2, f'{part}_size_2', self.dtype)(hidden)))
    centers = centers / 8
    return centers[:, 0], sizes[0], centers[:, 1], sizes[1], centers[:, 2], sizes[2]


def body_to_img_boxes(boxes):
  """xyxy in input_body pixels -> input_img pixels (upstream's HandRoI/FaceRoI)."""
  body_h, body_w = spaces.INPUT_BODY_SHAPE
  img_h, img_w = spaces.INPUT_IMG_SHAPE
  scale = jnp.asarray([img_w, img_h, img_w, img_h], boxes.dtype)
  return boxes / jnp.asarray([body_w, body_h, body_w, body_h], boxes.dtype) * scale


class HandRoI(nn.Module):
  """upstream: module.py HandRoI: crop both hands, flip the left one, run the
  hand backbone on the crops sample-major, [flipped left 0, right 0, flipped
  left 1, ...]: (2B, 8, 8, 2048). Upstream stacks [lefts; rights]; the order
  changes no number (BatchNorm groups hold both hands of their samples either
  way) and keeps each device's crops on that device."""
  depth: int
  max_sampling_grid: int
  bn_group_size: Optional[int] = None
  dtype: Any = None
  remat: str = 'none'

  @nn.compact
  def __call__(self, img, lhand_bbox, rhand_bbox, train: bool):
    boxes = body_to_img_boxes(jnp.stack([lhand_bbox, rhand_bbox], axis=1))     # (B, 2, 4)
    crops = roi_align(img, boxes, spaces.INPUT_HAND_SHAPE, self.max_sampling_grid)
    crops = jnp.concatenate([crops[:, :1, :, ::-1], crops[:, 1:]], axis=1)
    crops = crops.reshape((-1,) + crops.shape[2:])
    return ResNetBackbone(self.depth, self.bn_group_size, bn_views=2, dtype=self.dtype,
                          remat=self.remat, name='backbone')(crops, train)


class FaceRoI(nn.Module):
  """upstream: module.py FaceRoI: crop the face, run the face backbone."""
  depth: int
  max_sampling_grid: int
  bn_group_size: Optional[int] = None
  dtype: Any = None
  remat: str = 'none'

  @nn.compact
  def __call__(self, img, face_bbox, train: bool):
    crops = roi_align(img, body_to_img_boxes(face_bbox)[:, None], spaces.INPUT_FACE_SHAPE,
                      self.max_sampling_grid)[:, 0]
    return ResNetBackbone(self.depth, self.bn_group_size, dtype=self.dtype, remat=self.remat,
                          name='backbone')(crops, train)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NetOutput:
  """The network's predictions before the SMPL-X layer (B = batch).

  Poses are axis-angle: root (B, 3), body (B, 63), hands (B, 45) relative to
  the SMPL-X mean hand, jaw (B, 3). joint_img (B, 65, 3): body joints in
  body-heatmap units, hand joints in hand-heatmap units. Boxes (B, 4) xyxy in
  input_body pixels (256x192); centres/sizes (B, 2) in body-heatmap units.
  """
  joint_img: jax.Array
  root_pose: jax.Array
  body_pose: jax.Array
  lhand_pose: jax.Array
  rhand_pose: jax.Array
  jaw_pose: jax.Array
  shape: jax.Array
  expr: jax.Array
  cam_trans: jax.Array
  lhand_bbox: jax.Array
  rhand_bbox: jax.Array
  face_bbox: jax.Array
  lhand_bbox_center: jax.Array
  lhand_bbox_size: jax.Array
  rhand_bbox_center: jax.Array
  rhand_bbox_size: jax.Array
  face_bbox_center: jax.Array
  face_bbox_size: jax.Array


class Hand4Whole(nn.Module):
  """upstream: main/model.py Model.forward up to the SMPL-X layer."""
  config: ModelConfig = ModelConfig()

  @nn.compact
  def __call__(self, img, train: bool = False) -> NetOutput:
    cfg = self.config
    rot6d = functools.partial(geo.rot6d_to_axis_angle, torch_cross_quirk=cfg.torch_cross_quirk)
    batch = img.shape[0]
    dtype = None if cfg.dtype is None else jnp.dtype(cfg.dtype)
    body_img = img[:, ::2, ::2]  # F.interpolate(nearest) to 256x192 picks the even pixels
    groups = cfg.bn_group_size
    img_feat = ResNetBackbone(cfg.body_depth, groups, dtype=dtype, remat=cfg.remat,
                              name='backbone')(body_img, train)

    body_hm, body_joint_img = PositionNet(
        js.POS_JOINT_PART['body'][1], spaces.OUTPUT_HM_SHAPE, dtype,
        name='body_position_net')(img_feat)
    (lhand_center, lhand_size, rhand_center, rhand_size, face_center,
     face_size) = BoxNet(groups, dtype, name='box_net')(img_feat, sg(body_hm), train)
    lhand_bbox = sg(geo.restore_bbox(lhand_center, lhand_size, 1.0, 2.0))
    rhand_bbox = sg(geo.restore_bbox(rhand_center, rhand_size, 1.0, 2.0))
    face_bbox = sg(geo.restore_bbox(face_center, face_size, 1.0, 1.5))

    hand_feat = HandRoI(cfg.hand_depth, cfg.roi_max_sampling_grid, groups, dtype, cfg.remat,
                        name='hand_roi_net')(img, lhand_bbox, rhand_bbox, train)
    face_feat = FaceRoI(cfg.face_depth, cfg.roi_max_sampling_grid, groups, dtype, cfg.remat,
                        name='face_roi_net')(img, face_bbox, train)

    hand_joints = js.POS_JOINT_PART['rhand'][1] - js.POS_JOINT_PART['rhand'][0]
    _, hand_joint_img = PositionNet(hand_joints, spaces.OUTPUT_HAND_HM_SHAPE, dtype,
                                    name='hand_position_net')(hand_feat)
    hand_pose6 = HandRotationNet(groups, dtype, name='hand_rotation_net')(
        hand_feat, sg(hand_joint_img), train)
    hand_pose = rot6d(hand_pose6.reshape(-1, 6)).reshape(batch, 2, -1)
    hand_joint_img = hand_joint_img.reshape((batch, 2) + hand_joint_img.shape[1:])
    hand_feat = hand_feat.reshape((batch, 2) + hand_feat.shape[1:])

    # Undo the left hand's flip: coordinates, rotations and features.
    hand_width = spaces.OUTPUT_HAND_HM_SHAPE[2]
    mirror = hand_width if cfg.fix_lhand_flip else hand_width - 1
    lhand_joint_img = hand_joint_img[:, 0]
    lhand_joint_img = jnp.concatenate(
        [mirror - lhand_joint_img[..., :1], lhand_joint_img[..., 1:]], axis=-1)
    rhand_joint_img = hand_joint_img[:, 1]
    lhand_pose = hand_pose[:, 0].reshape(batch, -1, 3) * jnp.asarray([1.0, -1.0, -1.0])
    lhand_pose = lhand_pose.reshape(batch, -1)
    rhand_pose = hand_pose[:, 1]
    lhand_feat = hand_feat[:, 0, :, ::-1]
    rhand_feat = hand_feat[:, 1]

    mcp = jnp.asarray(js.MCP_IDX)
    root6, body6, shape, cam_param = BodyRotationNet(groups, dtype, name='body_rotation_net')(
        img_feat, sg(body_joint_img), lhand_feat, sg(lhand_joint_img[:, mcp]),
        rhand_feat, sg(rhand_joint_img[:, mcp]), train)
    root_pose = rot6d(root6)
    body_pose = rot6d(body6.reshape(-1, 6)).reshape(batch, -1)
    expr, jaw6 = FaceRegressor(dtype, name='face_regressor')(face_feat)

    return NetOutput(
        joint_img=jnp.concatenate([body_joint_img, lhand_joint_img, rhand_joint_img], axis=1),
        root_pose=root_pose, body_pose=body_pose, lhand_pose=lhand_pose,
        rhand_pose=rhand_pose, jaw_pose=rot6d(jaw6), shape=shape, expr=expr,
        cam_trans=geo.get_camera_trans(cam_param), lhand_bbox=lhand_bbox,
        rhand_bbox=rhand_bbox, face_bbox=face_bbox, lhand_bbox_center=lhand_center,
        lhand_bbox_size=lhand_size, rhand_bbox_center=rhand_center,
        rhand_bbox_size=rhand_size, face_bbox_center=face_center, face_bbox_size=face_size)


def init_variables(rng, config: ModelConfig = ModelConfig(), batch: int = 1) -> dict[str, Any]:
  """{'params', 'batch_stats'} of a freshly initialised model."""
  img = jnp.zeros((batch,) + spaces.INPUT_IMG_SHAPE + (3,), jnp.float32)
  return Hand4Whole(config).init(rng, img, train=False)


def variable_shapes(config: ModelConfig = ModelConfig()):
  """The variables' shapes and dtypes (no compute): what the converter fills."""
  return jax.eval_shape(functools.partial(init_variables, config=config), jax.random.key(0))


def upstream_head_init(rng, shapes) -> dict[str, Any]:
  """upstream: main/model.py `init_weights`, the train-mode init of the heads.

  Conv and ConvTranspose kernels ~ N(0, 0.001), Linear kernels ~ N(0, 0.01),
  biases 0, BatchNorm scale 1 and bias 0 (running mean 0, var 1, torch's
  fresh statistics). `shapes` is any {'params', 'batch_stats'} (sub)tree of
  shapes; the backbones instead start from ImageNet weights (see
  `h4w_jax.convert.import_torchvision_resnet`).
  """
  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      std = 0.001 if len(leaf.shape) == 4 else 0.01
      # crc32, not hash(): str hashes are salted per process, the init must not be.
      key = jax.random.fold_in(rng, zlib.crc32(jax.tree_util.keystr(path).encode()) % (2 ** 31))
      return std * jax.random.normal(key, leaf.shape, leaf.dtype)
    fill = 1.0 if name in ('scale', 'var') else 0.0
    return jnp.full(leaf.shape, fill, leaf.dtype)
  return jax.tree_util.tree_map_with_path(draw, shapes)
