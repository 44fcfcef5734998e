"""SMPL-X training targets, computed batched on the device inside the step.

upstream: common/utils/preprocessing.py `process_human_model_output` (main
branch), which runs the SMPL-X layer on the CPU for one sample at a time in
every loader worker (SPEC_DATA §2.4, hot spots §9.1-2), plus the per-dataset
tails of `__getitem__` that turn its outputs into masks (§4.1-4.3, §4.7, §5).
Here the workers ship the raw fit, the camera and the augmentation (rot,
do_flip, img2bb_trans, img_shape; `h4w_datasets.example`), and
`smplx_targets` reproduces upstream's numbers for a whole batch at once:
flips are gathers under `where(flip, x[perm], x)`, the rotations act as
matrices, and the root pose goes back to axis-angle with the principal angle
in [0, pi], as upstream's cv2.Rodrigues round trip (an angle above pi comes
back as 2 pi - theta about the flipped axis).

The body model is either an `smplx_jax.SMPLX` layer (upstream's neutral one,
`h4w_jax.outputs.smplx_layer`), the same layer cut down to its joints
(`SMPLXJoints`, built once by `smplx_joints`: same joints, a fraction of the
skinning), or a (neutral, male, female) tuple of either, picked per sample by
`smplx_gender`. Upstream always uses the neutral layer (no main-branch dataset
passes a gender); the tuple is the documented fix for AGORA's gendered fits
(SPEC_DATA Q17).

Extrinsics: a record has cam_R = I and cam_t = 0 when its fit is already in
the camera frame, and then nothing is applied, as upstream without 'R'. Any
other R is applied with t, as upstream with both. Upstream's R-without-t call
(the root rotated, `trans` left unrotated) has no record form; no dataset
makes it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

import smplx_jax
from smplx_jax import lbs as lbs_lib
from h4w_jax.common import spaces
from h4w_jax.models import geometry as geo
from h4w_jax.common import joint_sets as js

Array = jax.Array

# upstream: main/config.py. Depth ranges (metres) discretised into the
# OUTPUT_HM_SHAPE[0] depth bins: body joints relative to the pelvis, hand
# joints to their wrist and face joints to the neck.
BODY_3D_SIZE = 2.0
HAND_3D_SIZE = spaces.HAND_3D_SIZE
FACE_3D_SIZE = 0.3

# int32 gather tables (int64 ones trip jit caches shared between x32 and x64)
_FLIP_PERM = js.FLIP_PERM.astype(np.int32)
_ORIG_FLIP_PERM = js.ORIG_FLIP_PERM.astype(np.int32)


def _depth_half_size() -> np.ndarray:
  """(137,) S / 2 of each joint's part, float64 (cast to the compute dtype)."""
  half = np.empty(js.NUM_JOINTS)
  for part, size in (('body', BODY_3D_SIZE), ('lhand', HAND_3D_SIZE),
                     ('rhand', HAND_3D_SIZE), ('face', FACE_3D_SIZE)):
    start, stop = js.JOINT_PART[part]
    half[start:stop] = size / 2
  return half


# ---------------------------------------------------------------------------
# SMPL-X restricted to its joints (SPEC_DATA §9.1)


