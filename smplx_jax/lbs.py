"""Linear blend skinning and landmark functions, in the math of `smplx.lbs`.

Plain functions over arrays; the body models in `body_models.py` call them.
Each follows the smplx function of the same name: where we compute the same
quantity differently (for speed on accelerators) the docstring says how and
why the result is equal up to float rounding.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def batch_rodrigues(rot_vecs: jax.Array) -> jax.Array:
  """Axis-angle (..., 3) -> rotation matrices (..., 3, 3).

  Matches `smplx.lbs.batch_rodrigues`, including its `|r + 1e-8|` angle, which
  keeps the zero pose differentiable. The squared norm is floored at a tiny
  value so the gradient stays finite even where `r + 1e-8` is exactly zero
  (never reached by smplx's tests; it changes no value above 1e-30).
  """
  shifted = rot_vecs + 1e-8
  sq_norm = jnp.sum(shifted * shifted, axis=-1, keepdims=True)
  angle = jnp.sqrt(jnp.maximum(sq_norm, jnp.finfo(rot_vecs.dtype).tiny))
  rot_dir = rot_vecs / angle
  cos = jnp.cos(angle)[..., None]
  sin = jnp.sin(angle)[..., None]
  rx, ry, rz = rot_dir[..., 0], rot_dir[..., 1], rot_dir[..., 2]
  zeros = jnp.zeros_like(rx)
  skew = jnp.stack([zeros, -rz, ry, rz, zeros, -rx, -ry, rx, zeros],
                   axis=-1).reshape(rot_vecs.shape[:-1] + (3, 3))
  ident = jnp.eye(3, dtype=rot_vecs.dtype)
  return ident + sin * skew + (1 - cos) * jnp.matmul(skew, skew, precision='highest')


def kinematic_levels(parents: Sequence[int]) -> tuple[tuple[int, ...], ...]:
  """Groups the non-root joints by depth in the tree: level k holds the joints
  whose parents are all in levels < k, so each level is one batched product."""
  depth = [0] * len(parents)
  for j in range(1, len(parents)):
    depth[j] = depth[parents[j]] + 1
  return tuple(tuple(j for j in range(1, len(parents)) if depth[j] == d)
               for d in range(1, max(depth) + 1))


def batch_rigid_transform(rot_mats: jax.Array, joints: jax.Array,
                          parents: Sequence[int], precision='highest'):
  """Poses the kinematic chain (smplx.lbs.batch_rigid_transform).

  Args:
    rot_mats: (B, J, 3, 3) local joint rotations.
    joints: (B, J, 3) rest-pose joint locations.
    parents: J static ints, parents[0] == -1.
  Returns:
    posed_joints (B, J, 3) and the relative transforms as rotation
    (B, J, 3, 3) and translation (B, J, 3), i.e. smplx's 4x4 `rel_transforms`
    without its constant last row. smplx walks the chain one joint at a time;
    here each tree level is one batched product (same products, same order).
  """
  parents_arr = jnp.asarray(parents[1:])
  rel_joints = joints.at[:, 1:].add(-joints[:, parents_arr])
  world_rot = rot_mats
  world_t = rel_joints
  for level in kinematic_levels(parents):
    idx = jnp.asarray(level)
    par = jnp.asarray([parents[j] for j in level])
    parent_rot = world_rot[:, par]
    world_t = world_t.at[:, idx].set(
        jnp.einsum('bjik,bjk->bji', parent_rot, rel_joints[:, idx],
                   precision=precision) + world_t[:, par])
    world_rot = world_rot.at[:, idx].set(
        jnp.einsum('bjik,bjkl->bjil', parent_rot, rot_mats[:, idx],
                   precision=precision))
  rel_t = world_t - jnp.einsum('bjik,bjk->bji', world_rot, joints,
                               precision=precision)
  return world_t, world_rot, rel_t


def blend_shapes(coeffs: jax.Array, dirs: jax.Array, precision='highest') -> jax.Array:
  """(B, K) x (V, 3, K) -> (B, V, 3) displacements (smplx.lbs.blend_shapes)."""
  return jnp.einsum('bl,mkl->bmk', coeffs, dirs, precision=precision)


def lbs(shape_coeffs: jax.Array, rot_mats: jax.Array, v_template: jax.Array,
        shapedirs: jax.Array, posedirs: jax.Array, J_regressor: jax.Array,
        parents: Sequence[int], lbs_weights: jax.Array, precision='highest'):
  """Shape, pose-corrective blend shapes, chain and skinning (smplx.lbs.lbs).

  Args:
    shape_coeffs: (B, K); rot_mats: (B, J, 3, 3); v_template: (V, 3);
    shapedirs: (V, 3, K); posedirs: ((J-1)*9, V*3); J_regressor: (J, V);
    lbs_weights: (V, J).
  Returns:
    vertices (B, V, 3), joints (B, J, 3) (the posed chain, as smplx), and
    v_shaped (B, V, 3).
  Skinning blends only the 3x4 upper part of each joint transform (the last
  row is constant), which is smplx's 4x4 product without the zero terms, in
  the same summation order (R x + R y + R z + t).
  """
  batch = rot_mats.shape[0]
  num_joints = J_regressor.shape[0]
  v_shaped = v_template + blend_shapes(shape_coeffs, shapedirs, precision)
  if batch > shape_coeffs.shape[1]:
    # J·(T + S·b) = J·T + (J·S)·b: regressing the K shape directions once is
    # cheaper than regressing every mesh of a large batch (same value).
    rest_joints = (jnp.matmul(J_regressor, v_template, precision=precision)
                   + blend_shapes(shape_coeffs, jnp.einsum(
                       'ji,ikl->jkl', J_regressor, shapedirs, precision=precision),
                                  precision))
  else:
    rest_joints = jnp.einsum('bik,ji->bjk', v_shaped, J_regressor,
                             precision=precision)
  ident = jnp.eye(3, dtype=rot_mats.dtype)
  pose_feature = (rot_mats[:, 1:] - ident).reshape(batch, -1)
  pose_offsets = jnp.matmul(pose_feature, posedirs,
                            precision=precision).reshape(batch, -1, 3)
  v_posed = v_shaped + pose_offsets
  posed_joints, rel_rot, rel_t = batch_rigid_transform(
      rot_mats, rest_joints, parents, precision)
  rel = jnp.concatenate([rel_rot.reshape(batch, num_joints, 9), rel_t], axis=-1)
  # (B, 12, V): the blended 3x4 transform of each vertex, vertices minor, so
  # that applying it is plain elementwise work over (B, V) rows (on CPU this
  # layout is ~5x faster than (B, V, 12) followed by per-vertex 3x3 products).
  per_vertex = jnp.einsum('bjc,vj->bcv', rel, lbs_weights, precision=precision)
  x, y, z = v_posed[..., 0], v_posed[..., 1], v_posed[..., 2]
  vertices = jnp.stack(
      [per_vertex[:, 3 * i] * x + per_vertex[:, 3 * i + 1] * y
       + per_vertex[:, 3 * i + 2] * z + per_vertex[:, 9 + i] for i in range(3)], axis=-1)
  return vertices, posed_joints, v_shaped


def vertices2landmarks(vertices: jax.Array, faces: jax.Array,
                       lmk_faces_idx: jax.Array, lmk_bary_coords: jax.Array,
                       precision='highest') -> jax.Array:
  """Barycentric landmarks (smplx.lbs.vertices2landmarks).

  vertices (B, V, 3); faces (F, 3); lmk_faces_idx (B, L) or (L,);
  lmk_bary_coords (B, L, 3) or (L, 3). Returns (B, L, 3).
  """
  lmk_faces = faces[lmk_faces_idx]  # (..., L, 3) vertex ids
  if lmk_faces.ndim == 2:
    lmk_vertices = vertices[:, lmk_faces]  # (B, L, 3, 3)
  else:
    lmk_vertices = jax.vmap(lambda v, f: v[f])(vertices, lmk_faces)
  if lmk_bary_coords.ndim == 2:
    lmk_bary_coords = lmk_bary_coords[None]
  return jnp.einsum('blfi,blf->bli', lmk_vertices, lmk_bary_coords,
                    precision=precision)


def rot_mat_to_euler_y(rot_mats: jax.Array) -> jax.Array:
  """The y (yaw) Euler angle of (..., 3, 3) rotations (smplx.utils.rot_mat_to_euler)."""
  sy = jnp.sqrt(rot_mats[..., 0, 0] ** 2 + rot_mats[..., 1, 0] ** 2)
  return jnp.arctan2(-rot_mats[..., 2, 0], sy)


def find_dynamic_lmk_idx_and_bcoords(rot_mats: jax.Array,
                                     dynamic_lmk_faces_idx: jax.Array,
                                     dynamic_lmk_bary_coords: jax.Array,
                                     neck_kin_chain: Sequence[int],
                                     precision='highest'):
  """Contour landmark faces from the head's yaw
  (smplx.lbs.find_dynamic_lmk_idx_and_bcoords).

  rot_mats: (B, J, 3, 3) local rotations of the full pose (mean included).
  The neck chain's rotations are multiplied root-last, as smplx does, the yaw
  in degrees is rounded half-to-even and clamped, and mapped to a table row
  in [0, 78]. Returns faces (B, 17) and bary coords (B, 17, 3).
  """
  batch = rot_mats.shape[0]
  rel = jnp.broadcast_to(jnp.eye(3, dtype=rot_mats.dtype), (batch, 3, 3))
  for j in neck_kin_chain:
    rel = jnp.einsum('bij,bjk->bik', rot_mats[:, j], rel, precision=precision)
  degrees = -rot_mat_to_euler_y(rel) * 180.0 / jnp.pi
  y = jnp.round(jnp.minimum(degrees, 39)).astype(jnp.int32)
  row = jnp.where(y < 0, jnp.where(y < -39, 78, 39 - y), y)
  return dynamic_lmk_faces_idx[row], dynamic_lmk_bary_coords[row]
