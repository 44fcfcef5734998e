"""upstream's MANO settings (Pose2Pose `common/utils/human_models.py` MANO), shared by the
hand-only model's outputs and targets (h4w_jax.models) and the synthetic hand datasets.

The layers are smplx's `create(path, 'mano', use_pca=False, flat_hand_mean=False)`:
the network's finger poses are relative to the file's mean hand.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import smplx_jax
from h4w_jax.common import joint_sets as js


def mano_layer(human_model_path, is_rhand: bool = True) -> smplx_jax.MANO:
  """upstream's MANO layer of one side (mano.layer['right'] / ['left'])."""
  return smplx_jax.create(human_model_path, 'mano', is_rhand=is_rhand, use_pca=False,
                          flat_hand_mean=False)


def mano_layers(human_model_path) -> tuple[smplx_jax.MANO, smplx_jax.MANO]:
  """(right, left) MANO layers as upstream's datasets use them.

  upstream (MANO.__init__): when the left file's x row of the shape directions
  equals the right file's (sum of |differences| < 1: the known bug of the
  official MANO_LEFT.pkl), the left one's x row is negated, so that the left
  hand's shape is the mirror of the right hand's. (The synthetic files are exact
  mirrors already: the fix does not trigger on them.)
  """
  right = mano_layer(human_model_path, True)
  left = mano_layer(human_model_path, False)
  diff = np.abs(np.asarray(left.shapedirs[:, 0]) - np.asarray(right.shapedirs[:, 0])).sum()
  if diff < 1:
    left = dataclasses.replace(left, shapedirs=left.shapedirs.at[:, 0].multiply(-1))
  return right, left


def joint_regressor(layer: smplx_jax.MANO) -> np.ndarray:
  """upstream's mano.joint_regressor (21, 778) float32: the layer's J_regressor rows
  placed by joint name (MANO_ORIG_JOINT_NAMES -> MANO_JOINT_NAMES), plus a one-hot
  row at each fingertip vertex. upstream builds it from the right layer and uses it
  for both hands."""
  j_regressor = np.asarray(layer.J_regressor, np.float32)
  out = np.zeros((js.NUM_MANO_JOINTS, j_regressor.shape[1]), np.float32)
  for i, name in enumerate(js.MANO_ORIG_JOINT_NAMES):
    out[js.MANO_JOINT_NAMES.index(name)] = j_regressor[i]
  for name, vertex in js.MANO_FINGERTIP_VERTICES.items():
    out[js.MANO_JOINT_NAMES.index(name), vertex] = 1.0
  return out