def _static(**kwargs):
  return dataclasses.field(metadata=dict(static=True), **kwargs)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SMPLXJoints:
  """An SMPL-X layer (use_pca=False) cut down to its output joints.

  The training targets need only the joints: the 55 skeleton joints, the 21
  keypoint vertices and the 51 + 17 landmarks, which are barycentric points
  of a few triangles. This keeps the rest joints as J_regressor products and
  skins only the vertices those read (the keypoint vertices and the corners of
  every static and candidate contour triangle: ~580 of 10475 on the synthetic
  model). Each quantity is computed with smplx_jax's own lbs functions in the
  same operation order, so the joints equal the full forward's to float
  rounding (tests/test_targets.py compares the two).

  Built by `smplx_joints(layer)`; called like the layer with flat (B, width)
  inputs, it returns joints (B, 144, 3) (127 without the face contour) in
  metres, transl included.
  """
  rest_joints: Array     # (55, 3) J_regressor @ v_template
  joint_dirs: Array      # (55, 3, K) J_regressor @ [shapedirs | expr_dirs], K = betas + expr
  v_template: Array      # (S, 3) the kept vertices
  dirs: Array            # (S, 3, K)
  posedirs: Array        # (486, S * 3)
  lbs_weights: Array     # (S, 55)
  pose_mean: Array       # (165,)
  faces: Array           # (F, 3) landmark triangles, kept-vertex indices
  keypoint_idx: Array    # (21,) kept-vertex index of each keypoint vertex
  lmk_faces_idx: Array   # (51,) into faces
  lmk_bary_coords: Array  # (51, 3)
  dynamic_lmk_faces_idx: Optional[Array]    # (79, 17) into faces, or None
  dynamic_lmk_bary_coords: Optional[Array]  # (79, 17, 3)
  num_betas: int = _static()
  parents: tuple[int, ...] = _static()
  neck_kin_chain: tuple[int, ...] = _static()
  precision: str = _static(default='highest')

  def __call__(self, betas, global_orient, body_pose, left_hand_pose, right_hand_pose,
               jaw_pose, expression, transl) -> Array:
    batch = betas.shape[0]
    eyes = jnp.zeros((batch, 6), betas.dtype)
    full_pose = jnp.concatenate([global_orient, body_pose, jaw_pose, eyes, left_hand_pose,
                                 right_hand_pose], axis=1) + self.pose_mean
    coeffs = jnp.concatenate([betas, expression], axis=1)
    rot_mats = lbs_lib.batch_rodrigues(full_pose.reshape(batch, -1, 3))
    p = self.precision
    # as lbs_lib.lbs: shape, pose correctives, chain, then the 3x4 skinning
    v_shaped = self.v_template + lbs_lib.blend_shapes(coeffs, self.dirs, p)
    rest_joints = self.rest_joints + lbs_lib.blend_shapes(coeffs, self.joint_dirs, p)
    ident = jnp.eye(3, dtype=rot_mats.dtype)
    pose_feature = (rot_mats[:, 1:] - ident).reshape(batch, -1)
    v_posed = v_shaped + jnp.matmul(pose_feature, self.posedirs, precision=p).reshape(
        batch, -1, 3)
    posed_joints, rel_rot, rel_t = lbs_lib.batch_rigid_transform(
        rot_mats, rest_joints, self.parents, p)
    rel = jnp.concatenate([rel_rot.reshape(batch, -1, 9), rel_t], axis=-1)
    per_vertex = jnp.einsum('bjc,vj->bcv', rel, self.lbs_weights, precision=p)
    x, y, z = v_posed[..., 0], v_posed[..., 1], v_posed[..., 2]
    vertices = jnp.stack(
        [per_vertex[:, 3 * i] * x + per_vertex[:, 3 * i + 1] * y
         + per_vertex[:, 3 * i + 2] * z + per_vertex[:, 9 + i] for i in range(3)], axis=-1)
    # as SMPLX._landmarks
    faces_idx = jnp.broadcast_to(self.lmk_faces_idx, (batch,) + self.lmk_faces_idx.shape)
    bary = jnp.broadcast_to(self.lmk_bary_coords, (batch,) + self.lmk_bary_coords.shape)
    if self.dynamic_lmk_faces_idx is not None:
      dyn_faces, dyn_bary = lbs_lib.find_dynamic_lmk_idx_and_bcoords(
          rot_mats, self.dynamic_lmk_faces_idx, self.dynamic_lmk_bary_coords,
          self.neck_kin_chain, p)
      faces_idx = jnp.concatenate([faces_idx, dyn_faces], axis=1)
      bary = jnp.concatenate([bary, dyn_bary], axis=1)
    landmarks = lbs_lib.vertices2landmarks(vertices, self.faces, faces_idx, bary, p)
    joints = jnp.concatenate([posed_joints, vertices[:, self.keypoint_idx], landmarks], axis=1)
    return joints + transl[:, None]


