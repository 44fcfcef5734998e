"""SMPL, SMPL-X, MANO and FLAME as pytrees, with smplx's forward keywords.

A body model here is a frozen dataclass: its arrays (template, blend shapes,
regressor, skinning weights, ...) are pytree leaves and its settings (kinematic
tree, gender, PCA use, ...) are static. Calling it is a pure function of the
model and the keyword arguments users know from the `smplx` package, so the
forward works under `jit`, `vmap` and `grad`, and the model itself can be an
argument of a jitted function.

Inputs are flat vectors with any leading batch shape, broadcast together
(`betas` (10,) with `body_pose` (B, 63) gives B meshes; unbatched inputs give
unbatched outputs, which is what `vmap` sees). A pose may also be given as
(..., N, 3). Omitted inputs are zeros. A non-float array or a wrong last axis
is a chex AssertionError naming the model and the argument; batch shapes that
do not broadcast are a ValueError. The returned `ModelOutput` has the
leading batch shape of the inputs; with no input at all it is a batch of 1,
as in smplx.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np

from smplx_jax import lbs as lbs_lib

Array = jax.Array


def _static(**kwargs):
  return dataclasses.field(metadata=dict(static=True), **kwargs)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ModelOutput:
  """What a body model returns; fields a model does not have stay None.

  vertices (..., V, 3) and joints (..., J, 3) in metres; full_pose is the
  axis-angle vector fed to skinning (hand PCA expanded, mean pose added);
  v_shaped (..., V, 3) is the template plus the betas' blend shapes only, as
  smplx's `v_shaped`.
  """
  vertices: Optional[Array] = None
  joints: Optional[Array] = None
  full_pose: Optional[Array] = None
  v_shaped: Optional[Array] = None
  betas: Optional[Array] = None
  global_orient: Optional[Array] = None
  body_pose: Optional[Array] = None
  left_hand_pose: Optional[Array] = None
  right_hand_pose: Optional[Array] = None
  hand_pose: Optional[Array] = None
  jaw_pose: Optional[Array] = None
  neck_pose: Optional[Array] = None
  expression: Optional[Array] = None
  transl: Optional[Array] = None

  def __getitem__(self, key):
    return getattr(self, key)

  def keys(self):
    return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

  def items(self):
    return [(k, getattr(self, k)) for k in self.keys()]


# Keyword arguments smplx's forward takes that change nothing here: every
# output is always returned.
_IGNORED_FORWARD_FLAGS = ('return_verts', 'return_full_pose', 'return_shaped')


class _Inputs:
  """Validates, flattens and broadcasts the forward's keyword arguments."""

  def __init__(self, model_name: str, dtype, widths: dict[str, int], kwargs: dict):
    unknown = set(kwargs) - set(widths) - set(_IGNORED_FORWARD_FLAGS)
    if unknown:
      raise TypeError(f'{model_name} got unexpected argument(s) {sorted(unknown)}; '
                      f'it takes {sorted(widths)}')
    self.values: dict[str, Array] = {}
    batch_shapes = []
    for name, width in widths.items():
      value = kwargs.get(name)
      if value is None:
        continue
      if hasattr(value, 'dtype'):   # an array (lists and Python numbers are cast)
        chex.assert_type(value, float, exception_type=ValueError,
                         custom_message=f'{model_name} input {name} must be floating point, '
                                        f'got {value.dtype}')
      value = jnp.asarray(value, dtype=dtype)
      rows_ok = width > 3 and width % 3 == 0  # a pose as (..., joints, 3)
      if rows_ok and value.ndim >= 2 and value.shape[-2:] == (width // 3, 3):
        value = value.reshape(value.shape[:-2] + (width,))
      rows = f' or (..., {width // 3}, 3)' if rows_ok else ''
      chex.assert_axis_dimension(value, -1, width, exception_type=ValueError, custom_message=(
          f'{model_name} input {name} has shape {value.shape}; expected (..., {width}){rows}'))
      self.values[name] = value
      batch_shapes.append(value.shape[:-1])
    try:
      self.batch_shape = (jnp.broadcast_shapes(*batch_shapes)
                          if batch_shapes else (1,))
    except ValueError as e:
      raise ValueError(f'{model_name}: the inputs\' batch shapes '
                       f'{dict((k, v.shape[:-1]) for k, v in self.values.items())} '
                       'do not broadcast') from e
    self.size = int(np.prod(self.batch_shape))
    self.dtype = dtype
    self.widths = widths

  def __getitem__(self, name) -> Array:
    """The input as (N, width): broadcast to the batch, zeros if omitted."""
    width = self.widths[name]
    value = self.values.get(name)
    if value is None:
      return jnp.zeros((self.size, width), self.dtype)
    return jnp.broadcast_to(value, self.batch_shape + (width,)).reshape(self.size, width)

  def unflatten(self, x: Array) -> Array:
    return x.reshape(self.batch_shape + x.shape[1:])


@dataclasses.dataclass(frozen=True)
class _BodyModel:
  """The arrays and settings that every linear-blend-skinned model has."""
  v_template: Array          # (V, 3) metres
  shapedirs: Array           # (V, 3, num_betas)
  posedirs: Array            # ((J-1)*9, V*3), smplx's layout
  J_regressor: Array         # (J, V)
  lbs_weights: Array         # (V, J)
  faces: Array               # (F, 3) int32
  parents: tuple[int, ...] = _static()
  gender: str = _static(default='neutral')
  extra_joint_vertex_ids: tuple[int, ...] = _static(default=())
  precision: str = _static(default='highest')

  @property
  def num_betas(self) -> int:
    return self.shapedirs.shape[-1]

  @property
  def num_verts(self) -> int:
    return self.v_template.shape[0]

  @property
  def num_joints(self) -> int:
    return len(self.parents)

  @property
  def dtype(self):
    return self.v_template.dtype

  def _skin(self, shape_coeffs, shapedirs, full_pose):
    rot_mats = lbs_lib.batch_rodrigues(full_pose.reshape(full_pose.shape[0], -1, 3))
    vertices, joints, _ = lbs_lib.lbs(
        shape_coeffs, rot_mats, self.v_template, shapedirs, self.posedirs,
        self.J_regressor, self.parents, self.lbs_weights, self.precision)
    return vertices, joints, rot_mats

  def _v_shaped(self, betas):
    return self.v_template + lbs_lib.blend_shapes(betas, self.shapedirs, self.precision)

  def _extra_joints(self, vertices):
    return vertices[:, jnp.asarray(self.extra_joint_vertex_ids, dtype=jnp.int32)]

  def _landmarks(self, vertices, rot_mats, static_faces, static_bary,
                 dynamic_faces, dynamic_bary, neck_kin_chain):
    """Static landmarks, then the contour ones if the model has the tables."""
    batch = vertices.shape[0]
    faces_idx = jnp.broadcast_to(static_faces, (batch,) + static_faces.shape)
    bary = jnp.broadcast_to(static_bary, (batch,) + static_bary.shape)
    if dynamic_faces is not None:
      dyn_faces, dyn_bary = lbs_lib.find_dynamic_lmk_idx_and_bcoords(
          rot_mats, dynamic_faces, dynamic_bary, neck_kin_chain, self.precision)
      faces_idx = jnp.concatenate([faces_idx, dyn_faces], axis=1)
      bary = jnp.concatenate([bary, dyn_bary], axis=1)
    return lbs_lib.vertices2landmarks(vertices, self.faces, faces_idx, bary,
                                      self.precision)


def _hand_pose(pose, components):
  """PCA coefficients (N, k) -> axis-angle (N, 45), as smplx's einsum."""
  if components is None:
    return pose
  return jnp.einsum('bi,ij->bj', pose, components, precision='highest')


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SMPL(_BodyModel):
  """SMPL: 24 joints; returns 45 = 24 + 21 vertex keypoints, as smplx."""
  NUM_BODY_JOINTS = 23

  def name(self) -> str:
    return 'SMPL'

  def __call__(self, betas=None, body_pose=None, global_orient=None, transl=None,
               **kwargs) -> ModelOutput:
    x = _Inputs('SMPL', self.dtype, {
        'betas': self.num_betas, 'global_orient': 3,
        'body_pose': 3 * self.NUM_BODY_JOINTS, 'transl': 3},
        dict(kwargs, betas=betas, body_pose=body_pose,
             global_orient=global_orient, transl=transl))
    full_pose = jnp.concatenate([x['global_orient'], x['body_pose']], axis=1)
    vertices, joints, _ = self._skin(x['betas'], self.shapedirs, full_pose)
    joints = jnp.concatenate([joints, self._extra_joints(vertices)], axis=1)
    t = x['transl'][:, None]
    return jax.tree.map(x.unflatten, ModelOutput(
        vertices=vertices + t, joints=joints + t, full_pose=full_pose,
        v_shaped=self._v_shaped(x['betas']), betas=x['betas'],
        global_orient=x['global_orient'], body_pose=x['body_pose'],
        transl=x['transl']))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SMPLX(_BodyModel):
  """SMPL-X: 55 joints; returns 127 joints (144 with the face contour) in
  smplx's order: 55 skeleton joints, 21 vertex keypoints, 51 (+17) landmarks."""
  expr_dirs: Array = None                  # (V, 3, num_expression_coeffs)
  pose_mean: Array = None                  # (165,)
  left_hand_components: Optional[Array] = None   # (num_pca_comps, 45) if use_pca
  right_hand_components: Optional[Array] = None
  lmk_faces_idx: Array = None              # (51,)
  lmk_bary_coords: Array = None            # (51, 3)
  dynamic_lmk_faces_idx: Optional[Array] = None    # (79, 17) if use_face_contour
  dynamic_lmk_bary_coords: Optional[Array] = None  # (79, 17, 3)
  use_pca: bool = _static(default=True)
  num_pca_comps: int = _static(default=6)
  flat_hand_mean: bool = _static(default=False)
  use_face_contour: bool = _static(default=False)
  neck_kin_chain: tuple[int, ...] = _static(default=(12, 9, 6, 3, 0))

  NUM_BODY_JOINTS = 21
  NUM_HAND_JOINTS = 15

  def name(self) -> str:
    return 'SMPL-X'

  @property
  def num_expression_coeffs(self) -> int:
    return self.expr_dirs.shape[-1]

  def __call__(self, betas=None, global_orient=None, body_pose=None,
               left_hand_pose=None, right_hand_pose=None, transl=None,
               expression=None, jaw_pose=None, leye_pose=None, reye_pose=None,
               **kwargs) -> ModelOutput:
    hand_width = self.num_pca_comps if self.use_pca else 45
    x = _Inputs('SMPL-X', self.dtype, {
        'betas': self.num_betas, 'global_orient': 3, 'body_pose': 63,
        'left_hand_pose': hand_width, 'right_hand_pose': hand_width,
        'transl': 3, 'expression': self.num_expression_coeffs,
        'jaw_pose': 3, 'leye_pose': 3, 'reye_pose': 3},
        dict(kwargs, betas=betas, global_orient=global_orient,
             body_pose=body_pose, left_hand_pose=left_hand_pose,
             right_hand_pose=right_hand_pose, transl=transl,
             expression=expression, jaw_pose=jaw_pose, leye_pose=leye_pose,
             reye_pose=reye_pose))
    left_hand = _hand_pose(x['left_hand_pose'], self.left_hand_components)
    right_hand = _hand_pose(x['right_hand_pose'], self.right_hand_components)
    full_pose = jnp.concatenate([
        x['global_orient'], x['body_pose'], x['jaw_pose'], x['leye_pose'],
        x['reye_pose'], left_hand, right_hand], axis=1) + self.pose_mean
    shape_coeffs = jnp.concatenate([x['betas'], x['expression']], axis=1)
    shapedirs = jnp.concatenate([self.shapedirs, self.expr_dirs], axis=-1)
    vertices, joints, rot_mats = self._skin(shape_coeffs, shapedirs, full_pose)
    landmarks = self._landmarks(
        vertices, rot_mats, self.lmk_faces_idx, self.lmk_bary_coords,
        self.dynamic_lmk_faces_idx if self.use_face_contour else None,
        self.dynamic_lmk_bary_coords, self.neck_kin_chain)
    joints = jnp.concatenate([joints, self._extra_joints(vertices), landmarks], axis=1)
    t = x['transl'][:, None]
    return jax.tree.map(x.unflatten, ModelOutput(
        vertices=vertices + t, joints=joints + t, full_pose=full_pose,
        v_shaped=self._v_shaped(x['betas']), betas=x['betas'],
        global_orient=x['global_orient'], body_pose=x['body_pose'],
        left_hand_pose=left_hand, right_hand_pose=right_hand,
        jaw_pose=x['jaw_pose'], expression=x['expression'],
        transl=x['transl']))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MANO(_BodyModel):
  """MANO: returns the 16 skeleton joints only, as smplx's MANO."""
  hand_mean: Array = None                  # (45,), zeros if flat_hand_mean
  hand_components: Optional[Array] = None  # (num_pca_comps, 45) if use_pca
  is_rhand: bool = _static(default=True)
  use_pca: bool = _static(default=True)
  num_pca_comps: int = _static(default=6)
  flat_hand_mean: bool = _static(default=False)

  NUM_HAND_JOINTS = 15

  def name(self) -> str:
    return 'MANO'

  def __call__(self, betas=None, global_orient=None, hand_pose=None, transl=None,
               **kwargs) -> ModelOutput:
    x = _Inputs('MANO', self.dtype, {
        'betas': self.num_betas, 'global_orient': 3,
        'hand_pose': self.num_pca_comps if self.use_pca else 45, 'transl': 3},
        dict(kwargs, betas=betas, global_orient=global_orient,
             hand_pose=hand_pose, transl=transl))
    hand = _hand_pose(x['hand_pose'], self.hand_components)
    full_pose = jnp.concatenate([x['global_orient'], hand + self.hand_mean], axis=1)
    vertices, joints, _ = self._skin(x['betas'], self.shapedirs, full_pose)
    t = x['transl'][:, None]
    return jax.tree.map(x.unflatten, ModelOutput(
        vertices=vertices + t, joints=joints + t, full_pose=full_pose,
        v_shaped=self._v_shaped(x['betas']), betas=x['betas'],
        global_orient=x['global_orient'], hand_pose=hand, transl=x['transl']))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FLAME(_BodyModel):
  """FLAME: 5 joints; returns 56 joints (73 with the contour): the skeleton,
  then 51 (+17) landmarks, as smplx's FLAME."""
  expr_dirs: Array = None                  # (V, 3, num_expression_coeffs)
  lmk_faces_idx: Array = None              # (51,)
  lmk_bary_coords: Array = None            # (51, 3)
  dynamic_lmk_faces_idx: Optional[Array] = None
  dynamic_lmk_bary_coords: Optional[Array] = None
  use_face_contour: bool = _static(default=False)
  neck_kin_chain: tuple[int, ...] = _static(default=(0,))

  def name(self) -> str:
    return 'FLAME'

  @property
  def num_expression_coeffs(self) -> int:
    return self.expr_dirs.shape[-1]

  def __call__(self, betas=None, global_orient=None, neck_pose=None, transl=None,
               expression=None, jaw_pose=None, leye_pose=None, reye_pose=None,
               **kwargs) -> ModelOutput:
    x = _Inputs('FLAME', self.dtype, {
        'betas': self.num_betas, 'global_orient': 3, 'neck_pose': 3,
        'transl': 3, 'expression': self.num_expression_coeffs, 'jaw_pose': 3,
        'leye_pose': 3, 'reye_pose': 3},
        dict(kwargs, betas=betas, global_orient=global_orient,
             neck_pose=neck_pose, transl=transl, expression=expression,
             jaw_pose=jaw_pose, leye_pose=leye_pose, reye_pose=reye_pose))
    full_pose = jnp.concatenate([x['global_orient'], x['neck_pose'], x['jaw_pose'],
                                 x['leye_pose'], x['reye_pose']], axis=1)
    shape_coeffs = jnp.concatenate([x['betas'], x['expression']], axis=1)
    shapedirs = jnp.concatenate([self.shapedirs, self.expr_dirs], axis=-1)
    vertices, joints, rot_mats = self._skin(shape_coeffs, shapedirs, full_pose)
    landmarks = self._landmarks(
        vertices, rot_mats, self.lmk_faces_idx, self.lmk_bary_coords,
        self.dynamic_lmk_faces_idx if self.use_face_contour else None,
        self.dynamic_lmk_bary_coords, self.neck_kin_chain)
    joints = jnp.concatenate([joints, landmarks], axis=1)
    t = x['transl'][:, None]
    return jax.tree.map(x.unflatten, ModelOutput(
        vertices=vertices + t, joints=joints + t, full_pose=full_pose,
        v_shaped=self._v_shaped(x['betas']), betas=x['betas'],
        global_orient=x['global_orient'], neck_pose=x['neck_pose'],
        jaw_pose=x['jaw_pose'], expression=x['expression'], transl=x['transl']))


BodyModel = Any  # SMPL | SMPLX | MANO | FLAME


@jax.jit
def _forward(model, kwargs):
  return model(**kwargs)


def forward(model: BodyModel, **kwargs) -> ModelOutput:
  """`model(**kwargs)` compiled once per model structure and input shapes."""
  return _forward(model, {k: v for k, v in kwargs.items()
                          if k not in _IGNORED_FORWARD_FLAGS})
