"""Synthetic mini-datasets: rendered bodies written in each dataset's upstream format.

    python -m h4w_datasets.synthetic OUT [--human-model-path DIR] [--num 8] [--task hand]

`render_scenes` poses random SMPL-X (or SMPL) bodies in front of a camera and
renders them over a textured background with the CPU rasterizer, so the
images, the annotations and the fits agree exactly and a model can learn from
them. Each dataset module's `write_synthetic(data_root, scenes, ...)` writes
those scenes as upstream's files under `data_root/<NAME>/...`; readers then
load them exactly as they load the real datasets.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

import smplx_jax
from h4w_jax.common import atomic
from smplx_jax import render


@dataclasses.dataclass
class Scene:
  """One rendered person, all in the camera frame (OpenCV: x right, y down, z forward).

  image: (H, W, 3) uint8 RGB.
  params: the body model's parameters, as the fitting files name them for SMPL-X
    (root_pose (3,), body_pose (63,), lhand_pose (45,), rhand_pose (45,),
    jaw_pose (3,), shape (10,), expr (10,), trans (3,) metres) or for SMPL
    (pose (72,), shape (10,), trans (3,)).
  focal, princpt: (2,) pixels.
  joints_cam: (J, 3) metres, the model's output joints (SMPL-X: 144, SMPL: 24
    regressed from the mesh as upstream's 'smpl' branch does).
  joints_img: (J, 2) pixels.
  vertices_cam: (V, 3) metres.
  gender: 'neutral', 'male' or 'female'.
  """
  image: np.ndarray
  params: dict[str, np.ndarray]
  focal: np.ndarray
  princpt: np.ndarray
  joints_cam: np.ndarray
  joints_img: np.ndarray
  vertices_cam: np.ndarray
  gender: str = 'neutral'

  @property
  def image_shape(self) -> tuple[int, int]:
    return self.image.shape[:2]


def _rotvec_to_matrix(v: np.ndarray) -> np.ndarray:
  theta = float(np.linalg.norm(v))
  if theta < 1e-12:
    return np.eye(3)
  k = v / theta
  kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
  return np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * kx @ kx


def _matrix_to_rotvec(m: np.ndarray) -> np.ndarray:
  from scipy.spatial.transform import Rotation
  return Rotation.from_matrix(m).as_rotvec()


def to_world(root_pose_cam, trans_cam, pelvis_cam, cam_R, cam_t):
  """Fit parameters in a world frame that upstream maps back onto the camera-frame body.

  upstream (process_human_model_output) rotates the root by R and then moves
  every point as X - r + R r + t with r the posed pelvis. With the pelvis at
  rest position p (the root rotates about it), the camera-frame body with
  translation trans_cam results from trans_w = R^T (p + trans_cam - t) - p.

  Returns (root_pose_world (3,), trans_world (3,)).
  """
  cam_R = np.asarray(cam_R, np.float64)
  rest_pelvis = np.asarray(pelvis_cam, np.float64) - trans_cam
  root_world = _matrix_to_rotvec(cam_R.T @ _rotvec_to_matrix(np.asarray(root_pose_cam, np.float64)))
  trans_world = cam_R.T @ (rest_pelvis + trans_cam - cam_t) - rest_pelvis
  return root_world.astype(np.float32), trans_world.astype(np.float32)


def world_to_cam(points_world, cam_R, cam_t):
  return np.asarray(points_world) @ np.asarray(cam_R).T + np.asarray(cam_t)


def cam_to_world(points_cam, cam_R, cam_t):
  return (np.asarray(points_cam) - np.asarray(cam_t)) @ np.asarray(cam_R)


def _background(rng, height, width) -> np.ndarray:
  """A smooth two-colour gradient with blobs and mild noise (not a flat colour)."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  c0, c1 = rng.uniform(30, 220, size=(2, 3))
  angle = rng.uniform(0, 2 * np.pi)
  t = ((xx * np.cos(angle) + yy * np.sin(angle)) / max(height, width) + 1) / 2
  img = c0 * (1 - t[..., None]) + c1 * t[..., None]
  for _ in range(4):
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    radius = rng.uniform(0.05, 0.2) * max(height, width)
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
    img += blob[..., None] * rng.uniform(-60, 60, size=3)
  img += rng.normal(0, 4, size=img.shape)
  return np.clip(img, 0, 255).astype(np.uint8)


