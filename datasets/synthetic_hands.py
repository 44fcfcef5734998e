"""Rendered MANO hands for the synthetic mini hand datasets (FreiHAND, InterHand2.6M, MSCOCO).

`render_hand_images` poses random MANO hands (right or left layer, upstream's
settings: use_pca=False, flat_hand_mean=False) in front of a camera, one or more
per image, and renders them over a textured background with the CPU rasterizer,
so images, keypoints and fits agree exactly. Each dataset module's
`write_synthetic` writes them in upstream's file formats.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from h4w_jax.common import mano as mano_lib
from h4w_datasets import synthetic
from smplx_jax import render


@dataclasses.dataclass
class HandScene:
  """One rendered hand, in the camera frame (x right, y down, z forward), metres.

  params: the camera-frame MANO fit {'pose' (48,), 'shape' (10,), 'trans' (3,)}.
  joints_cam (21, 3): upstream's 21 joints (regressor @ vertices).
  """
  image: np.ndarray
  params: dict[str, np.ndarray]
  hand_type: str
  focal: np.ndarray
  princpt: np.ndarray
  joints_cam: np.ndarray
  vertices_cam: np.ndarray

  @property
  def image_shape(self) -> tuple[int, int]:
    return self.image.shape[:2]

  def _project(self, points):
    return points[:, :2] / points[:, 2:] * self.focal + self.princpt

  @property
  def joints_img(self) -> np.ndarray:
    return self._project(self.joints_cam)

  @property
  def vertices_img(self) -> np.ndarray:
    return self._project(self.vertices_cam)


def _rotvec(matrix):
  from scipy.spatial.transform import Rotation
  return Rotation.from_matrix(matrix).as_rotvec()


def _matrix(rotvec):
  from scipy.spatial.transform import Rotation
  return Rotation.from_rotvec(rotvec).as_matrix()


def _sample_params(rng, hand_type: str) -> dict[str, np.ndarray]:
  """Palm or back towards the camera (the template's palm normal is y), any in-plane
  angle, a tilt of up to ~0.5 rad; fingers N(0, 0.25) about the mean hand."""
  face = np.array([math.pi / 2 if rng.random() < 0.5 else -math.pi / 2, 0.0, 0.0])
  spin = np.array([0.0, 0.0, rng.uniform(-math.pi, math.pi)])
  tilt = rng.normal(0, 0.25, 3)
  root = _rotvec(_matrix(tilt) @ _matrix(spin) @ _matrix(face))
  pose = np.concatenate([root, rng.normal(0, 0.25, 45)])
  shape = np.clip(rng.normal(0, 0.8, 10), -2.5, 2.5)
  return {'pose': pose.astype(np.float32), 'shape': shape.astype(np.float32)}


def render_hand_images(human_model_path, layout: Sequence[Sequence[str]], *, seed: int = 0,
                       image_shape=(224, 224), depth_range=(0.5, 0.8),
                       focal_range=(2.0, 2.4)) -> list[list[HandScene]]:
  """Render images with the hands of `layout` (per image, e.g. ['right', 'left']).

  Hands of one image sit side by side in equal slots, each fully inside it.
  focal_range: the focal length in units of the image's longer side.
  Returns, per image, one HandScene per hand (all sharing the final image).
  """
  rng = np.random.default_rng(seed)
  right, left = mano_lib.mano_layers(human_model_path)
  regressor = mano_lib.joint_regressor(right).astype(np.float64)
  faces = np.asarray(right.faces)
  height, width = image_shape
  out = []
  for hands in layout:
    focal = np.full(2, rng.uniform(*focal_range) * max(height, width))
    princpt = np.array([width / 2, height / 2]) + rng.uniform(-3, 3, 2)
    image = synthetic._background(rng, height, width)
    scenes = []
    for slot, hand_type in enumerate(hands):
      params = _sample_params(rng, hand_type)
      layer = right if hand_type == 'right' else left
      verts = np.asarray(layer(betas=params['shape'][None], global_orient=params['pose'][None, :3],
                               hand_pose=params['pose'][None, 3:]).vertices[0], np.float64)
      depth = rng.uniform(*depth_range)
      # The slot's centre, in normalised image coordinates (-1..1 across the width).
      cx = (2 * slot + 1) / len(hands) - 1 + rng.uniform(-0.1, 0.1) / len(hands)
      cy = rng.uniform(-0.1, 0.1)
      centre = 0.5 * (verts.min(0) + verts.max(0))
      target = np.array([cx * depth * width / 2 / focal[0], cy * depth * height / 2 / focal[1],
                         depth])
      trans = target - centre
      # Shrink (move away) until the hand fits its slot with a margin.
      half_slot = np.array([1.0 / len(hands), 1.0])
      for _ in range(20):
        px = (verts + trans)[:, :2] / (verts + trans)[:, 2:] * focal + princpt
        lo = (px.min(0) - princpt) / (np.array([width, height]) / 2)
        hi = (px.max(0) - princpt) / (np.array([width, height]) / 2)
        spread = np.maximum(np.abs(lo - [cx, cy]), np.abs(hi - [cx, cy])) / half_slot
        if spread.max() <= 0.85:
          break
        trans[2] += 0.1 * depth
      params['trans'] = trans.astype(np.float32)
      vertices_cam = verts + trans
      color = tuple(rng.uniform(0.55, 0.95, 3))
      image, _ = render.render_mesh(vertices_cam, faces, focal, princpt, image=image, color=color)
      image = np.asarray(image, np.uint8)
      scenes.append(HandScene(image=None, params=params, hand_type=hand_type,
                              focal=focal.astype(np.float32), princpt=princpt.astype(np.float32),
                              joints_cam=(regressor @ vertices_cam).astype(np.float32),
                              vertices_cam=vertices_cam.astype(np.float32)))
    for scene in scenes:
      scene.image = image
    out.append(scenes)
  return out


def render_hand_scenes(human_model_path, hand_types: Sequence[str], **kwargs) -> list[HandScene]:
  """One hand per image."""
  return [s[0] for s in render_hand_images(human_model_path, [[t] for t in hand_types], **kwargs)]


def box_around(points: np.ndarray, margin: float) -> list[float]:
  """xywh around (N, 2) points, each side extended by `margin` of the size."""
  lo, hi = np.asarray(points).min(axis=0), np.asarray(points).max(axis=0)
  pad = (hi - lo) * margin
  lo, hi = lo - pad, hi + pad
  return [float(v) for v in (lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])]


def write_json(path: Path, obj) -> None:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(obj, f)


def to_world(scene: HandScene, cam_R: np.ndarray, cam_t: np.ndarray,
             regressor: np.ndarray, layer) -> dict[str, list]:
  """The world-frame fit that upstream's process_human_model_output maps back onto the
  scene's camera-frame hand with extrinsics (R, t metres).

  upstream rotates the root by R, runs MANO with the world `trans`, then moves every
  point by R w + t - w with w the regressed wrist. With w0 the wrist of the zero-trans
  mesh (root already rotated), trans_w = R^T (trans_cam + w0 - t) - w0 gives it back.
  """
  pose = np.asarray(scene.params['pose'], np.float64)
  root_world = _rotvec(cam_R.T @ _matrix(pose[:3]))
  verts0 = np.asarray(layer(betas=scene.params['shape'][None],
                            global_orient=pose[None, :3].astype(np.float32),
                            hand_pose=scene.params['pose'][None, 3:]).vertices[0], np.float64)
  wrist0 = regressor[0] @ verts0
  trans_cam = np.asarray(scene.params['trans'], np.float64)
  trans_world = cam_R.T @ (trans_cam + wrist0 - cam_t) - wrist0
  return {'pose': np.concatenate([root_world, pose[3:]]).tolist(),
          'shape': np.asarray(scene.params['shape']).tolist(), 'trans': trans_world.tolist()}
