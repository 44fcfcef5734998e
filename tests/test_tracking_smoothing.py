"""Video tools: tracking through gaps, One-Euro smoothing on the rotation manifold, lower jitter."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import fake_motion
from h4w_jax.inference import smoothing
from h4w_jax.inference import tracking
from h4w_jax.models import outputs


def _walk(start, step, frames):
  """(x, y, w, h, score) boxes of a person walking sideways, one per frame."""
  return {f: np.array([start + step * f, 50.0, 60.0, 150.0, 0.9]) for f in frames}


def test_ids_kept_through_a_gap_and_ended_after_max_gap():
  # A walks right at 12 px/frame and is hidden in frames 4-7 (4 frames: no overlap left
  # between A's last box and where A comes back, so only the velocity keeps the id);
  # B stands still on the right and is missed in frame 2.
  a = _walk(0.0, 12.0, [0, 1, 2, 3, 8, 9])
  b = {f: np.array([400.0, 40.0, 70.0, 170.0, 0.8]) for f in range(10) if f != 2}
  tracker = tracking.Tracker(iou_threshold=0.3, max_gap=5)
  seen = {}
  for frame in range(10):
    dets = [d[frame] for d in (a, b) if frame in d]
    ids = tracker.update(frame, np.stack(dets))
    for who, i in zip([w for w, d in (('a', a), ('b', b)) if frame in d], ids):
      seen.setdefault(who, set()).add(int(i))
  assert seen == {'a': {0}, 'b': {1}}
  # Hidden for longer than max_gap: a new id (never a reused one).
  late = tracker.update(20, np.stack([a[9]]))
  assert late.tolist() == [2]
  # Without the velocity A's box after the gap overlaps nothing: a tracker that ignored
  # motion would have started a new track in frame 8.
  from h4w_jax.inference import boxes as box_ops
  assert box_ops.iou(a[3][None, :4], a[8][None, :4])[0, 0] == 0


def test_two_people_swap_nothing_when_they_pass():
  """Two people walking towards each other, boxes overlapping for a few frames."""
  tracker = tracking.Tracker()
  left, right = _walk(0.0, 10.0, range(12)), _walk(220.0, -10.0, range(12))
  for frame in range(12):
    ids = tracker.update(frame, np.stack([left[frame], right[frame]]))
    assert ids.tolist() == [0, 1], frame


def test_smoothing_off_is_the_identity_and_strength_must_be_positive():
  params = {'root_pose': np.array([0.1, 0.2, 0.3]), 'cam_trans': np.array([0.0, 0.1, 4.0])}
  off = smoothing.ParamSmoother(0)
  for t in range(3):
    out = off(t / 30, params)
    assert all(np.array_equal(out[k], params[k]) for k in params)
  with pytest.raises(ValueError, match='strength'):
    smoothing.ParamSmoother(-1)


def test_rotations_are_smoothed_on_the_manifold_near_pi():
  """A still joint turned by 175 degrees, observed with 5-degree noise: its axis-angle
  vector flips sign between frames (angles past pi come back as the opposite axis). Averaging
  axis-angle vectors would pull the estimate towards no rotation at all; the filter on SO(3)
  stays within the noise of the truth."""
  rng = np.random.default_rng(0)
  truth = Rotation.from_rotvec([0, 0, np.deg2rad(175)])
  noise = Rotation.from_rotvec(rng.normal(0, np.deg2rad(5), size=(60, 3)))
  observed = (truth * noise).as_rotvec()
  assert (observed[:, 2] < 0).sum() > 5                     # the axis does flip
  smoother = smoothing.ParamSmoother(1.0)
  estimates = [smoother(i / 30, {'jaw_pose': o})['jaw_pose'] for i, o in enumerate(observed)]
  error = np.rad2deg((truth.inv() * Rotation.from_rotvec(estimates)).magnitude())
  raw_error = np.rad2deg((truth.inv() * Rotation.from_rotvec(observed)).magnitude())
  assert error[10:].max() < raw_error.mean()                # better than one frame, every frame
  naive = np.rad2deg(np.linalg.norm(observed.mean(axis=0)))
  assert naive < 120                                        # what averaging axis-angle gives


def test_smoothing_lowers_jitter_and_error_on_a_synthetic_clip(clean_human_model_files):
  """tests/fake_motion.py: the truth plus per-frame noise (bench/smoothing_jitter.py prints
  the full table). Measured on the synthetic body models, 60 frames at 30 fps, noise seed 1:
  joint acceleration 193 -> 40 m/s^2 (truth 5), error to the truth 84 -> 59 mm. Asserted: at
  least 3x less acceleration, and less error than the raw predictions."""
  fps = 30.0
  layer = outputs.smplx_layer(clean_human_model_files)
  hand_mean = np.asarray(layer.pose_mean)[75:]
  offsets = {'lhand_pose': hand_mean[:45], 'rhand_pose': hand_mean[45:]}
  truth = fake_motion.truth(60, fps)
  raw = fake_motion.noisy(truth, seed=1)
  smooth = fake_motion.smooth(raw, fps, 1.0, offsets)
  true_j, raw_j, smooth_j = (fake_motion.joints(layer, p) for p in (truth, raw, smooth))
  raw_acc = smoothing.joint_acceleration(raw_j, fps)
  smooth_acc = smoothing.joint_acceleration(smooth_j, fps)
  assert smooth_acc * 3 < raw_acc, (raw_acc, smooth_acc)
  error = lambda j: np.linalg.norm(j - true_j, axis=-1).mean()
  assert error(smooth_j) < error(raw_j), (error(raw_j), error(smooth_j))
  # Stronger smoothing: smoother still.
  stronger = fake_motion.smooth(raw, fps, 2.0, offsets)
  assert smoothing.joint_acceleration(fake_motion.joints(layer, stronger), fps) < smooth_acc
