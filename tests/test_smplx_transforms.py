"""smplx_jax under jit, vmap and grad, and the forward's input handling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import smplx_jax


@pytest.fixture(scope='module')
def model(human_model_files):
  return smplx_jax.create(human_model_files, 'smplx', use_pca=False, use_face_contour=True)


def _pose(seed, batch=(3,)):
  rng = np.random.default_rng(seed)
  return dict(betas=rng.standard_normal(batch + (10,)).astype(np.float32),
              body_pose=(0.5 * rng.standard_normal(batch + (63,))).astype(np.float32),
              right_hand_pose=(0.5 * rng.standard_normal(batch + (45,))).astype(np.float32),
              expression=rng.standard_normal(batch + (10,)).astype(np.float32))


def test_jit_matches_eager(model):
  inputs = _pose(0)
  eager = model(**inputs)
  jitted = jax.jit(lambda m, x: m(**x))(model, inputs)
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
    np.testing.assert_allclose(a, b, atol=2e-6)


def test_vmap_over_unbatched_inputs_matches_batched_call(model):
  inputs = _pose(1)
  batched = model(**inputs)
  mapped = jax.vmap(lambda x: model(**x))(inputs)
  assert mapped.vertices.shape == batched.vertices.shape == (3, 10475, 3)
  np.testing.assert_allclose(mapped.vertices, batched.vertices, atol=2e-6)
  np.testing.assert_allclose(mapped.joints, batched.joints, atol=2e-6)


def test_unbatched_and_multi_dim_batches(model):
  single = model(**_pose(2, batch=()))
  assert single.vertices.shape == (10475, 3) and single.joints.shape == (144, 3)
  grid = model(**_pose(2, batch=(2, 3)))
  assert grid.vertices.shape == (2, 3, 10475, 3)
  flat = model(**_pose(2, batch=(6,)))
  np.testing.assert_allclose(grid.vertices.reshape(6, 10475, 3), flat.vertices, atol=1e-6)


def test_shared_betas_broadcast_and_omitted_inputs_are_zero(model):
  betas = np.linspace(-1, 1, 10).astype(np.float32)
  pose = _pose(3)['body_pose']
  shared = model(betas=betas, body_pose=pose)
  explicit = model(betas=np.tile(betas, (3, 1)), body_pose=pose,
                   global_orient=np.zeros((3, 3), np.float32),
                   expression=np.zeros((3, 10), np.float32))
  np.testing.assert_array_equal(shared.vertices, explicit.vertices)
  assert model().vertices.shape == (1, 10475, 3)


def test_pose_as_joint_rows(model):
  pose = _pose(4)['body_pose']
  np.testing.assert_array_equal(model(body_pose=pose).vertices,
                                model(body_pose=pose.reshape(3, 21, 3)).vertices)


def test_bad_inputs_name_the_argument(model):
  with pytest.raises(ValueError, match='body_pose'):   # chex, as every shape check
    model(body_pose=np.zeros((2, 60), np.float32))
  with pytest.raises(ValueError, match='broadcast'):
    model(betas=np.zeros((2, 10)), body_pose=np.zeros((3, 63)))
  with pytest.raises(TypeError, match='hand_pose'):
    model(hand_pose=np.zeros((1, 45)))


@pytest.mark.parametrize('zero_pose', [True, False])
def test_gradients_are_finite(model, zero_pose):
  inputs = {k: jnp.zeros_like(v) if zero_pose else v for k, v in _pose(5).items()}
  inputs.update(global_orient=jnp.zeros((3, 3)), jaw_pose=jnp.zeros((3, 3)),
                left_hand_pose=jnp.zeros((3, 45)))

  def loss(x):
    out = model(**x)
    return jnp.sum(out.vertices ** 2) + jnp.sum(out.joints ** 2)

  grads = jax.jit(jax.grad(loss))(inputs)
  for name, g in grads.items():
    assert np.all(np.isfinite(g)), name
  # The zero pose still moves the mesh: the gradient is not identically zero.
  assert np.abs(grads['body_pose']).max() > 0


def test_rodrigues_gradient_finite_at_exact_cancellation():
  from smplx_jax import lbs
  g = jax.grad(lambda r: lbs.batch_rodrigues(r).sum())(jnp.full((3,), -1e-8))
  assert np.all(np.isfinite(g))


def test_model_is_a_pytree_with_static_settings(model):
  leaves, treedef = jax.tree.flatten(model)
  assert all(hasattr(leaf, 'shape') for leaf in leaves)
  rebuilt = jax.tree.unflatten(treedef, leaves)
  assert rebuilt.use_face_contour and rebuilt.parents == model.parents
