"""h4w_jax.models.geometry and h4w_jax.models.roi_align against upstream goldens.

The goldens (tests/data/geometry_goldens.npz) come from the real upstream
functions (Hand4Whole_RELEASE c949086, torchgeometry 0.1.2, torchvision 0.29.1)
in float32 on CPU; tests/data/README.md says how they were made. Tolerances
are a few float32 ulps above the measured differences (stated per test).
"""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from h4w_jax.common import spaces
from h4w_jax.models import geometry, roi_align as ra

GOLDENS = Path(__file__).parent / 'data' / 'geometry_goldens.npz'

# jitted once: op-by-op dispatch of these small graphs is what costs time here
rot6d_to_axis_angle = jax.jit(geometry.rot6d_to_axis_angle, static_argnames='torch_cross_quirk')
rot6d_to_rotmat = jax.jit(geometry.rot6d_to_rotmat, static_argnames='torch_cross_quirk')


@functools.partial(jax.jit, static_argnums=(3, 4))
def roi_align(images, boxes, box_image_index, output_size, bound):
  """torchvision's flat interface (box k crops image box_image_index[k]) over ours (each
  image's own boxes): the goldens come from torchvision."""
  return ra.roi_align(images[box_image_index], boxes[:, None], output_size, bound)[:, 0]

# rot6d golden rows by `rot6d_kind`: 0 special (identity, near identity,
# degenerate), 1 random 6D, 2 random rotations, 3 at or near 180 degrees
NEAR_180 = 3
# special rows whose result is rounding noise (parallel 6D columns: b2 is the
# normalised rounding error of a2 - (b1.a2) b1); checked for finiteness only
PARALLEL_ROW = 6


@pytest.fixture(scope='module')
def gold():
  with np.load(GOLDENS) as data:
    return {k: data[k] for k in data.files}


def rodrigues(aa):
  """(N, 3) axis-angle -> (N, 3, 3), float64 numpy."""
  aa = np.asarray(aa, np.float64)
  theta = np.linalg.norm(aa, axis=-1)[:, None, None]
  axis = aa / np.maximum(theta[:, :, 0], 1e-300)
  x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
  zero = np.zeros_like(x)
  k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(-1, 3, 3)
  return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * (k @ k)


# ---------------------------------------------------------------------------
# soft-argmax, feature sampling


@pytest.mark.parametrize('name', ['sa3', 'sa3real', 'sa2', 'sa2real'])
def test_soft_argmax_matches_upstream(gold, name):
  fn = geometry.soft_argmax_3d if name.startswith('sa3') else geometry.soft_argmax_2d
  out = jax.jit(fn)(gold[name + '_in'])
  # measured <= 6e-6 on coordinates up to 63 (summation order)
  np.testing.assert_allclose(out, gold[name + '_out'], rtol=1e-6, atol=2e-5)


