"""Jitter with and without the demo's temporal smoothing, on a synthetic clip with known truth.

    python bench/smoothing_jitter.py [--human-model-path DIR] [--frames 90] [--fps 30]

The clip (tests/fake_motion.py): a person waving, nodding, turning and walking sideways, 4 m
from the camera; the 'predictions' are the truth plus independent per-frame noise (3 degrees
per rotation axis, cam_trans 1/1/5 cm, shape 0.05, expression 0.1). Each strength of
h4w_jax.inference.smoothing.ParamSmoother runs over it frame by frame, as the demo does per
track. Reported per strength, on the 55 SMPL-X skeleton joints (camera frame):

  accel  mean |second difference| of the joints, m/s^2 (the jitter; the truth's own is the
         floor a perfect smoother reaches)
  error  mean distance to the true joints, mm (the lag and damping a smoother adds, against
         the noise it removes)
  rel    the same after subtracting the pelvis (pose alone, translation left out)

Without --human-model-path the synthetic body-model files (smplx_jax.demo's default) are used:
the numbers are for that mannequin, not the real SMPL-X.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))
import fake_motion  # noqa: E402

from h4w_jax.inference import smoothing  # noqa: E402
from h4w_jax.models import outputs  # noqa: E402


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--human-model-path', type=Path, default=None)
  parser.add_argument('--frames', type=int, default=90)
  parser.add_argument('--fps', type=float, default=30.0)
  parser.add_argument('--strengths', type=float, nargs='+', default=[0, 0.5, 1, 2, 4])
  parser.add_argument('--seeds', type=int, default=3, help='noise draws averaged')
  args = parser.parse_args(argv)
  path = args.human_model_path
  if path is None:
    from smplx_jax.demo import default_model_path
    path = default_model_path()
  layer = outputs.smplx_layer(path)
  hand_mean = np.asarray(layer.pose_mean)[75:]
  offsets = {'lhand_pose': hand_mean[:45], 'rhand_pose': hand_mean[45:]}
  truth = fake_motion.truth(args.frames, args.fps)
  true_joints = fake_motion.joints(layer, truth)
  print(f'{args.frames} frames at {args.fps:g} fps, body models {path}; mean over '
        f'{args.seeds} noise draws')
  print(f'truth: accel {smoothing.joint_acceleration(true_joints, args.fps):.1f} m/s^2')
  print(f'{"strength":>8} {"accel m/s^2":>12} {"error mm":>9} {"rel mm":>7}')
  for strength in args.strengths:
    rows = []
    for seed in range(args.seeds):
      raw = fake_motion.noisy(truth, seed)
      j = fake_motion.joints(layer, fake_motion.smooth(raw, args.fps, strength, offsets))
      rel = (j - j[:, :1]) - (true_joints - true_joints[:, :1])
      rows.append((smoothing.joint_acceleration(j, args.fps),
                   np.linalg.norm(j - true_joints, axis=-1).mean() * 1e3,
                   np.linalg.norm(rel, axis=-1).mean() * 1e3))
    accel, error, rel = np.mean(rows, axis=0)
    label = 'off' if strength == 0 else f'{strength:g}'
    print(f'{label:>8} {accel:12.1f} {error:9.1f} {rel:7.1f}', flush=True)


if __name__ == '__main__':
  main()