def smplx_joints(layer: smplx_jax.SMPLX) -> SMPLXJoints:
  """Cuts an SMPL-X layer down to its joints (call outside jit: it reads the
  layer's triangle tables to choose the vertices)."""
  if not isinstance(layer, smplx_jax.SMPLX) or layer.use_pca:
    raise ValueError('smplx_joints needs an smplx_jax.SMPLX layer with use_pca=False '
                     '(upstream: axis-angle hand poses)')
  p = layer.precision
  faces = np.asarray(layer.faces)
  static = np.asarray(layer.lmk_faces_idx)
  contour = layer.use_face_contour and layer.dynamic_lmk_faces_idx is not None
  dynamic = np.asarray(layer.dynamic_lmk_faces_idx) if contour else np.zeros((0,), np.int32)
  face_ids = np.unique(np.concatenate([static.ravel(), dynamic.ravel()]))
  keypoints = np.asarray(layer.extra_joint_vertex_ids)
  kept = np.unique(np.concatenate([keypoints, faces[face_ids].ravel()]))
  dirs = jnp.concatenate([layer.shapedirs, layer.expr_dirs], axis=-1)
  columns = (3 * kept[:, None] + np.arange(3)).ravel()
  return SMPLXJoints(
      rest_joints=jnp.matmul(layer.J_regressor, layer.v_template, precision=p),
      joint_dirs=jnp.einsum('ji,ikl->jkl', layer.J_regressor, dirs, precision=p),
      v_template=layer.v_template[kept],
      dirs=dirs[kept],
      posedirs=layer.posedirs[:, columns],
      lbs_weights=layer.lbs_weights[kept],
      pose_mean=layer.pose_mean,
      faces=jnp.asarray(np.searchsorted(kept, faces[face_ids]), jnp.int32),
      keypoint_idx=jnp.asarray(np.searchsorted(kept, keypoints), jnp.int32),
      lmk_faces_idx=jnp.asarray(np.searchsorted(face_ids, static), jnp.int32),
      lmk_bary_coords=layer.lmk_bary_coords,
      dynamic_lmk_faces_idx=(jnp.asarray(np.searchsorted(face_ids, dynamic), jnp.int32)
                             if contour else None),
      dynamic_lmk_bary_coords=layer.dynamic_lmk_bary_coords if contour else None,
      num_betas=layer.num_betas, parents=layer.parents,
      neck_kin_chain=layer.neck_kin_chain, precision=p)


Layer = Union[smplx_jax.SMPLX, SMPLXJoints, smplx_jax.SMPL]
Layers = Union[Layer, Sequence[Layer]]   # one layer, or (neutral, male, female)


def _forward(layers: Layers, gender, with_mesh: bool, **inputs):
  """Joints (B, J, 3) and vertices (B, V, 3) or None, per-sample gender picked
  from a (neutral, male, female) tuple by `gender` (B,) int (0/1/2)."""
  if isinstance(layers, (tuple, list)):
    outs = [_forward(layer, None, with_mesh, **inputs) for layer in layers]
    rows = jnp.arange(gender.shape[0])
    pick = jnp.clip(gender.astype(jnp.int32), 0, 2)
    return jax.tree.map(lambda *xs: jnp.stack(xs)[pick, rows], *outs)
  if isinstance(layers, SMPLXJoints):
    return layers(**inputs), None
  out = layers(**inputs)
  return out.joints, (out.vertices if with_mesh else None)


def _dtype(layers: Layers):
  layer = layers[0] if isinstance(layers, (tuple, list)) else layers
  return layer.v_template.dtype


# ---------------------------------------------------------------------------
# Rotations

# Targets are data: full float32 products on every backend (TF32 or bf16
# passes of the default precision would move joints by millimetres).
_EXACT = 'highest'


def _matmul(a, b):
  return jnp.matmul(a, b, precision=_EXACT)


