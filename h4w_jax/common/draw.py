"""Meshes drawn over images with the CPU rasterizer of smplx_jax.render (no OpenGL).

The crop's camera is upstream's render_cropped_img one: the virtual focal
length scaled from the 256x192 body input to the 512x384 crop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from h4w_jax.common import atomic, spaces
from smplx_jax import render

CROP_FOCAL = tuple(f * spaces.INPUT_IMG_SHAPE[1] / spaces.INPUT_BODY_SHAPE[1] for f in spaces.FOCAL)
CROP_PRINCPT = (spaces.INPUT_IMG_SHAPE[1] / 2, spaces.INPUT_IMG_SHAPE[0] / 2)
# Mesh colours, one per person id (cycled): light blue (the renderer's default), then others
# far apart in hue, so that people and tracks are told apart in overlays.
PALETTE = ((0.65, 0.74, 0.86), (0.93, 0.62, 0.45), (0.55, 0.83, 0.55), (0.86, 0.60, 0.85),
           (0.92, 0.86, 0.45), (0.50, 0.85, 0.85), (0.95, 0.55, 0.60), (0.75, 0.70, 0.55))


def overlay(image_uint8: np.ndarray, vertices_cam: np.ndarray, faces: np.ndarray,
            focal=CROP_FOCAL, princpt=CROP_PRINCPT, alpha: float = 0.8,
            color=PALETTE[0]) -> np.ndarray:
  """The mesh (camera frame, metres) drawn over an RGB uint8 image, in `color` (RGB in [0, 1])."""
  rgb, _ = render.render_mesh(np.asarray(vertices_cam, np.float64), np.asarray(faces),
                              np.asarray(focal), np.asarray(princpt), image=image_uint8,
                              alpha=alpha, color=color)
  return np.asarray(rgb, np.uint8)


def save_png(path, image) -> Path:
  """A PNG written whole or not at all (h4w_jax.common.atomic)."""
  path = Path(path)
  with atomic.open_for_writing(path) as f:
    render.save_png(f, image)
  return path