def test_softmax_volume_matches_position_net_heatmap(gold):
  prob = geometry.softmax_volume(gold['sa3real_in'])
  np.testing.assert_allclose(prob, gold['sa3real_prob'], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(geometry.volume_expectation(prob), gold['sa3real_out'], atol=1e-5)


def test_sample_joint_features_matches_grid_sample(gold):
  out = jax.jit(geometry.sample_joint_features)(gold['sjf_feat_nhwc'], gold['sjf_xy'])
  # points inside, on the border, half a pixel and far outside; measured 5e-7
  np.testing.assert_allclose(out, gold['sjf_out'], atol=2e-6)


def test_sample_joint_features_grad_is_finite(gold):
  feat, xy = gold['sjf_feat_nhwc'], gold['sjf_xy']
  g_feat, g_xy = jax.jit(jax.grad(lambda f, p: jnp.sum(geometry.sample_joint_features(f, p) ** 2),
                                  argnums=(0, 1)))(feat, xy)
  assert np.isfinite(g_feat).all() and np.isfinite(g_xy).all()


# ---------------------------------------------------------------------------
# 6D rotations


def test_rot6d_to_axis_angle_matches_upstream(gold):
  x, ref, kind = gold['rot6d_in'], gold['rot6d_aa'], gold['rot6d_kind']
  out = np.asarray(rot6d_to_axis_angle(x))
  assert np.isfinite(out).all()
  regular = (kind != NEAR_180) & (np.arange(len(x)) != PARALLEL_ROW)
  # measured 5e-7 (upstream float32 vs float64: 5e-7 as well)
  np.testing.assert_allclose(out[regular], ref[regular], atol=1e-5)
  # at 180 degrees (x, y, z) and -(x, y, z) are the same rotation, and the
  # sign follows the rounding of w around 0 (atan2(-s, -c) for w < 0): under
  # jit one exact-180 row comes out negated; compare rotations and angles
  # (measured 5e-7 for both)
  near = kind == NEAR_180
  np.testing.assert_allclose(rodrigues(out[near]), rodrigues(ref[near]), atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(out[near], axis=-1),
                             np.linalg.norm(ref[near], axis=-1), atol=1e-5)
  # identity and scaled identity are exactly 0, as upstream
  np.testing.assert_array_equal(out[:2], 0.0)


def test_rot6d_to_rotmat_is_the_rotation_of_the_axis_angle(gold):
  x, kind = gold['rot6d_in'], gold['rot6d_kind']
  keep = np.arange(len(x)) != PARALLEL_ROW
  x = x[keep & (np.arange(len(x)) != 5)]   # row 5 is the zero 6D vector
  rot = np.asarray(rot6d_to_rotmat(x), np.float64)
  np.testing.assert_allclose(rot.transpose(0, 2, 1) @ rot, np.broadcast_to(np.eye(3), rot.shape),
                             atol=1e-5)
  np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)
  aa = rot6d_to_axis_angle(x)
  np.testing.assert_allclose(rodrigues(aa), rot, atol=2e-5)
  # leading dimensions are kept
  assert rot6d_to_rotmat(x[:12].reshape(2, 2, 3, 6)).shape == (2, 2, 3, 3, 3)
  assert rot6d_to_axis_angle(x[:12].reshape(2, 6, 6)).shape == (2, 6, 3)


def test_torch_cross_quirk_reproduces_upstream_batch_of_three(gold):
  x = gold['rot6d_quirk3_in']                      # exactly 3 rotations
  upstream = gold['rot6d_quirk3_aa']               # upstream's (wrong) result
  right = gold['rot6d_quirk3_aa_batch4']           # same rows converted in a batch of 4
  assert np.abs(upstream - right).max() > 0.1      # the quirk is real (about 2 rad here)
  np.testing.assert_allclose(rot6d_to_axis_angle(x, torch_cross_quirk=True), upstream,
                             atol=1e-5)
  np.testing.assert_allclose(rot6d_to_axis_angle(x), right, atol=1e-5)
  # the flag only changes a call with exactly 3 rotations
  x4 = np.concatenate([x, [[1, 0, 0, 1, 0, 0]]]).astype(np.float32)
  np.testing.assert_array_equal(rot6d_to_axis_angle(x4, torch_cross_quirk=True),
                                rot6d_to_axis_angle(x4))
  np.testing.assert_allclose(rot6d_to_axis_angle(x.reshape(1, 3, 6), torch_cross_quirk=True),
                             upstream[None], atol=1e-5)


def test_rot6d_grad_matches_upstream_autograd(gold):
  w = gold['rot6d_grad_w']
  grad = jax.jit(jax.grad(lambda x: jnp.sum(rot6d_to_axis_angle(x) * w)))(
      gold['rot6d_grad_in'])
  # measured 2e-6 on gradients up to 6
  np.testing.assert_allclose(grad, gold['rot6d_grad'], rtol=1e-5, atol=2e-5)


def test_rot6d_grad_is_finite_where_upstream_is_nan(gold):
  # upstream: NaN for all 6 inputs at the identity (spec quirk Q5)
  assert np.isnan(gold['rot6d_grad_identity_upstream'][0]).all()
  grad_fn = jax.jit(jax.grad(lambda x, w: jnp.sum(rot6d_to_axis_angle(x) * w)))
  grad = np.asarray(grad_fn(jnp.array([[1.0, 0, 0, 1, 0, 0]]), np.ones(3, np.float32)))
  # aa ~ (x5, -x4, x2) to first order around the identity
  np.testing.assert_allclose(grad, [[0, 0, 1, 0, -1, 1]], atol=1e-6)
  # every golden input, identity, degenerate and exact 180 degrees included
  for weights in (np.ones(3, np.float32), np.array([0.3, -1.2, 0.7], np.float32)):
    assert np.isfinite(grad_fn(gold['rot6d_in'], weights)).all()
  jac = jax.jit(jax.jacfwd(geometry.rot6d_to_axis_angle))(jnp.array([1.0, 0, 0, 1, 0, 0]))
  assert np.isfinite(jac).all()