def axis_angle_to_rotmat(aa):
  """cv2.Rodrigues, vector to matrix: (..., 3) axis-angle -> (..., 3, 3).

  R = cos t I + (1 - cos t) k k^T + sin t [k]x, identity for t = 0 (cv2's
  t < DBL_EPSILON test; exact, unlike smplx's +1e-8 shifted angle).
  """
  sq = jnp.sum(aa * aa, axis=-1, keepdims=True)
  zero = sq <= 0.0
  theta = jnp.sqrt(jnp.where(zero, 1.0, sq))
  k = aa / theta
  cos, sin = jnp.cos(theta)[..., None], jnp.sin(theta)[..., None]
  kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
  o = jnp.zeros_like(kx)
  skew = jnp.stack([o, -kz, ky, kz, o, -kx, -ky, kx, o], axis=-1).reshape(aa.shape + (3,))
  ident = jnp.eye(3, dtype=aa.dtype)
  rotmat = cos * ident + (1 - cos) * k[..., :, None] * k[..., None, :] + sin * skew
  return jnp.where(zero[..., None], ident, rotmat)


def principal_axis_angle(rotmat):
  """Matrix -> axis-angle with the angle in [0, pi] (cv2.Rodrigues' range).

  Via geometry.rotmat_to_axis_angle (the model side's torchgeometry
  conversion), which is well conditioned everywhere; cv2 differs only at
  exactly pi (either sign is right) and below 1e-5 rad (cv2 returns 0).
  """
  return geo.rotmat_to_axis_angle(rotmat)


def rot_z(rot_deg):
  """upstream's rot_aug_mat: Rz(-rot) (B, 3, 3), rot in degrees."""
  a = jnp.deg2rad(-rot_deg)
  c, s = jnp.cos(a), jnp.sin(a)
  o, i = jnp.zeros_like(a), jnp.ones_like(a)
  return jnp.stack([c, -s, o, s, c, o, o, o, i], axis=-1).reshape(a.shape + (3, 3))


def apply_extrinsics(root_pose, cam_r):
  """upstream: root <- Rodrigues(R . Rodrigues(root)) when the record has R.

  The record stores identity for "no extrinsics" (camera-frame fits); there
  the root is passed through untouched, as upstream skips the branch.
  """
  has_r = jnp.any(cam_r != jnp.eye(3, dtype=cam_r.dtype), axis=(-2, -1))
  rotated = principal_axis_angle(_matmul(cam_r, axis_angle_to_rotmat(root_pose)))
  return jnp.where(has_r[:, None], rotated, root_pose)


def translate_to_camera(points, root, cam_r, cam_t):
  """upstream: X - r + R r + t with r the root joint, for joints and mesh (the
  layer rotates about the rest pelvis, so this completes the extrinsics).
  Written as X + (R r + t - r), which is exactly X for R = I, t = 0."""
  delta = jnp.einsum('bij,bj->bi', cam_r, root, precision=_EXACT) + cam_t - root
  return points + delta[:, None]


# ---------------------------------------------------------------------------
# process_human_model_output


def _f(batch, key, dtype):
  return jnp.asarray(batch[key], dtype)


def _part_valid(valid, parts, flags):
  """Zeroes the columns of each part whose per-sample flag is False."""
  for part, flag in flags.items():
    start, stop = parts[part]
    valid = valid.at[:, start:stop].set(flag[:, None].astype(valid.dtype))
  return valid


_SMPLX_FIELDS = ('smplx_root_pose', 'smplx_body_pose', 'smplx_lhand_pose', 'smplx_rhand_pose',
                 'smplx_jaw_pose', 'smplx_shape', 'smplx_expr', 'smplx_trans',
                 'smplx_lhand_valid', 'smplx_rhand_valid', 'smplx_face_valid', 'cam_R', 'cam_t')


def _check_inputs(layers: Layers, batch: Mapping[str, Any], fields: Sequence[str],
                  gender_key: str = 'smplx_gender', with_mesh: bool = False):
  """Fails before any work on a missing field or a bad layer (tuple)."""
  missing = [k for k in fields if k not in batch]
  each = layers
  if isinstance(layers, (tuple, list)):
    if len(layers) != 3:
      raise ValueError(f'a gendered layer tuple is (neutral, male, female); got {len(layers)}')
    missing += [gender_key] if gender_key not in batch else []
  else:
    each = (layers,)
  if with_mesh and any(isinstance(layer, SMPLXJoints) for layer in each):
    raise ValueError('the mesh needs the full smplx_jax.SMPLX layer, not SMPLXJoints')
  if missing:
    raise KeyError(f'batch lacks {missing} (see h4w_datasets.example for the fields)')


