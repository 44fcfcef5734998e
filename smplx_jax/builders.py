"""`create(...)`: smplx's constructor, building our pytree models from files.

The file naming, folder rules, defaults and the choice of shape/expression
components follow `smplx.create` and the smplx model constructors
(smplx 0.1.28), so the same call gives the same model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from smplx_jax import model_files
from smplx_jax import vertex_ids as vids
from smplx_jax.body_models import FLAME, MANO, SMPL, SMPLX
from smplx_jax.model_files import ModelFileError

SHAPE_SPACE_DIM = 300       # smplx: SMPL/SMPL-X/FLAME shape components in v1.1 files
EXPRESSION_SPACE_DIM = 100  # smplx: SMPL-X/FLAME expression components
NECK_IDX = {'smplx': 12, 'flame': 0}

# smplx constructor arguments that set up its stateful nn.Parameters; a pure
# model has none, so they change nothing and are accepted for drop-in use.
_STATEFUL_ARGS = {
    'batch_size', 'create_betas', 'create_global_orient', 'create_body_pose',
    'create_left_hand_pose', 'create_right_hand_pose', 'create_hand_pose',
    'create_jaw_pose', 'create_leye_pose', 'create_reye_pose',
    'create_neck_pose', 'create_expression', 'create_transl', 'use_compressed',
}

_DEFAULT_EXT = {'smplx': 'npz', 'smpl': 'pkl', 'mano': 'pkl', 'flame': 'pkl'}
MODEL_TYPES = tuple(_DEFAULT_EXT)


def _model_file(model_path: Path, model_type: str, gender: str, ext: str,
                is_rhand: bool) -> Path:
  if model_type == 'mano':
    return model_path / f"MANO_{'RIGHT' if is_rhand else 'LEFT'}.{ext}"
  prefix = {'smplx': 'SMPLX', 'smpl': 'SMPL', 'flame': 'FLAME'}[model_type]
  return model_path / f'{prefix}_{gender.upper()}.{ext}'


def _num_betas(shapedirs: np.ndarray, requested: int) -> int:
  """smplx.SMPL.__init__: 10-component files cap at 10, v1.1 files at 300."""
  if shapedirs.shape[-1] < SHAPE_SPACE_DIM:
    return min(requested, 10)
  return min(requested, SHAPE_SPACE_DIM)


def _expression_slice(shapedirs: np.ndarray, requested: int) -> slice:
  """smplx.SMPLX/FLAME.__init__: v1.0 files keep expressions in 10:20."""
  if shapedirs.shape[-1] < SHAPE_SPACE_DIM + EXPRESSION_SPACE_DIM:
    return slice(10, 10 + min(requested, 10))
  return slice(SHAPE_SPACE_DIM, SHAPE_SPACE_DIM + min(requested, EXPRESSION_SPACE_DIM))


def _kin_chain(joint: int, parents: tuple[int, ...]) -> tuple[int, ...]:
  chain = []
  while joint != -1:
    chain.append(joint)
    joint = parents[joint]
  return tuple(chain)


def _base_fields(data: dict[str, np.ndarray], num_betas: int, dtype) -> dict[str, Any]:
  shapedirs = data['shapedirs']
  num_pose_basis = data['posedirs'].shape[-1]
  return dict(
      v_template=jnp.asarray(data['v_template'], dtype),
      shapedirs=jnp.asarray(shapedirs[:, :, :_num_betas(shapedirs, num_betas)], dtype),
      posedirs=jnp.asarray(data['posedirs'].reshape(-1, num_pose_basis).T, dtype),
      J_regressor=jnp.asarray(data['J_regressor'], dtype),
      lbs_weights=jnp.asarray(data['weights'], dtype),
      faces=jnp.asarray(data['f'].astype(np.int64), jnp.int32),
      parents=model_files.parents_from_kintree(data['kintree_table']),
  )


def create(model_path: str | os.PathLike, model_type: str = 'smpl', *,
           gender: str = 'neutral', use_pca: bool = True, num_pca_comps: int = 6,
           flat_hand_mean: bool = False, use_face_contour: bool = False,
           num_betas: int = 10, num_expression_coeffs: int = 10,
           is_rhand: bool = True, ext: str | None = None, dtype=jnp.float32,
           precision: str = 'highest', **smplx_only_kwargs):
  """Builds a body model the way `smplx.create` does, with the same defaults.

  Args:
    model_path: a folder (the `model_type` subfolder is appended, as smplx
      does: `DIR/smplx/SMPLX_NEUTRAL.npz`) or a model file, whose name then
      sets the type (`SMPLX_MALE.npz`, `MANO_LEFT.pkl`, ...).
    model_type: 'smplx', 'smpl', 'mano' or 'flame'.
    gender: 'neutral', 'male' or 'female' (picks SMPL*_{GENDER} files).
    use_pca, num_pca_comps, flat_hand_mean: hand pose as PCA coefficients;
      flat_hand_mean=False adds the file's mean hand (smplx's default).
    use_face_contour: SMPL-X/FLAME add the 17 contour landmarks.
    num_betas, num_expression_coeffs: capped as smplx caps them by the file.
    is_rhand: MANO side, when model_path is a folder.
    ext: file extension; smplx's defaults ('npz' for SMPL-X, else 'pkl').
    dtype: jnp.float32 (default) or jnp.float64 (needs jax_enable_x64).
    precision: matmul precision of the forward ('highest' keeps float32
      meshes exact on TPU/GPU, where the default is lower).
    **smplx_only_kwargs: smplx's `batch_size` and `create_*` arguments are
      accepted and ignored (a pure model holds no parameters); others raise.
  """
  unknown = set(smplx_only_kwargs) - _STATEFUL_ARGS
  if unknown:
    raise TypeError(f'create() got unexpected argument(s) {sorted(unknown)}')
  if jnp.dtype(dtype) == jnp.float64 and jnp.asarray(0.0, jnp.float64).dtype != jnp.float64:
    raise ValueError('dtype float64 needs 64-bit JAX: jax.config.update("jax_enable_x64", '
                     'True) or `with jax.enable_x64(True):` around create and forward')
  model_path = Path(model_path)
  model_type = model_type.lower()
  if model_path.is_dir():
    if model_type not in MODEL_TYPES:
      raise ValueError(f'unknown model_type {model_type!r}; expected one of {MODEL_TYPES}')
    folder = model_path / model_type
    ext = ext or _DEFAULT_EXT[model_type]
    path = _model_file(folder, model_type, gender, ext, is_rhand)
  elif model_path.is_file():
    path = model_path
    folder = model_path.parent
    model_type = model_path.name.split('_')[0].lower()
    if model_type not in MODEL_TYPES:
      raise ValueError(f'{model_path}: cannot tell the model type from the file name '
                       f'(expected it to start with one of {[t.upper() for t in MODEL_TYPES]}_)')
    if model_type == 'mano':
      is_rhand = 'RIGHT' in model_path.name
  else:
    raise ModelFileError(f'{model_path}: no such file or folder. Run '
                         f'`python -m smplx_jax.check {model_path}` to see which '
                         'body-model files are expected where.')
  if not path.exists():
    raise ModelFileError(f'{path}: file not found. Run `python -m smplx_jax.check '
                         f'{folder.parent if model_path.is_dir() else folder}` to see '
                         'which body-model files are expected where.')
  data = model_files.load(path, model_type)
  try:
    base = _base_fields(data, num_betas, dtype)
  except ModelFileError as e:   # a kinematic tree that is not one
    raise ModelFileError(f'{path}: {e}') from None
  common = dict(base, gender=gender, precision=precision)

  if model_type == 'smpl':
    return SMPL(**common, extra_joint_vertex_ids=vids.SMPL_EXTRA_JOINTS)

  if model_type == 'mano':
    mean = np.zeros(45) if flat_hand_mean else data['hands_mean']
    pca = use_pca and num_pca_comps != 45  # smplx: 45 components = full pose
    return MANO(**common, hand_mean=jnp.asarray(mean, dtype),
                hand_components=(jnp.asarray(data['hands_components'][:num_pca_comps], dtype)
                                 if pca else None),
                is_rhand=is_rhand, use_pca=pca, num_pca_comps=num_pca_comps,
                flat_hand_mean=flat_hand_mean)

  shapedirs = data['shapedirs']
  expr_dirs = jnp.asarray(shapedirs[:, :, _expression_slice(shapedirs, num_expression_coeffs)], dtype)
  neck_kin_chain = _kin_chain(NECK_IDX[model_type], base['parents'])

  if model_type == 'smplx':
    means = [np.zeros(45) if flat_hand_mean else data[k] for k in ('hands_meanl', 'hands_meanr')]
    pose_mean = np.concatenate([np.zeros(66 + 9), *means])
    contour = {}
    if use_face_contour:
      contour = dict(
          dynamic_lmk_faces_idx=jnp.asarray(data['dynamic_lmk_faces_idx'], jnp.int32),
          dynamic_lmk_bary_coords=jnp.asarray(data['dynamic_lmk_bary_coords'], dtype))
    components = {}
    if use_pca:
      components = dict(
          left_hand_components=jnp.asarray(data['hands_componentsl'][:num_pca_comps], dtype),
          right_hand_components=jnp.asarray(data['hands_componentsr'][:num_pca_comps], dtype))
    return SMPLX(**common, extra_joint_vertex_ids=vids.SMPLX_EXTRA_JOINTS,
                 expr_dirs=expr_dirs, pose_mean=jnp.asarray(pose_mean, dtype),
                 lmk_faces_idx=jnp.asarray(data['lmk_faces_idx'], jnp.int32),
                 lmk_bary_coords=jnp.asarray(data['lmk_bary_coords'], dtype),
                 use_pca=use_pca, num_pca_comps=num_pca_comps,
                 flat_hand_mean=flat_hand_mean, use_face_contour=use_face_contour,
                 neck_kin_chain=neck_kin_chain, **contour, **components)

  # FLAME: landmark embeddings live beside the model file.
  static = model_files.load(folder / 'flame_static_embedding.pkl', 'flame_static_embedding')
  contour = {}
  if use_face_contour:
    dynamic = model_files.load(folder / 'flame_dynamic_embedding.npy', 'flame_dynamic_embedding')
    contour = dict(
        dynamic_lmk_faces_idx=jnp.asarray(dynamic['lmk_face_idx'], jnp.int32),
        dynamic_lmk_bary_coords=jnp.asarray(dynamic['lmk_b_coords'], dtype))
  return FLAME(**common, expr_dirs=expr_dirs,
               lmk_faces_idx=jnp.asarray(static['lmk_face_idx'].astype(np.int64), jnp.int32),
               lmk_bary_coords=jnp.asarray(static['lmk_b_coords'], dtype),
               use_face_contour=use_face_contour, neck_kin_chain=neck_kin_chain,
               **contour)
