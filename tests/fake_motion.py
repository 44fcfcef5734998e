"""A synthetic motion clip and its jittery 'predictions', for the smoothing test and
bench/smoothing_jitter.py.

Truth: a person waving both arms and nodding (shoulders, elbows and neck on sines of
0.5-1.2 Hz), turning slowly (root yaw, 20 degrees over the clip) and walking sideways at
0.5 m/s, 4 m from the camera, hands in upstream's mean pose. Predictions: the truth plus
independent per-frame noise, of the size a single-frame regressor shows between neighbouring
frames: every joint rotation turned by a random rotation (each axis-angle component normal,
NOISE['rotation'] rad), cam_trans, shape and expression plus normal noise.
"""

import numpy as np
from scipy.spatial.transform import Rotation

NOISE = {'rotation': 0.05, 'cam_trans': np.array([0.01, 0.01, 0.05]), 'shape': 0.05,
         'expr': 0.1}
# SMPL-X body joints (1-based in the 55-joint list; index into body_pose = joint - 1).
NECK, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW = 12, 16, 17, 18, 19


def truth(num_frames: int, fps: float) -> dict[str, np.ndarray]:
  t = np.arange(num_frames) / fps
  body = np.zeros((num_frames, 21, 3))
  body[:, L_SHOULDER - 1, 2] = -0.9 + 0.5 * np.sin(2 * np.pi * 0.8 * t)
  body[:, R_SHOULDER - 1, 2] = 0.9 - 0.5 * np.sin(2 * np.pi * 0.6 * t + 1.0)
  body[:, L_ELBOW - 1, 1] = -0.8 - 0.6 * np.sin(2 * np.pi * 1.2 * t)
  body[:, R_ELBOW - 1, 1] = 0.8 + 0.6 * np.sin(2 * np.pi * 1.0 * t)
  body[:, NECK - 1, 0] = 0.25 * np.sin(2 * np.pi * 0.5 * t)
  yaw = np.deg2rad(20) * t / t[-1]
  # Upright in the camera frame (180 degrees about x), then the slow turn about the vertical.
  root = (Rotation.from_rotvec(np.stack([np.zeros_like(yaw), yaw, np.zeros_like(yaw)], -1))
          * Rotation.from_rotvec([np.pi, 0, 0])).as_rotvec()
  cam_trans = np.stack([-0.75 + 0.5 * t, np.zeros_like(t), np.full_like(t, 4.0)], -1)
  zeros = lambda n: np.zeros((num_frames, n))
  return {'root_pose': root, 'body_pose': body.reshape(num_frames, 63), 'jaw_pose': zeros(3),
          'lhand_pose': zeros(45), 'rhand_pose': zeros(45), 'shape': np.tile(
              np.linspace(-0.5, 0.5, 10), (num_frames, 1)), 'expr': zeros(10),
          'cam_trans': cam_trans}


def noisy(params: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  out = {}
  for key, value in params.items():
    if key.endswith('_pose'):
      r = Rotation.from_rotvec(value.reshape(-1, 3))
      turn = Rotation.from_rotvec(rng.normal(0, NOISE['rotation'], size=(len(r), 3)))
      out[key] = (r * turn).as_rotvec().reshape(value.shape)
    else:
      out[key] = value + rng.normal(0, 1, size=value.shape) * NOISE[key]
  return out


def joints(layer, params: dict[str, np.ndarray]) -> np.ndarray:
  """(T, 55, 3) SMPL-X skeleton joints + cam_trans, metres, camera frame."""
  import smplx_jax
  out = smplx_jax.forward(
      layer, betas=params['shape'], global_orient=params['root_pose'],
      body_pose=params['body_pose'], left_hand_pose=params['lhand_pose'],
      right_hand_pose=params['rhand_pose'], jaw_pose=params['jaw_pose'],
      expression=params['expr'], transl=params['cam_trans'])
  return np.asarray(out.joints, np.float64)[:, :55]


def smooth(params: dict[str, np.ndarray], fps: float, strength: float, pose_offsets=None):
  """The clip through one ParamSmoother, frame by frame."""
  from h4w_jax.inference import smoothing
  smoother = smoothing.ParamSmoother(strength, pose_offsets=pose_offsets)
  num_frames = len(params['cam_trans'])
  frames = [smoother(i / fps, {k: v[i] for k, v in params.items()}) for i in range(num_frames)]
  return {k: np.stack([f[k] for f in frames]) for k in params}
