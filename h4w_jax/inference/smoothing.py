"""Temporal smoothing of one person's SMPL-X parameters: One-Euro filters, rotations on SO(3).

The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) is an exponential smoother whose cutoff
frequency rises with the signal's speed: still poses are smoothed hard (jitter goes), fast
motion passes with little lag. Per frame at time t, with dt since the previous frame:

    alpha(fc) = 1 / (1 + 1 / (2 pi fc dt))
    speed     = (x_t - xhat_{t-1}) / dt,  smoothed with alpha(d_cutoff)
    fc        = min_cutoff + beta |speed|
    xhat_t    = xhat_{t-1} + alpha(fc) (x_t - xhat_{t-1})

Rotations (root, 21 body joints, jaw, 2 x 15 finger joints) are filtered on the rotation
manifold, never on raw axis-angle (whose vectors jump at pi and mix badly): the step is
d = log(Rhat_{t-1}^T R_t), the rotation from the previous estimate to the new one in the
tangent space at the previous estimate; speed is |d| / dt (rad/s, per joint, so the filter
does not depend on the axes); the update is the geodesic (slerp) Rhat_t = Rhat_{t-1} exp(alpha d).
Shape, expression, cam_trans and the camera (focal, princpt in original pixels) are vectors,
filtered per component as in the paper.

`strength` scales the whole filter: min_cutoff and beta are divided by it (2: twice as
smooth, 0.5: half); 0 turns smoothing off. Time comes from the frame index and the video's
frame rate, so a track seen again after a gap continues with the right dt.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
from scipy.spatial.transform import Rotation

ROTATION_KEYS = ('root_pose', 'body_pose', 'jaw_pose', 'lhand_pose', 'rhand_pose')


@dataclasses.dataclass(frozen=True)
class OneEuro:
  """min_cutoff (Hz), beta (per unit of speed: rad/s, m/s or px/s), d_cutoff (Hz)."""
  min_cutoff: float
  beta: float
  d_cutoff: float = 1.0


# Defaults chosen on the synthetic clip of bench/smoothing_jitter.py (30 fps, the noise of
# tests/fake_motion.py): a small grid over min_cutoff and beta for rotations and cam_trans,
# picking a setting that cuts the joint acceleration about 4x while the error to the true
# motion also falls (lag stays below the noise removed). The camera's (box jitter in pixels)
# and the expression's were not tuned on data.
DEFAULT_FILTERS = {
    'rotation': OneEuro(min_cutoff=0.5, beta=0.5),
    'cam_trans': OneEuro(min_cutoff=1.0, beta=1.0),
    'camera': OneEuro(min_cutoff=1.0, beta=0.05),
    'shape': OneEuro(min_cutoff=0.3, beta=0.0),
    'expr': OneEuro(min_cutoff=1.5, beta=0.1),
}
VECTOR_GROUPS = {'shape': ('shape',), 'expr': ('expr',), 'cam_trans': ('cam_trans',),
                 'camera': ('focal', 'princpt')}


def alpha(cutoff, dt: float):
  """The exponential smoothing factor of a first-order low-pass at `cutoff` Hz."""
  return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * np.asarray(cutoff) * dt))


@dataclasses.dataclass
class _State:
  t: float
  value: np.ndarray           # vectors: (D,); rotations: scipy Rotation of (J,)
  speed: np.ndarray           # (D,) or (J,): the smoothed speed


def _vector_step(state: Optional[_State], t: float, x: np.ndarray, f: OneEuro) -> _State:
  if state is None:
    return _State(t, x, np.zeros_like(x))
  dt = max(t - state.t, 1e-6)
  step = x - state.value
  speed = state.speed + alpha(f.d_cutoff, dt) * (np.abs(step) / dt - state.speed)
  a = alpha(f.min_cutoff + f.beta * speed, dt)
  return _State(t, state.value + a * step, speed)


def _rotation_step(state: Optional[_State], t: float, r: Rotation, f: OneEuro) -> _State:
  if state is None:
    return _State(t, r, np.zeros(len(r)))
  dt = max(t - state.t, 1e-6)
  step = (state.value.inv() * r).as_rotvec()                  # (J, 3), tangent at the estimate
  speed = state.speed + alpha(f.d_cutoff, dt) * (np.linalg.norm(step, axis=1) / dt - state.speed)
  a = alpha(f.min_cutoff + f.beta * speed, dt)
  return _State(t, state.value * Rotation.from_rotvec(step * a[:, None]), speed)


class ParamSmoother:
  """One person's parameters over time: `smoother(t, params) -> smoothed params`.

  params: {root_pose (3,), body_pose (63,), lhand_pose (45,), rhand_pose (45,), jaw_pose (3,),
  shape, expr, cam_trans, focal (2,), princpt (2,)} (missing keys pass through unchanged);
  t in seconds, increasing. pose_offsets: {key: (3 n,)} added to an axis-angle pose before it
  is a rotation and taken off after: upstream's hand poses are relative to the SMPL-X hand
  mean (added in axis-angle space by the layer), so the demo passes the hand means and the
  finger joints are smoothed as the rotations the mesh shows.
  """

  def __init__(self, strength: float = 1.0, filters: Optional[dict[str, OneEuro]] = None,
               pose_offsets: Optional[dict[str, np.ndarray]] = None):
    if strength < 0:
      raise ValueError(f'strength must be >= 0, got {strength}')
    self.strength = strength
    base = dict(DEFAULT_FILTERS, **(filters or {}))
    self.filters = {} if strength == 0 else {
        k: OneEuro(f.min_cutoff / strength, f.beta / strength, f.d_cutoff)
        for k, f in base.items()}
    self.offsets = {k: np.asarray(v, np.float64) for k, v in (pose_offsets or {}).items()}
    self.states: dict[str, _State] = {}

  def __call__(self, t: float, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not self.filters:
      return dict(params)
    out = dict(params)
    rot_keys = [k for k in ROTATION_KEYS if k in params]
    if rot_keys:
      sizes = [np.size(params[k]) // 3 for k in rot_keys]
      aa = np.concatenate([(np.asarray(params[k], np.float64).reshape(-1)
                            + self.offsets.get(k, 0.0)).reshape(-1, 3) for k in rot_keys])
      state = _rotation_step(self.states.get('rotation'), t, Rotation.from_rotvec(aa),
                             self.filters['rotation'])
      self.states['rotation'] = state
      smoothed = state.value.as_rotvec()
      for k, part in zip(rot_keys, np.split(smoothed, np.cumsum(sizes)[:-1])):
        part = part.reshape(-1) - self.offsets.get(k, 0.0)
        out[k] = part.reshape(np.shape(params[k])).astype(np.asarray(params[k]).dtype)
    for group, keys in VECTOR_GROUPS.items():
      keys = [k for k in keys if k in params]
      if not keys:
        continue
      sizes = [np.size(params[k]) for k in keys]
      x = np.concatenate([np.asarray(params[k], np.float64).reshape(-1) for k in keys])
      state = _vector_step(self.states.get(group), t, x, self.filters[group])
      self.states[group] = state
      for k, part in zip(keys, np.split(state.value, np.cumsum(sizes)[:-1])):
        out[k] = part.reshape(np.shape(params[k])).astype(np.asarray(params[k]).dtype)
    return out


def joint_acceleration(joints: np.ndarray, fps: float) -> float:
  """Mean |second difference| of (T, J, 3) joint positions, in metres / s^2: the jitter figure
  (a still or smoothly moving body scores low, frame-to-frame noise high)."""
  j = np.asarray(joints, np.float64)
  if len(j) < 3:
    raise ValueError(f'need at least 3 frames, got {len(j)}')
  acc = (j[2:] - 2 * j[1:-1] + j[:-2]) * fps * fps
  return float(np.linalg.norm(acc, axis=-1).mean())