def _smplx_camera(layers: Layers, batch: Mapping[str, Any], with_mesh: bool):
  """The un-augmented half of process_human_model_output('smplx').

  Returns joint_cam (B, 137, 3) and mesh (B, V, 3) or None in the camera
  frame (metres), pose (B, 53, 3) before augmentation, rotation_valid (B, 53),
  coord_valid (B, 137), expr (B, 10) and expr_valid (B,).
  """
  _check_inputs(layers, batch, _SMPLX_FIELDS, with_mesh=with_mesh)
  dtype = _dtype(layers)
  f = lambda key: _f(batch, key, dtype)
  root = f('smplx_root_pose')
  b = root.shape[0]
  lhand_ok = f('smplx_lhand_valid') > 0
  rhand_ok = f('smplx_rhand_valid') > 0
  face_ok = f('smplx_face_valid') > 0
  # a part without a fit runs as zeros (the mean hand: flat_hand_mean=False)
  lhand = jnp.where(lhand_ok[:, None], f('smplx_lhand_pose'), 0.0)
  rhand = jnp.where(rhand_ok[:, None], f('smplx_rhand_pose'), 0.0)
  jaw = jnp.where(face_ok[:, None], f('smplx_jaw_pose'), 0.0)
  expr = jnp.where(face_ok[:, None], f('smplx_expr'), 0.0)
  flags = {'lhand': lhand_ok, 'rhand': rhand_ok, 'face': face_ok}
  rotation_valid = _part_valid(jnp.ones((b, js.NUM_ORIG_JOINTS), dtype), js.ORIG_JOINT_PART, flags)
  coord_valid = _part_valid(jnp.ones((b, js.NUM_JOINTS), dtype), js.JOINT_PART, flags)

  cam_r, cam_t = f('cam_R'), f('cam_t')
  root = apply_extrinsics(root, cam_r)
  body = f('smplx_body_pose')
  gender = jnp.asarray(batch['smplx_gender']) if 'smplx_gender' in batch else None
  joints, mesh = _forward(layers, gender, with_mesh, betas=f('smplx_shape'), global_orient=root,
                          body_pose=body, left_hand_pose=lhand, right_hand_pose=rhand,
                          jaw_pose=jaw, expression=expr, transl=f('smplx_trans'))
  joint_cam = joints[:, js.JOINT_IDX]
  pelvis = joint_cam[:, js.ROOT_IDX]
  joint_cam = translate_to_camera(joint_cam, pelvis, cam_r, cam_t)
  if mesh is not None:
    mesh = translate_to_camera(mesh, pelvis, cam_r, cam_t)
  pose = jnp.concatenate([root, body, lhand, rhand, jaw], axis=1).reshape(b, -1, 3)
  return dict(joint_cam=joint_cam, mesh=mesh, pose=pose, rotation_valid=rotation_valid,
              coord_valid=coord_valid, expr=expr, expr_valid=face_ok.astype(dtype))


def _rebase(joint_cam, part, root_idx):
  start, stop = js.JOINT_PART[part]
  return joint_cam.at[:, start:stop].add(-joint_cam[:, root_idx, None])