@pytest.mark.parametrize('case', ['identity', 'small', 'random'])
def test_rot6d_grad_matches_finite_differences(case):
  rng = np.random.default_rng({'identity': 0, 'small': 1, 'random': 2}[case])
  if case == 'identity':
    x = np.tile([1.0, 0, 0, 1, 0, 0], (4, 1)) * rng.uniform(0.5, 2.0, (4, 1))
  elif case == 'small':     # about 1e-3 rad: the regular branch next to the series
    x = np.tile([1.0, 0, 0, 1, 0, 0], (4, 1)) + 1e-3 * rng.standard_normal((4, 6))
  else:                     # away from 180 degrees (branch switches there)
    x = np.tile([1.0, 0, 0, 1, 0, 0], (4, 1)) + 0.4 * rng.standard_normal((4, 6))
  w = rng.standard_normal((4, 3))
  with jax.enable_x64(True):
    f = jax.jit(lambda v: jnp.sum(rot6d_to_axis_angle(v) * w))
    grad = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(x)))
    step, fd = 1e-6, np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
      e = np.zeros_like(x)
      e[idx] = step
      fd[idx] = (f(jnp.asarray(x + e)) - f(jnp.asarray(x - e))) / (2 * step)
  assert grad.dtype == np.float64
  np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------
# boxes and camera


@pytest.mark.parametrize('ratio, extension', [(1.0, 2.0), (1.0, 1.5), (0.75, 1.25)])
def test_restore_bbox_matches_upstream(gold, ratio, extension):
  out = jax.jit(geometry.restore_bbox, static_argnums=(2, 3))(
      gold['bbox_center'], gold['bbox_size'], ratio, extension)
  # same operation order: 0 eagerly, 1.5e-5 px under jit (fused multiply-adds;
  # 1 ulp at 200 px); negative sizes give reversed boxes
  np.testing.assert_allclose(out, gold['bbox_out_ar%g_ext%g' % (ratio, extension)], atol=1e-4)


def test_camera_and_projection_match_upstream(gold):
  assert abs(spaces.CAMERA_K - 56.38186222554939) < 1e-12
  trans = jax.jit(geometry.get_camera_trans)(gold['cam_param'])
  np.testing.assert_allclose(trans, gold['cam_trans'], rtol=1e-6, atol=1e-6)
  proj = jax.jit(geometry.project_joints)(gold['proj_joints'], gold['cam_trans'])
  np.testing.assert_allclose(proj, gold['proj_out'], rtol=1e-6, atol=1e-5)


def test_config_constants():
  assert spaces.PRINCPT == (96.0, 128.0)
  assert spaces.INPUT_IMG_SHAPE == (512, 384) and spaces.INPUT_BODY_SHAPE == (256, 192)
  assert spaces.OUTPUT_HM_SHAPE == (8, 8, 6) and spaces.OUTPUT_HAND_HM_SHAPE == (8, 8, 8)
  assert spaces.INPUT_HAND_SHAPE == (256, 256) and spaces.INPUT_FACE_SHAPE == (192, 192)


# ---------------------------------------------------------------------------
# roi_align

SMALL_COUNTS = [(2, 3), (2, 2), (3, 2), (1, 1), (2, 2), (3, 3), (1, 4), (1, 1), (3, 3), (7, 5),
                (1, 1), (1, 1)]


def procedural_image(batch, height, width):
  """The harness's reproducible (B, H, W, 3) float32 image in [0, 1]."""
  b, y, x, c = np.meshgrid(np.arange(batch), np.arange(height), np.arange(width), np.arange(3),
                           indexing='ij')
  v = (y * 37 + x * 91 + c * 53 + b * 11 + (y * x) % 17) % 251
  return v.astype(np.float32) / np.float32(250.0)


def test_sampling_grid_counts(gold):
  boxes = gold['roi_boxes']
  np.testing.assert_array_equal(jax.jit(ra.sampling_grid, static_argnums=1)(boxes, (8, 8)),
                                SMALL_COUNTS)
  assert ra.required_sampling_grid(boxes, (8, 8)) == 7
  assert ra.required_sampling_grid(boxes, (7, 5)) == 8
  assert ra.required_sampling_grid(gold['roi_2x2_box'], (8, 8)) == 2
  assert ra.required_sampling_grid(np.zeros((0, 4), np.float32), (8, 8)) == 1
  assert ra.required_sampling_grid(gold['big_hand_boxes'], spaces.INPUT_HAND_SHAPE) == 3
  assert ra.required_sampling_grid(gold['big_face_boxes'], spaces.INPUT_FACE_SHAPE) == 3