def _sample_smplx_params(rng, n: int) -> dict[str, np.ndarray]:
  yaw = rng.uniform(-0.8, 0.8, size=n)
  tilt = rng.uniform(-0.15, 0.15, size=(n, 2))
  # Camera frame is the body frame turned 180 degrees about x (y down, z forward); the
  # small tilt keeps the root's angle off exactly pi, where a and -a are one rotation.
  root = np.stack([_matrix_to_rotvec(_rotvec_to_matrix(np.array([np.pi + t[0], 0, t[1]]))
                                     @ _rotvec_to_matrix(np.array([0, y, 0])))
                   for y, t in zip(yaw, tilt)])
  body = rng.normal(0, 0.15, size=(n, 21, 3))
  body[:, 15, 2] += rng.uniform(-1.2, -0.2, size=n)   # left shoulder: arm down, varied
  body[:, 16, 2] += rng.uniform(0.2, 1.2, size=n)     # right shoulder
  body[:, [3, 4], 0] += rng.uniform(0, 0.8, size=(n, 2))  # knees bend forward only
  return {
      'root_pose': root.astype(np.float32),
      'body_pose': body.reshape(n, 63).astype(np.float32),
      'lhand_pose': rng.normal(0, 0.25, size=(n, 45)).astype(np.float32),
      'rhand_pose': rng.normal(0, 0.25, size=(n, 45)).astype(np.float32),
      'jaw_pose': np.concatenate([rng.uniform(0, 0.3, size=(n, 1)), np.zeros((n, 2))],
                                 axis=1).astype(np.float32),
      'shape': np.clip(rng.normal(0, 1, size=(n, 10)), -2.5, 2.5).astype(np.float32),
      'expr': np.clip(rng.normal(0, 1, size=(n, 10)), -2, 2).astype(np.float32),
  }


def _sample_smpl_params(rng, n: int) -> dict[str, np.ndarray]:
  p = _sample_smplx_params(rng, n)
  pose = np.concatenate([p['root_pose'], p['body_pose'], rng.normal(0, 0.1, size=(n, 6))], axis=1)
  return {'pose': pose.astype(np.float32), 'shape': p['shape']}


def _smpl_joints(vertices: np.ndarray, model) -> np.ndarray:
  return np.einsum('jv,bvc->bjc', np.asarray(model.J_regressor, np.float64), vertices)


