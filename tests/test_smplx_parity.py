"""Parity with the PyPI `smplx` package (0.1.28) on synthetic model files.

smplx reads the plain-numpy copies of the files; smplx_jax reads the copies
in the official format (chumpy objects, sparse regressors), written from the
same seed. Tolerance: 1e-5 m on vertices and joints in float32 (measured
errors are ~3e-7 m, float32 rounding).
"""

import dataclasses
import itertools

import chex
import jax
import numpy as np
import pytest
import smplx
import torch

import smplx_jax

TOL_M = 1e-5
BATCH = 5


def _inputs(rng, widths):
  out = {}
  for name, width in widths.items():
    scale = 1.0 if name in ('betas', 'expression') else 0.5
    out[name] = (rng.standard_normal((BATCH, width)) * scale).astype(np.float32)
  return out


def _compare(torch_model, jax_model, inputs, expect_joints):
  with torch.no_grad():
    ref = torch_model(**{k: torch.from_numpy(v) for k, v in inputs.items()},
                      return_full_pose=True)
  out = smplx_jax.forward(jax_model, **inputs)
  assert out.joints.shape == (BATCH, expect_joints, 3)
  theirs = {k: getattr(ref, k).numpy() for k in ('vertices', 'joints', 'full_pose')
            if getattr(ref, k) is not None}
  ours = {k: np.asarray(getattr(out, k)) for k in theirs}
  pose = {k: ours.pop(k) for k in ('full_pose',) if k in ours}
  chex.assert_trees_all_close(ours, {k: theirs[k] for k in ours}, atol=TOL_M, rtol=0)
  chex.assert_trees_all_close(pose, {k: theirs[k] for k in pose}, atol=1e-6, rtol=0)


SMPLX_GRID = list(itertools.product(('neutral', 'male', 'female'), (True, False),
                                    (True, False), (True, False)))


@pytest.mark.parametrize('gender,use_pca,flat_hand_mean,use_face_contour', SMPLX_GRID)
def test_smplx(human_model_files, clean_human_model_files, gender, use_pca,
               flat_hand_mean, use_face_contour):
  kwargs = dict(gender=gender, use_pca=use_pca, flat_hand_mean=flat_hand_mean,
                use_face_contour=use_face_contour)
  ref = smplx.create(str(clean_human_model_files), 'smplx', batch_size=BATCH, **kwargs)
  model = smplx_jax.create(human_model_files, 'smplx', **kwargs)
  hand = 6 if use_pca else 45
  rng = np.random.default_rng(len(gender) * 8 + use_pca * 4 + flat_hand_mean * 2 + use_face_contour)
  inputs = _inputs(rng, dict(betas=10, global_orient=3, body_pose=63, left_hand_pose=hand,
                             right_hand_pose=hand, jaw_pose=3, leye_pose=3, reye_pose=3,
                             expression=10, transl=3))
  _compare(ref, model, inputs, 144 if use_face_contour else 127)


def test_smplx_pkl_and_more_components(human_model_files, clean_human_model_files):
  kwargs = dict(ext='pkl', use_pca=True, num_pca_comps=12, num_betas=16,
                num_expression_coeffs=20, use_face_contour=True)
  ref = smplx.create(str(clean_human_model_files), 'smplx', batch_size=BATCH, **kwargs)
  model = smplx_jax.create(human_model_files, 'smplx', **kwargs)
  assert (model.num_betas, model.num_expression_coeffs) == (16, 20)
  inputs = _inputs(np.random.default_rng(7), dict(
      betas=16, global_orient=3, body_pose=63, left_hand_pose=12, right_hand_pose=12,
      jaw_pose=3, expression=20))
  _compare(ref, model, inputs, 144)


def test_smplx_head_turn_selects_contour_rows(human_model_files, clean_human_model_files):
  """Yaws across the whole contour table (-60..60 degrees), rows 0..78."""
  ref = smplx.create(str(clean_human_model_files), 'smplx', batch_size=BATCH,
                     use_face_contour=True)
  model = smplx_jax.create(human_model_files, 'smplx', use_face_contour=True)
  yaw = np.radians(np.linspace(-60, 60, BATCH)).astype(np.float32)
  global_orient = np.stack([np.zeros_like(yaw), yaw, np.zeros_like(yaw)], axis=1)
  _compare(ref, model, {'global_orient': global_orient}, 144)


@pytest.mark.parametrize('gender', ['neutral', 'male', 'female'])
def test_smpl(human_model_files, clean_human_model_files, gender):
  ref = smplx.create(str(clean_human_model_files), 'smpl', gender=gender, batch_size=BATCH)
  model = smplx_jax.create(human_model_files, 'smpl', gender=gender)
  inputs = _inputs(np.random.default_rng(3), dict(betas=10, global_orient=3, body_pose=69,
                                                  transl=3))
  _compare(ref, model, inputs, 45)