@pytest.mark.parametrize('size', [(8, 8), (7, 5)])
def test_roi_align_matches_torchvision(gold, size):
  bound = ra.required_sampling_grid(gold['roi_boxes'], size)
  fn = roi_align
  out = fn(gold['roi_img_nhwc'], gold['roi_boxes'], gold['roi_bidx'], size, bound)
  ref = gold['roi_out_%dx%d' % size]
  assert out.shape == ref.shape
  # boxes inside, partly and fully outside, < 1 px, reversed, 1..7 samples per
  # bin; measured 5e-7 on values in [0, 1]
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_roi_align_sampling_bound_matters(gold):
  img, box, ref = gold['roi_img_nhwc'][:1], gold['roi_2x2_box'], gold['roi_2x2_out']
  bidx = np.zeros(1, np.int32)
  fn = roi_align
  coarse = fn(img, box, bidx, (8, 8), 1)   # 1 sample per bin where torchvision takes 2x2
  assert np.abs(coarse - ref).max() > 1e-2
  # over the bound: torchvision's numbers with sampling_ratio = bound (documented)
  np.testing.assert_allclose(coarse, gold['roi_2x2_out_sr1'], rtol=1e-5, atol=1e-5)
  for bound in (2, 5):                     # any bound >= the count is exact
    np.testing.assert_allclose(fn(img, box, bidx, (8, 8), bound), ref, rtol=1e-5, atol=1e-5)


def test_roi_align_hand4whole_sizes(gold):
  images = procedural_image(2, *spaces.INPUT_IMG_SHAPE)
  fn = roi_align
  for part, size in (('hand', spaces.INPUT_HAND_SHAPE), ('face', spaces.INPUT_FACE_SHAPE)):
    out = np.asarray(fn(images, gold['big_%s_boxes' % part], gold['big_%s_bidx' % part], size, 3))
    assert out.shape == (len(gold['big_%s_boxes' % part]),) + tuple(size) + (3,)
    # jit may fuse a multiply-add into the sample position: 1 ulp at x ~ 500 is
    # 3e-5 px, and this image jumps by up to 1 between neighbouring pixels,
    # hence atol 5e-5 (measured 1.4e-5 under jit, 0 eagerly)
    np.testing.assert_allclose(out[:, ::5, ::5], gold['big_%s_sub' % part], atol=5e-5)
    np.testing.assert_allclose(out.astype(np.float64).sum((1, 2)), gold['big_%s_sum' % part],
                               rtol=1e-5)


def test_roi_align_crops_each_image_with_its_own_boxes(gold):
  """Hand4Whole's layout: K boxes per image, crops (B, K, ...) without a gather."""
  images = procedural_image(2, *spaces.INPUT_IMG_SHAPE)
  boxes, bidx = gold['big_hand_boxes'], gold['big_hand_bidx']
  per_image = np.stack([boxes[bidx == b] for b in range(2)])          # (2, 2, 4)
  out = jax.jit(ra.roi_align, static_argnums=(2, 3))(images, per_image,
                                                     spaces.INPUT_HAND_SHAPE, 3)
  ref = roi_align(images, boxes, bidx, spaces.INPUT_HAND_SHAPE, 3)
  assert out.shape == (2, 2) + spaces.INPUT_HAND_SHAPE + (3,)
  np.testing.assert_allclose(np.asarray(out).reshape(ref.shape),
                             np.concatenate([ref[bidx == b] for b in range(2)]), atol=1e-6)


def test_roi_align_weights_are_an_average():
  # a constant image stays constant wherever every sample is inside the image
  images = np.full((1, 40, 32, 2), 0.5, np.float32)
  boxes = np.array([[1.0, 2.0, 30.0, 37.0], [5.5, 6.5, 7.0, 8.0]], np.float32)
  out = roi_align(images, boxes, np.zeros(2, np.int32), (6, 4), 8)
  np.testing.assert_allclose(out, 0.5, rtol=1e-6)
  grad = jax.jit(jax.grad(lambda im: jnp.sum(roi_align(im, boxes, np.zeros(2, np.int32), (6, 4), 8))))(
      images)
  np.testing.assert_allclose(grad.sum(), 2 * 6 * 4 * 2, rtol=1e-5)   # each output sums to 1


def test_roi_align_rejects_bad_bound():
  with pytest.raises(ValueError):
    ra.roi_align(np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 1, 4), np.float32), (2, 2), 0)
