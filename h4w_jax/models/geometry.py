"""Hand4Whole's primitive geometric ops in JAX: soft-argmax, joint feature
sampling, 6D rotations, box restoration and the virtual camera.

Every function takes and returns arrays with static shapes and works under
jit, vmap and grad. Each one names the upstream function whose numbers it
reproduces (Hand4Whole_RELEASE, `main` branch, commit c949086). Layouts are
channels-last where upstream is NCHW. Coordinates are (x, y[, z]) in
pixel-index units of the named space: integer x is the centre of column x.

The spaces' sizes and the camera are upstream's `main/config.py` values, kept
in `h4w_jax.common.spaces`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from h4w_jax.common.spaces import CAMERA_K, FOCAL, INPUT_BODY_SHAPE, OUTPUT_HM_SHAPE, PRINCPT

# upstream F.normalize eps and torchgeometry rotation_matrix_to_quaternion eps.
_NORMALIZE_EPS = 1e-12
_QUATERNION_EPS = 1e-6
# Below this |q_xyz|^2 the angle-axis scale 2*atan2(s, c)/s is replaced by its
# series 2/c for the gradient only (see _quaternion_to_axis_angle).
_TINY_SIN2 = 1e-30


# ---------------------------------------------------------------------------
# Soft-argmax


def softmax_volume(heatmap):
  """Softmax over all spatial cells of each joint's heatmap together.

  upstream: common/nets/module.py PositionNet.forward `joint_hm` (and the first
  step of soft_argmax_2d / soft_argmax_3d in common/utils/transforms.py).

  Args:
    heatmap: (N, J, *S) logits, S = (D, H, W) or (H, W).
  Returns:
    (N, J, *S) probabilities that sum to 1 over S.
  """
  n, j = heatmap.shape[:2]
  flat = heatmap.reshape(n, j, -1)
  return jax.nn.softmax(flat, axis=-1).reshape(heatmap.shape)


def volume_expectation(prob):
  """Expected cell index of each joint's probability volume.

  upstream: common/utils/transforms.py soft_argmax_3d / soft_argmax_2d after the
  softmax: marginalise onto each axis, then take the dot product with arange.

  Args:
    prob: (N, J, *S) probabilities, S = (D, H, W) or (H, W).
  Returns:
    (N, J, len(S)) coordinates ordered fastest axis first, i.e. (x, y[, z]), in
    index units (0 .. size - 1).
  """
  spatial = tuple(range(2, prob.ndim))
  coords = []
  for axis in reversed(spatial):   # W first: the output is (x, y, z)
    others = tuple(a for a in spatial if a != axis)
    marginal = jnp.sum(prob, axis=others)
    index = jnp.arange(prob.shape[axis], dtype=prob.dtype)
    coords.append(jnp.sum(marginal * index, axis=-1))
  return jnp.stack(coords, axis=-1)


def soft_argmax_3d(heatmap):
  """upstream: common/utils/transforms.py soft_argmax_3d.

  Args:
    heatmap: (N, J, D, H, W) logits.
  Returns:
    (N, J, 3) (x, y, z) in voxel-index units. Use softmax_volume for
    PositionNet's `joint_hm`; under jit XLA shares the two softmaxes.
  """
  return volume_expectation(softmax_volume(heatmap))


def soft_argmax_2d(heatmap):
  """upstream: common/utils/transforms.py soft_argmax_2d.

  Args:
    heatmap: (N, J, H, W) logits.
  Returns:
    (N, J, 2) (x, y) in pixel-index units.
  """
  return volume_expectation(softmax_volume(heatmap))


# ---------------------------------------------------------------------------
# Feature sampling


def sample_joint_features(feat, xy):
  """Bilinear features at pixel-index points, zero outside the map.

  upstream: common/utils/transforms.py sample_joint_features, i.e.
  F.grid_sample(mode='bilinear', padding_mode='zeros', align_corners=True) on
  the grid x / (W - 1) * 2 - 1. With align_corners=True that grid maps back to
  the pixel index x itself, so the points are used directly (the round trip in
  torch moves them by about 1 ulp only). Each of the 4 taps that lies outside
  [0, W - 1] x [0, H - 1] contributes 0, so the value fades to 0 within one
  pixel outside the map. H and W must be > 1 (upstream divides by W - 1).

  Args:
    feat: (N, H, W, C) channels-last feature map.
    xy: (N, J, 2) points (x, y) in pixel-index units of feat.
  Returns:
    (N, J, C).
  """
  n, h, w, c = feat.shape
  x, y = xy[..., 0], xy[..., 1]
  x0 = jnp.floor(x)
  y0 = jnp.floor(y)
  x1 = x0 + 1
  y1 = y0 + 1
  flat = feat.reshape(n, h * w, c)

  def tap(tx, ty, weight):
    valid = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    # clip before the int cast: far-away (or huge) points must stay gatherable
    ix = jnp.clip(tx, 0, w - 1).astype(jnp.int32)
    iy = jnp.clip(ty, 0, h - 1).astype(jnp.int32)
    values = jnp.take_along_axis(flat, (iy * w + ix)[..., None], axis=1)
    return jnp.where(valid, weight, 0.0)[..., None] * values

  # torch's tap weights and summation order: nw, ne, sw, se
  out = tap(x0, y0, (x1 - x) * (y1 - y))
  out = out + tap(x1, y0, (x - x0) * (y1 - y))
  out = out + tap(x0, y1, (x1 - x) * (y - y0))
  out = out + tap(x1, y1, (x - x0) * (y - y0))
  return out


# ---------------------------------------------------------------------------
# 6D rotations


def _safe_normalize(v, eps=_NORMALIZE_EPS):
  """v / max(|v|, eps) along the last axis, with a finite gradient at v = 0.

  upstream: torch.nn.functional.normalize(v, dim=1) as called in
  rot6d_to_axis_angle. The double where keeps sqrt's infinite slope at 0 out
  of the backward pass; |v| <= eps is the same test as |v|^2 <= eps^2.
  """
  sq = jnp.sum(v * v, axis=-1, keepdims=True)
  big = sq > eps * eps
  norm = jnp.where(big, jnp.sqrt(jnp.where(big, sq, 1.0)), eps)
  return v / norm


def rot6d_to_rotmat(x, torch_cross_quirk: bool = False):
  """Gram-Schmidt 6D representation to a 3x3 matrix.

  upstream: common/utils/transforms.py rot6d_to_axis_angle, up to the matrix.
  The 6 numbers are interleaved: x.view(-1, 3, 2) makes the first column
  a1 = (x0, x2, x4) and the second a2 = (x1, x3, x5), so the identity is
  [1, 0, 0, 1, 0, 0]. b1 = normalize(a1), b2 = normalize(a2 - (b1.a2) b1),
  b3 = b1 x b2, and R = [b1 b2 b3] (columns).

  torch_cross_quirk: upstream calls torch.cross(b1, b2) without `dim`, which
  crosses along the first axis of size 3. For the (N, 3) vectors that is the
  last axis, except when exactly N = 3 rotations are converted in one call:
  then torch crosses along the batch axis and b3 is wrong (spec quirk Q3).
  We chose False by default, i.e. the mathematically right cross along the
  last axis: it equals upstream for every N != 3, so converted weights are
  unaffected, and only a batch of exactly 3 rotations (root or jaw pose with
  batch size 3) would differ. True reproduces upstream exactly, for bug
  parity: the rotations are flattened to (N, 6) as upstream does
  (`reshape(-1, 6)`), and N = 3 crosses along that axis. The quirk depends
  on the shape seen at the call, so it is not vmap-invariant, as upstream.

  Args:
    x: (..., 6) 6D rotations.
    torch_cross_quirk: reproduce upstream's batch-of-3 cross (see above).
  Returns:
    (..., 3, 3) rotation matrices (orthonormal unless the quirk applies).
  """
  lead = x.shape[:-1]
  x = x.reshape(-1, 6)
  a1 = x[:, 0::2]
  a2 = x[:, 1::2]
  b1 = _safe_normalize(a1)
  dot = jnp.sum(b1 * a2, axis=-1, keepdims=True)
  b2 = _safe_normalize(a2 - dot * b1)
  axis = 0 if (torch_cross_quirk and x.shape[0] == 3) else -1
  b3 = jnp.cross(b1, b2, axis=axis)
  rotmat = jnp.stack((b1, b2, b3), axis=-1)
  return rotmat.reshape(lead + (3, 3))


def _rotmat_to_quaternion(rotmat, eps=_QUATERNION_EPS):
  """(..., 3, 3) -> (..., 4) quaternion (w, x, y, z).

  upstream: torchgeometry 0.1.2 rotation_matrix_to_quaternion (the `1 - mask`
  on bools read as logical not, as upstream's README patch makes it). Its
  branch masks are kept as they are, not replaced by a better-conditioned
  choice: the branch decides the sign of the quaternion, and so the sign of
  the axis-angle near 180 degrees. The chosen t is >= 1 - eps in every branch
  (the masks guarantee it, even for a non-orthonormal matrix), so sqrt(t) and
  its gradient are finite; no guard is needed here.
  """
  r = rotmat
  r00, r01, r02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
  r10, r11, r12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
  r20, r21, r22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
  mask_d2 = r22 < eps
  mask_d0_d1 = r00 > r11
  mask_d0_nd1 = r00 < -r11
  # torchgeometry works on the transpose; these are its terms in R's indices,
  # with the same operand order (subtraction is not commutative in floats).
  t0 = 1 + r00 - r11 - r22
  q0 = jnp.stack([r21 - r12, t0, r10 + r01, r02 + r20], axis=-1)
  t1 = 1 - r00 + r11 - r22
  q1 = jnp.stack([r02 - r20, r10 + r01, t1, r21 + r12], axis=-1)
  t2 = 1 - r00 - r11 + r22
  q2 = jnp.stack([r10 - r01, r02 + r20, r21 + r12, t2], axis=-1)
  t3 = 1 + r00 + r11 + r22
  q3 = jnp.stack([t3, r21 - r12, r02 - r20, r10 - r01], axis=-1)
  # upstream sums mask-weighted candidates; the masks are exclusive and
  # exhaustive, so selecting is the same number (and keeps NaNs local).
  use0 = mask_d2 & mask_d0_d1
  use1 = mask_d2 & ~mask_d0_d1
  use2 = ~mask_d2 & mask_d0_nd1
  q = jnp.where(use0[..., None], q0,
                jnp.where(use1[..., None], q1, jnp.where(use2[..., None], q2, q3)))
  t = jnp.where(use0, t0, jnp.where(use1, t1, jnp.where(use2, t2, t3)))
  return q / jnp.sqrt(t)[..., None] * 0.5


def _quaternion_to_axis_angle(q):
  """(..., 4) (w, x, y, z) -> (..., 3) axis-angle, angle in [0, pi].

  upstream: torchgeometry 0.1.2 quaternion_to_angle_axis. Forward values are
  upstream's: k = 2 * atan2(s, c) / s (with the atan2(-s, -c) form for c < 0)
  where s^2 = x^2 + y^2 + z^2 > 0, and k = 2 at s = 0. For the gradient,
  where s^2 < 1e-30 (which includes the identity, where torch's gradient is
  NaN) k is the series 2 / c, and the forward is set back to upstream's
  number with a stop_gradient'ed correction (exact: the two differ by a few
  ulp, so the subtraction and the re-addition are exact). c > 0.49 there,
  because |q| >= 0.5 and a small s leaves the weight on w.
  """
  w, xyz = q[..., 0], q[..., 1:]
  # left-to-right sum, as upstream's q1 * q1 + q2 * q2 + q3 * q3
  sin2 = xyz[..., 0] * xyz[..., 0] + xyz[..., 1] * xyz[..., 1] + xyz[..., 2] * xyz[..., 2]
  tiny = sin2 < _TINY_SIN2

  def scale(s, c):
    two_theta = 2.0 * jnp.where(c < 0.0, jnp.arctan2(-s, -c), jnp.arctan2(s, c))
    return two_theta / s

  # regular branch: s kept away from 0 where it is not selected (double where)
  s_reg = jnp.sqrt(jnp.where(tiny, 1.0, sin2))
  k_reg = scale(s_reg, w)
  # tiny branch: series for the gradient, upstream's value for the forward
  c_tiny = jnp.where(tiny, w, 1.0)
  k_series = 2.0 / c_tiny
  sin2_c = jax.lax.stop_gradient(sin2)
  s_up = jnp.sqrt(jnp.where(sin2_c > 0.0, sin2_c, 1.0))
  k_up = jnp.where(sin2_c > 0.0, scale(s_up, jax.lax.stop_gradient(c_tiny)), 2.0)
  k_tiny = k_series + jax.lax.stop_gradient(k_up - k_series)
  k = jnp.where(tiny, k_tiny, k_reg)
  return xyz * k[..., None]


def rotmat_to_axis_angle(rotmat):
  """upstream: torchgeometry 0.1.2 rotation_matrix_to_angle_axis (+ the NaN->0
  of rot6d_to_axis_angle).

  Args:
    rotmat: (..., 3, 3) rotation matrices.
  Returns:
    (..., 3) axis-angle in radians, angle in [0, pi]; NaN entries become 0 as
    upstream's `axis_angle[isnan(axis_angle)] = 0`. Finite gradient everywhere
    for finite input, the identity included.
  """
  aa = _quaternion_to_axis_angle(_rotmat_to_quaternion(rotmat))
  return jnp.where(jnp.isnan(aa), 0.0, aa)


def rot6d_to_axis_angle(x, torch_cross_quirk: bool = False):
  """upstream: common/utils/transforms.py rot6d_to_axis_angle.

  6D (interleaved, see rot6d_to_rotmat) -> rotation matrix ->
  torchgeometry 0.1.2 rotation_matrix_to_angle_axis -> NaN to 0. Forward
  values are upstream's; unlike upstream the gradient is finite everywhere,
  the identity [1, 0, 0, 1, 0, 0] and degenerate (zero or parallel) columns
  included. At 180 degrees (x, y, z) and -(x, y, z) are the same rotation,
  and the sign follows the rounding of w around 0 (and upstream's branch
  masks), so tiny input changes or rounding differences flip it. Under jit
  one exact-180 golden row comes out negated relative to torch.

  Args:
    x: (..., 6) 6D rotations.
    torch_cross_quirk: default False, the right cross product. True reproduces
      upstream's torch.cross bug for a call with exactly 3 rotations; see
      rot6d_to_rotmat for the decision.
  Returns:
    (..., 3) axis-angle in radians.
  """
  return rotmat_to_axis_angle(rot6d_to_rotmat(x, torch_cross_quirk))


# ---------------------------------------------------------------------------
# Boxes and camera


def restore_bbox(center, size, aspect_ratio: float, extension: float):
  """Predicted box centre and size -> aspect-corrected, extended xyxy box.

  upstream: common/utils/transforms.py restore_bbox. Corners center -/+ size/2
  in body-hm units (x in [0, 6), y in [0, 8)) are scaled to input_body pixels
  (x / 6 * 192, y / 8 * 256). The shorter side grows to the aspect ratio
  (w / h), then both sides are multiplied by the extension. No abs or clamp:
  a negative predicted size gives a reversed box, as upstream (quirk Q8).
  Hand4Whole uses (1.0, 2.0) for hands and (1.0, 1.5) for the face; callers
  stop the gradient, as upstream's .detach().

  Args:
    center: (B, 2) box centre (x, y), body-hm units.
    size: (B, 2) box size (w, h), body-hm units, may be negative.
    aspect_ratio: target w / h.
    extension: scale applied to both sides.
  Returns:
    (B, 4) boxes (x1, y1, x2, y2) in input_body pixels (192 x 256).
  """
  half = size / 2.0
  lo = center - half
  hi = center + half
  sx = lambda v: v / OUTPUT_HM_SHAPE[2] * INPUT_BODY_SHAPE[1]
  sy = lambda v: v / OUTPUT_HM_SHAPE[1] * INPUT_BODY_SHAPE[0]
  x1, y1, x2, y2 = sx(lo[:, 0]), sy(lo[:, 1]), sx(hi[:, 0]), sy(hi[:, 1])
  w = x2 - x1
  h = y2 - y1
  cx = x1 + w / 2.0
  cy = y1 + h / 2.0
  # both masks come from the unmodified w and h, as upstream
  wider = w > aspect_ratio * h
  taller = w < aspect_ratio * h
  h, w = jnp.where(wider, w / aspect_ratio, h), jnp.where(taller, h * aspect_ratio, w)
  w = w * extension
  h = h * extension
  x1 = cx - w / 2.0
  y1 = cy - h / 2.0
  # upstream rebuilds x2 as width + x1 (not cx + w/2); same order here
  return jnp.stack([x1, y1, w + x1, h + y1], axis=-1)


def get_camera_trans(cam_param, k: float = CAMERA_K):
  """upstream: main/model.py Model.get_camera_trans (both branches).

  Args:
    cam_param: (B, 3) raw network output (tx, ty, depth logit).
    k: sqrt(fx * fy * camera_3d_size^2 / (H * W)) of the input: CAMERA_K
      (whole body, 2.5 m over 256x192) or spaces.HAND_CAMERA_K (the hand-only
      model, 0.4 m over 256x256); upstream stores it as float32.
  Returns:
    (B, 3) camera translation (tx, ty, k * sigmoid(logit)) in metres.
  """
  k = jnp.asarray(k, jnp.float32).astype(cam_param.dtype)
  t_z = k * jax.nn.sigmoid(cam_param[:, 2])
  return jnp.concatenate([cam_param[:, :2], t_z[:, None]], axis=1)


def project_joints(joints_cam, cam_trans, focal=FOCAL, princpt=PRINCPT,
                   input_shape=INPUT_BODY_SHAPE, hm_shape=OUTPUT_HM_SHAPE):
  """Perspective projection of camera-space joints into heatmap units.

  upstream: main/model.py Model.get_coord, the joint_proj part:
  x = (X + tx) / (Z + tz + 1e-4) * fx + cx, then x / W * hm_W (and y / H * hm_H).
  (For AGORA-only training upstream detaches X, Y, Z here: pass
  stop_gradient(joints_cam) for that.) The defaults are the whole-body
  model's spaces (x / 192 * 6, y / 256 * 8); the hand-only model passes the
  spaces.HAND_* ones (x / 256 * 8).

  Args:
    joints_cam: (B, J, 3) model-space joints in metres (no translation).
    cam_trans: (B, 3) camera translation from get_camera_trans.
    focal, princpt: the virtual camera, input pixels.
    input_shape: (H, W) of the input; hm_shape: (D, H, W) of the heatmap.
  Returns:
    (B, J, 2) (x, y) in heatmap units (x in [0, hm_W) when inside).
  """
  t = cam_trans[:, None, :]
  depth = joints_cam[..., 2] + t[..., 2] + 1e-4
  x = (joints_cam[..., 0] + t[..., 0]) / depth * focal[0] + princpt[0]
  y = (joints_cam[..., 1] + t[..., 1]) / depth * focal[1] + princpt[1]
  x = x / input_shape[1] * hm_shape[2]
  y = y / input_shape[0] * hm_shape[1]
  return jnp.stack([x, y], axis=-1)