def render_scenes(human_model_path, num: int, *, seed: int = 0, image_shape=(240, 320),
                  model_type: str = 'smplx', gender: str = 'neutral',
                  depth_range=(3.5, 6.0)) -> list[Scene]:
  """Render `num` people, one per image, fully inside the frame.

  Args:
    human_model_path: a human_model_files folder (real or synthetic).
    image_shape: (H, W) of every image.
    model_type: 'smplx' (whole-body datasets) or 'smpl' (3DPW).
    depth_range: pelvis depth in metres.
  """
  rng = np.random.default_rng(seed)
  height, width = image_shape
  if model_type == 'smplx':
    model = smplx_jax.create(human_model_path, 'smplx', gender=gender, use_pca=False,
                             use_face_contour=True, flat_hand_mean=False)
    params = _sample_smplx_params(rng, num)
    out = smplx_jax.forward(model, betas=params['shape'], global_orient=params['root_pose'],
                            body_pose=params['body_pose'], left_hand_pose=params['lhand_pose'],
                            right_hand_pose=params['rhand_pose'], jaw_pose=params['jaw_pose'],
                            expression=params['expr'])
    joints = np.asarray(out.joints, np.float64)
  elif model_type == 'smpl':
    model = smplx_jax.create(human_model_path, 'smpl', gender=gender)
    params = _sample_smpl_params(rng, num)
    out = smplx_jax.forward(model, betas=params['shape'], global_orient=params['pose'][:, :3],
                            body_pose=params['pose'][:, 3:])
    joints = None
  else:
    raise ValueError(f"model_type must be 'smplx' or 'smpl', got {model_type!r}")
  vertices = np.asarray(out.vertices, np.float64)
  if joints is None:
    joints = _smpl_joints(vertices, model)
  faces = np.asarray(model.faces)

  scenes = []
  for i in range(num):
    focal = np.full(2, 1.6 * max(height, width) * rng.uniform(0.9, 1.1))
    princpt = np.array([width / 2, height / 2]) + rng.uniform(-5, 5, size=2)
    pelvis = joints[i, 0]
    depth = rng.uniform(*depth_range)
    # Place the pelvis so that the whole mesh projects inside the image with a margin.
    target = np.array([rng.uniform(-0.15, 0.15) * depth * width / focal[0],
                       rng.uniform(-0.05, 0.05) * depth * height / focal[1], depth])
    trans = target - pelvis
    verts = vertices[i] + trans
    extent = np.abs((verts[:, :2] / verts[:, 2:]) * focal).max(axis=0) / (np.array([width, height]) / 2)
    shrink = max(1.0, float(extent.max()) / 0.85)
    trans[2] += (shrink - 1) * depth
    verts = vertices[i] + trans
    joints_cam = joints[i] + trans
    image = _background(rng, height, width)
    color = tuple(rng.uniform(0.45, 0.95, size=3))
    image, _ = render.render_mesh(verts, faces, focal, princpt, image=image, color=color)
    scene_params = {k: v[i] for k, v in params.items()}
    scene_params['trans'] = trans.astype(np.float32)
    joints_img = joints_cam[:, :2] / joints_cam[:, 2:] * focal + princpt
    scenes.append(Scene(image=np.asarray(image, np.uint8), params=scene_params,
                        focal=focal.astype(np.float32), princpt=princpt.astype(np.float32),
                        joints_cam=joints_cam.astype(np.float32),
                        joints_img=joints_img.astype(np.float32),
                        vertices_cam=verts.astype(np.float32), gender=gender))
  return scenes


# Dataset name -> module in this package with `write_synthetic(data_root, human_model_path, ...)`.
DATASET_MODULES = {
    'Human36M': 'human36m', 'MSCOCO': 'mscoco', 'MPII': 'mpii', 'MPI_INF_3DHP': 'mpi_inf_3dhp',
    'PW3D': 'pw3d', 'AGORA': 'agora', 'EHF': 'ehf',
}
# The hand-only stage 2 (upstream's Pose2Pose, parts='hand'): MSCOCO is its hand reader.
HAND_DATASET_MODULES = {'FreiHAND': 'freihand', 'InterHand26M': 'interhand26m',
                        'MSCOCO': 'mscoco_hand'}
TASK_MODULES = {'wholebody': DATASET_MODULES, 'hand': HAND_DATASET_MODULES}
# A file that tells a hand dataset folder from the whole-body one of the same name.
HAND_MARKERS = {'MSCOCO': Path('annotations') / 'MSCOCO_train_MANO_NeuralAnnot.json'}