@pytest.mark.parametrize('is_rhand,use_pca,flat_hand_mean',
                         list(itertools.product((True, False), repeat=3)))
def test_mano(human_model_files, clean_human_model_files, is_rhand, use_pca, flat_hand_mean):
  kwargs = dict(is_rhand=is_rhand, use_pca=use_pca, flat_hand_mean=flat_hand_mean)
  ref = smplx.create(str(clean_human_model_files), 'mano', batch_size=BATCH, **kwargs)
  model = smplx_jax.create(human_model_files, 'mano', **kwargs)
  inputs = _inputs(np.random.default_rng(4), dict(
      betas=10, global_orient=3, hand_pose=6 if use_pca else 45, transl=3))
  _compare(ref, model, inputs, 16)


def test_mano_from_file_path_sets_side(human_model_files):
  left = smplx_jax.create(human_model_files / 'mano' / 'MANO_LEFT.pkl', 'mano')
  right = smplx_jax.create(human_model_files / 'mano' / 'MANO_RIGHT.pkl', 'mano')
  assert (left.is_rhand, right.is_rhand) == (False, True)


@pytest.mark.parametrize('use_face_contour', [True, False])
def test_flame(human_model_files, clean_human_model_files, use_face_contour):
  ref = smplx.create(str(clean_human_model_files), 'flame', batch_size=BATCH,
                     use_face_contour=use_face_contour)
  model = smplx_jax.create(human_model_files, 'flame', use_face_contour=use_face_contour)
  inputs = _inputs(np.random.default_rng(5), dict(
      betas=10, global_orient=3, neck_pose=3, jaw_pose=3, leye_pose=3, reye_pose=3,
      expression=10, transl=3))
  _compare(ref, model, inputs, 73 if use_face_contour else 56)


def test_float64_matches_smplx_float64(human_model_files, clean_human_model_files):
  """In float64 both sides agree to ~1e-15 m: the float32 error is rounding.

  smplx rounds the file's template, blend shapes, regressor and skinning
  weights through float32 (`to_np`) even for dtype float64; we round the same
  arrays here so both sides start from the same numbers.
  """
  ref = smplx.create(str(clean_human_model_files), 'smplx', batch_size=BATCH,
                     use_pca=False, use_face_contour=True, dtype=torch.float64)
  inputs = _inputs(np.random.default_rng(6), dict(
      betas=10, global_orient=3, body_pose=63, left_hand_pose=45, right_hand_pose=45,
      expression=10))
  with jax.enable_x64(True):
    model = smplx_jax.create(human_model_files, 'smplx', use_pca=False,
                             use_face_contour=True, dtype='float64')
    model = dataclasses.replace(model, **{
        name: getattr(model, name).astype(np.float32).astype(np.float64)
        for name in ('v_template', 'shapedirs', 'expr_dirs', 'posedirs', 'J_regressor',
                     'lbs_weights')})
    out = model(**{k: v.astype(np.float64) for k, v in inputs.items()})
    assert out.vertices.dtype == np.float64
    with torch.no_grad():
      theirs = ref(**{k: torch.from_numpy(v.astype(np.float64)) for k, v in inputs.items()})
    assert np.abs(theirs.vertices.numpy() - np.asarray(out.vertices)).max() < 1e-10
    assert np.abs(theirs.joints.numpy() - np.asarray(out.joints)).max() < 1e-10


def test_gradients_match_torch_autograd(human_model_files, clean_human_model_files):
  """d(loss)/d(inputs) against torch autograd on the same loss."""
  ref = smplx.create(str(clean_human_model_files), 'smplx', batch_size=BATCH,
                     use_pca=False, use_face_contour=True)
  model = smplx_jax.create(human_model_files, 'smplx', use_pca=False, use_face_contour=True)
  inputs = _inputs(np.random.default_rng(8), dict(
      betas=10, global_orient=3, body_pose=63, left_hand_pose=45, right_hand_pose=45,
      jaw_pose=3, expression=10))
  target = np.random.default_rng(9).standard_normal((1, 144, 3)).astype(np.float32)

  torch_inputs = {k: torch.from_numpy(v).requires_grad_() for k, v in inputs.items()}
  out = ref(**torch_inputs)
  loss = ((out.joints - torch.from_numpy(target)) ** 2).sum() + (out.vertices ** 2).mean()
  loss.backward()

  def jax_loss(x):
    o = model(**x)
    return ((o.joints - target) ** 2).sum() + (o.vertices ** 2).mean()

  grads = jax.jit(jax.grad(jax_loss))(inputs)
  for name, g in grads.items():
    theirs = torch_inputs[name].grad.numpy()
    scale = np.abs(theirs).max()
    assert np.abs(np.asarray(g) - theirs).max() <= 1e-4 * scale + 1e-6, name