def smplx_targets(layers: Layers, batch: Mapping[str, Any], with_mesh: bool = False
                  ) -> dict[str, Array]:
  """upstream: process_human_model_output(..., 'smplx'), for a batch.

  Args:
    layers: an smplx_jax.SMPLX layer, its `smplx_joints` cut, or a (neutral,
      male, female) tuple of either, picked per sample by batch['smplx_gender'].
    batch: the example fields with a leading B (h4w_datasets.example):
      smplx_{root,body,lhand,rhand,jaw}_pose, smplx_{shape,expr,trans},
      smplx_{lhand,rhand,face}_valid, cam_{focal,princpt,R,t}, do_flip, rot
      (degrees), img2bb_trans (B, 2, 3) and img_shape (B, 2) (H, W) of the
      original image (the flip mirrors x -> W - 1 - x).
    with_mesh: also return mesh_cam_orig (needs a full SMPLX layer).
  Returns (in the layer's dtype):
    joint_img (B, 137, 3): x, y in body-hm units of the crop (pixels / 64),
      z the depth bin (0..8) of the part-relative depth;
    joint_cam (B, 137, 3): metres, pelvis-relative, hands wrist- and face
      neck-relative, flipped and rotated like the image (Rz(-rot));
    joint_trunc (B, 137, 1): inside the heatmap volume, NOT multiplied by
      coord_valid (Q10);
    pose (B, 159): root | body | lhand | rhand | jaw axis-angle, flipped (all
      53 joints' y, z negated, Q8) and the root rotated by Rz(-rot), its
      angle in [0, pi]; parts without a fit are zeros;
    shape (B, 10): zeroed if any |beta| > 3 (the joints still used them, Q7);
    expr (B, 10); rotation_valid (B, 53); coord_valid (B, 137) (flipped with
      the joints); expr_valid (B,);
    mesh_cam_orig (B, V, 3) when asked: the camera-frame mesh, no augmentation.
  A sample whose joints sit at zero depth (no fit: a zero record) gives
  non-finite joint_img; train_batch replaces those targets with zeros.
  """
  _check_inputs(layers, batch, _SMPLX_FIELDS + (
      'cam_focal', 'cam_princpt', 'do_flip', 'rot', 'img2bb_trans', 'img_shape'),
                with_mesh=with_mesh)
  dtype = _dtype(layers)
  f = lambda key: _f(batch, key, dtype)
  cam = _smplx_camera(layers, batch, with_mesh)
  joint_cam = cam['joint_cam']
  b = joint_cam.shape[0]

  # cam2pixel, then part-relative coordinates and discretised depth
  focal, princpt = f('cam_focal'), f('cam_princpt')
  x = joint_cam[..., 0] / joint_cam[..., 2] * focal[:, None, 0] + princpt[:, None, 0]
  y = joint_cam[..., 1] / joint_cam[..., 2] * focal[:, None, 1] + princpt[:, None, 1]
  joint_cam = joint_cam - joint_cam[:, js.ROOT_IDX, None]
  joint_cam = _rebase(joint_cam, 'lhand', js.LWRIST_IDX)
  joint_cam = _rebase(joint_cam, 'rhand', js.RWRIST_IDX)
  joint_cam = _rebase(joint_cam, 'face', js.NECK_IDX)
  half = jnp.asarray(_depth_half_size(), dtype)
  z = (joint_cam[..., 2] / half + 1) / 2.0 * spaces.OUTPUT_HM_SHAPE[0]

  # flip: mirror x, swap the left/right joints (and their validity)
  flip = f('do_flip') > 0
  img_w = jnp.asarray(batch['img_shape'])[:, 1].astype(dtype)
  perm = _FLIP_PERM
  mirror = jnp.asarray([-1.0, 1.0, 1.0], dtype)
  joint_cam = jnp.where(flip[:, None, None], joint_cam[:, perm] * mirror, joint_cam)
  x = jnp.where(flip[:, None], (img_w[:, None] - 1 - x)[:, perm], x)
  y = jnp.where(flip[:, None], y[:, perm], y)
  z = jnp.where(flip[:, None], z[:, perm], z)
  coord_valid = jnp.where(flip[:, None], cam['coord_valid'][:, perm], cam['coord_valid'])

  # affine warp into the crop, then body-hm units
  t = f('img2bb_trans')
  x, y = (t[:, None, 0, 0] * x + t[:, None, 0, 1] * y + t[:, None, 0, 2],
          t[:, None, 1, 0] * x + t[:, None, 1, 1] * y + t[:, None, 1, 2])
  hm_d, hm_h, hm_w = spaces.OUTPUT_HM_SHAPE
  x = x / spaces.INPUT_IMG_SHAPE[1] * hm_w
  y = y / spaces.INPUT_IMG_SHAPE[0] * hm_h
  joint_img = jnp.stack([x, y, z], axis=-1)
  joint_trunc = ((x >= 0) & (x < hm_w) & (y >= 0) & (y < hm_h) & (z >= 0) & (z < hm_d))
  joint_trunc = joint_trunc.astype(dtype)[..., None]

  # 3D rotation augmentation of the joints and of the root pose
  aug_rot = rot_z(f('rot'))
  joint_cam = jnp.einsum('bij,bnj->bni', aug_rot, joint_cam, precision=_EXACT)
  pose = cam['pose']
  yz_mirror = jnp.asarray([1.0, -1.0, -1.0], dtype)
  pose = jnp.where(flip[:, None, None], pose[:, _ORIG_FLIP_PERM] * yz_mirror, pose)
  rotation_valid = jnp.where(flip[:, None], cam['rotation_valid'][:, _ORIG_FLIP_PERM],
                             cam['rotation_valid'])
  root = principal_axis_angle(_matmul(aug_rot, axis_angle_to_rotmat(pose[:, js.ROOT_IDX])))
  pose = pose.at[:, js.ROOT_IDX].set(root)

  shape = f('smplx_shape')
  shape = jnp.where(jnp.any(jnp.abs(shape) > 3, axis=1, keepdims=True), 0.0, shape)
  out = dict(joint_img=joint_img, joint_cam=joint_cam, joint_trunc=joint_trunc,
             pose=pose.reshape(b, -1), shape=shape, expr=cam['expr'],
             rotation_valid=rotation_valid, coord_valid=coord_valid,
             expr_valid=cam['expr_valid'])
  if with_mesh:
    out['mesh_cam_orig'] = cam['mesh']
  return out