def write_mini_datasets(data_root, human_model_path, names: Optional[Sequence[str]] = None, *,
                        num: int = 8, seed: int = 0, task: str = 'wholebody') -> Path:
  """Write every (or the named) dataset's synthetic mini version under `data_root`.

  Each dataset is written into a temporary data root beside it
  (`<NAME>.partial-*`) and its folder renamed to `data_root/<NAME>` when
  complete, so `data_root/<NAME>` exists only whole: a run killed midway
  leaves a `.partial-` folder that the next call removes and writes again.
  An existing `data_root/<NAME>` is an error (it may be the real dataset).
  """
  data_root = Path(data_root)
  data_root.mkdir(parents=True, exist_ok=True)
  modules = TASK_MODULES[task]
  for offset, name in enumerate(names or modules):
    module = importlib.import_module(f'h4w_datasets.{modules[name]}')
    start = time.perf_counter()
    final = data_root / name
    if final.exists():   # never written into: it may be the real dataset
      raise FileExistsError(f'{final} exists; remove it to write the synthetic {name} again')
    atomic.remove_partials(final)
    tmp_root = atomic.partial_path(final)
    tmp_root.mkdir()
    try:
      module.write_synthetic(tmp_root, human_model_path, num=num, seed=seed + 1000 * offset)
      os.rename(tmp_root / name, final)
    finally:
      shutil.rmtree(tmp_root, ignore_errors=True)
    print(f'  {name}: {time.perf_counter() - start:.1f} s', flush=True)
  return data_root


def _present(data_root: Path, name: str, task: str) -> bool:
  """Whether `data_root/name` holds the dataset of `task`; a folder of the other task's
  dataset of the same name (MSCOCO) is an error, not something to overwrite."""
  folder = data_root / name
  if not folder.is_dir():
    return False
  marker = HAND_MARKERS.get(name)
  if marker is not None and (task == 'hand') != (folder / marker).exists():
    raise FileExistsError(
        f'{folder} holds the {"whole-body" if task == "hand" else "hand"} version of {name} '
        f'({"without" if task == "hand" else "with"} {marker}); give the {task} run its own '
        'data_root')
  return True


def write_missing(data_root, human_model_path, names: Sequence[str], *, num: int = 8,
                  task: str = 'wholebody') -> None:
  """The quickstart's files, written once: synthetic body models in `human_model_path` unless
  SMPL-X files not written by smplx_jax.synthetic are there, and the mini datasets of `names`
  that have no folder in `data_root`. What a killed earlier run left half-written (body
  models: `smplx_jax.synthetic.status` 'incomplete'; datasets: `.partial-` folders) is
  written again."""
  from smplx_jax import synthetic as body_synthetic
  hmf = Path(human_model_path)
  missing = [n for n in names if not _present(Path(data_root), n, task)]
  state = body_synthetic.status(hmf)
  if state in ('absent', 'incomplete'):
    again = ' again: the last write did not finish' if state == 'incomplete' else ' (once)'
    print(f'Writing synthetic body-model files to {hmf}{again} ...', flush=True)
    body_synthetic.write_human_model_files(hmf, seed=0)
  if missing:
    print(f'Writing synthetic mini datasets {missing} to {data_root} (once) ...', flush=True)
    write_mini_datasets(data_root, hmf, missing, num=num, task=task)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('out', type=Path, help='the data root to write (holds <NAME>/ folders)')
  parser.add_argument('--human-model-path', type=Path, default=None,
                      help='human_model_files folder (default: synthetic files in the cache)')
  parser.add_argument('--task', default='wholebody', choices=sorted(TASK_MODULES),
                      help="'hand': stage 2's FreiHAND, InterHand26M and MSCOCO hands")
  parser.add_argument('--datasets', nargs='*', default=None,
                      choices=sorted(set(DATASET_MODULES) | set(HAND_DATASET_MODULES)))
  parser.add_argument('--num', type=int, default=8, help='images per dataset split')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  if args.human_model_path is None:
    from smplx_jax.demo import default_model_path
    args.human_model_path = default_model_path()
  os.makedirs(args.out, exist_ok=True)
  write_mini_datasets(args.out, args.human_model_path, args.datasets, num=args.num, seed=args.seed,
                      task=args.task)
  return 0


if __name__ == '__main__':
  sys.exit(main())
