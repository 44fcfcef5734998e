"""Poses an SMPL-X body and writes a picture of it: the body-model demo.

    python -m smplx_jax.demo --out demo.png [--model-path human_model_files]

Without --model-path it uses synthetic body-model files (generated once into
a cache folder), so it runs on a fresh machine with no licensed files. With
the real SMPL-X files it draws the real body. The picture shows the rest pose
and a posed body (a wave, a bent knee, a curled hand, a turned head and an
expression) from the front and from the side.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import smplx_jax
from smplx_jax import render


def default_model_path() -> Path:
  """Synthetic human_model_files in the user cache, generated on first use."""
  root = Path(os.environ.get('H4W_JAX_CACHE_HOME', Path.home() / '.cache' / 'h4w_jax'))
  path = root / 'synthetic_human_model_files'
  from smplx_jax import synthetic
  state = synthetic.status(path)
  if state in ('absent', 'incomplete'):
    again = ' again: the last write did not finish' if state == 'incomplete' else ' (once)'
    print(f'Writing synthetic body-model files to {path}{again} ...')
    synthetic.write_human_model_files(path, seed=0)
  return path


def demo_pose() -> dict[str, np.ndarray]:
  """A wave with the right arm, a bent left knee, a curled left hand, a head turn."""
  body = np.zeros((21, 3), np.float32)
  body[16] = (0.0, 0.0, -0.3)    # right shoulder (joint 17): lift the arm a little
  body[18] = (0.0, 0.0, -1.3)    # right elbow (joint 19): forearm up, a wave
  body[15] = (0.0, 0.0, -1.2)    # left shoulder (joint 16): arm down
  body[3] = (0.9, 0.0, 0.0)      # left knee (joint 4)
  body[0] = (-0.5, 0.0, 0.1)     # left hip (joint 1): lift the thigh
  body[14] = (0.0, 0.4, 0.0)     # head (joint 15): turn
  left_hand = np.tile(np.array([0.0, 0.0, 0.8], np.float32), 15)  # curl the fingers
  return dict(body_pose=body.reshape(1, 63), left_hand_pose=left_hand[None],
              jaw_pose=np.array([[0.25, 0.0, 0.0]], np.float32),
              expression=np.full((1, 10), 1.5, np.float32),
              betas=np.array([[1.0, -0.5] + [0.0] * 8], np.float32))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model-path', type=Path, default=None,
                      help='a human_model_files folder (default: synthetic files)')
  parser.add_argument('--gender', default='neutral')
  parser.add_argument('--out', type=Path, default=Path('demo.png'))
  parser.add_argument('--size', type=int, default=512, help='height of each panel (pixels)')
  args = parser.parse_args(argv)

  model_path = args.model_path or default_model_path()
  start = time.perf_counter()
  model = smplx_jax.create(model_path, 'smplx', gender=args.gender, use_pca=False,
                           use_face_contour=True)
  pose = demo_pose()
  rest = smplx_jax.forward(model)
  posed = smplx_jax.forward(model, **pose)
  print(f'SMPL-X {args.gender}: {model.num_verts} vertices, {posed.joints.shape[1]} joints, '
        f'height {float(np.ptp(np.asarray(rest.vertices[0, :, 1]))):.2f} m '
        f'({time.perf_counter() - start:.1f} s to load and pose)')

  faces = np.asarray(model.faces)
  size = (args.size, args.size * 3 // 4)
  panels = []
  for vertices, yaw in ((rest.vertices[0], 0.0), (posed.vertices[0], 0.0),
                        (posed.vertices[0], 60.0)):
    cam_vertices, focal, princpt = render.look_at_camera(
        np.asarray(vertices), image_size=size, yaw_deg=yaw)
    rgb, _ = render.render_mesh(cam_vertices, faces, focal, princpt,
                                height=size[0], width=size[1])
    panels.append(rgb)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  render.save_png(args.out, np.concatenate(panels, axis=1))
  print(f'Wrote {args.out} (rest pose | posed, front | posed, side)')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