# ---------------------------------------------------------------------------
# The training batch


_TRAIN_FIELDS = (
    'smplx_valid', 'smplx_pose_mask', 'smplx_joint_mask', 'joints_from_smplx', 'is_3D',
    'joint_img', 'joint_cam', 'joint_valid', 'joint_trunc', 'img', 'color_scale',
    *(f'{part}_bbox_{k}' for part in ('lhand', 'rhand', 'face')
      for k in ('center', 'size', 'valid')))


def train_batch(layers: Layers, batch: Mapping[str, Any]):
  """A batch of examples -> (inputs, targets, meta_info) for outputs.train_losses.

  upstream: the train tails of each dataset's __getitem__ (SPEC_DATA §4, §5):
    smplx_pose_valid  = rotation_valid * smplx_pose_mask * smplx_valid, each
                        joint's value repeated for its 3 components (B, 159);
    smplx_joint_valid = coord_valid * smplx_joint_mask * smplx_valid (B, 137, 1);
    smplx_joint_trunc = smplx_joint_valid * joint_trunc;
    smplx_shape_valid = smplx_valid; smplx_expr_valid = expr_valid * smplx_valid;
  every SMPL-X target is zero where smplx_valid == 0 (upstream's dummy zeros
  for samples without a fit); with joints_from_smplx (AGORA) joint_img,
  joint_cam, joint_valid and joint_trunc are the SMPL-X ones. inputs['img'] is
  clip(img * color_scale, 0, 255) / 255 (upstream jitters after the warp), NHWC.
  Every mask is float32 (upstream's float64 collated scalars are not kept).
  """
  _check_inputs(layers, batch, _TRAIN_FIELDS)
  dtype = _dtype(layers)
  f = lambda key: _f(batch, key, dtype)
  t = smplx_targets(layers, batch)
  has_fit = f('smplx_valid') > 0
  fit = has_fit.astype(dtype)

  def fit_only(x):
    return jnp.where(has_fit.reshape((-1,) + (1,) * (x.ndim - 1)), x, 0.0)

  pose_valid = jnp.repeat(t['rotation_valid'] * f('smplx_pose_mask') * fit[:, None], 3, axis=1)
  smplx_joint_valid = (t['coord_valid'] * f('smplx_joint_mask') * fit[:, None])[..., None]
  smplx_joint_trunc = smplx_joint_valid * t['joint_trunc']
  smplx_joint_img = fit_only(t['joint_img'])
  smplx_joint_cam = fit_only(t['joint_cam'])

  from_smplx = (f('joints_from_smplx') > 0)[:, None, None]
  pick = lambda own, fitted: jnp.where(from_smplx, fitted, f(own))
  targets = {
      'joint_img': pick('joint_img', smplx_joint_img),
      'joint_cam': pick('joint_cam', smplx_joint_cam),
      'smplx_joint_img': smplx_joint_img,
      'smplx_joint_cam': smplx_joint_cam,
      'smplx_pose': fit_only(t['pose']),
      'smplx_shape': fit_only(t['shape']),
      'smplx_expr': fit_only(t['expr']),
  }
  meta_info = {
      'joint_valid': pick('joint_valid', smplx_joint_valid),
      'joint_trunc': pick('joint_trunc', smplx_joint_trunc),
      'smplx_joint_valid': smplx_joint_valid,
      'smplx_joint_trunc': smplx_joint_trunc,
      'smplx_pose_valid': pose_valid,
      'smplx_shape_valid': fit,
      'smplx_expr_valid': t['expr_valid'] * fit,
      'is_3D': f('is_3D'),
  }
  for part in ('lhand', 'rhand', 'face'):
    targets[f'{part}_bbox_center'] = f(f'{part}_bbox_center')
    targets[f'{part}_bbox_size'] = f(f'{part}_bbox_size')
    meta_info[f'{part}_bbox_valid'] = f(f'{part}_bbox_valid')
  img = jnp.asarray(batch['img'], jnp.float32)
  scale = jnp.asarray(batch['color_scale'], jnp.float32)[:, None, None, :]
  inputs = {'img': jnp.clip(img * scale, 0.0, 255.0) / 255.0}
  return inputs, targets, meta_info


# ---------------------------------------------------------------------------
# Evaluation ground truth


def gt_mesh(layers: Layers, params: Mapping[str, Any]) -> Array:
  """Evaluation GT mesh: upstream's mesh_cam_orig (camera frame, metres, no
  augmentation), (B, V, 3).

  SMPL-X layers (AGORA val) read the smplx_* fields, validity flags and
  cam_R/cam_t as smplx_targets. SMPL layers (3DPW, the 'smpl' branch) read
  smpl_pose (B, 72) root first, smpl_shape (B, 10), smpl_trans (B, 3) and,
  optionally, cam_R (B, 3, 3) and cam_t (B, 3); the translation correction
  uses the pelvis regressed from the mesh with the neutral SMPL J_regressor
  (upstream's smpl.joint_regressor, for every gender). A gendered tuple reads
  smplx_gender / smpl_gender.
  """
  first = layers[0] if isinstance(layers, (tuple, list)) else layers
  if not isinstance(first, smplx_jax.SMPL):
    return _smplx_camera(layers, params, with_mesh=True)['mesh']
  _check_inputs(layers, params, ('smpl_pose', 'smpl_shape', 'smpl_trans'), 'smpl_gender')
  dtype = first.v_template.dtype
  f = lambda key: _f(params, key, dtype)
  pose = f('smpl_pose')
  b = pose.shape[0]
  cam_r = f('cam_R') if 'cam_R' in params else jnp.broadcast_to(jnp.eye(3, dtype=dtype),
                                                                 (b, 3, 3))
  cam_t = f('cam_t') if 'cam_t' in params else jnp.zeros((b, 3), dtype)
  root = apply_extrinsics(pose[:, :3], cam_r)
  gender = jnp.asarray(params['smpl_gender']) if 'smpl_gender' in params else None
  _, mesh = _forward(layers, gender, True, betas=f('smpl_shape'), global_orient=root,
                     body_pose=pose[:, 3:], transl=f('smpl_trans'))
  pelvis = jnp.einsum('v,bvk->bk', first.J_regressor[0], mesh, precision=first.precision)
  return translate_to_camera(mesh, pelvis, cam_r, cam_t)
