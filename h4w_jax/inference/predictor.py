"""Inference API: a converted checkpoint and the body models in, upstream's
test-mode outputs out.

    predictor = Predictor.from_checkpoint('ckpt_dir', human_model_path='human_model_files')
    out = predictor(images)   # (B, 512, 384, 3) float32 RGB in [0, 1] -> dict of numpy arrays

The crop is upstream's: a person box padded to aspect 3:4 and extended x1.25,
warped to 512x384 (no mean/std normalisation). Output keys and units are
upstream's test-mode dict (see `h4w_jax.models.outputs.test_outputs`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from h4w_jax.common import spaces
from h4w_jax.models import hand4whole as model_lib
from h4w_jax.models import hand_only, hand_outputs, outputs
from h4w_jax.weights import files, keys


@functools.partial(jax.jit, static_argnums=0)
def _predict(config, variables, layer, images):
  net = model_lib.Hand4Whole(config).apply(variables, images, train=False)
  return outputs.test_outputs(net, layer)


@dataclasses.dataclass(frozen=True)
class Predictor:
  variables: Any                  # {'params', 'batch_stats'}
  layer: Any                      # smplx_jax.SMPLX, upstream's neutral layer
  epoch: int | None = None
  config: model_lib.ModelConfig = model_lib.ModelConfig()

  @classmethod
  def from_checkpoint(cls, checkpoint_dir: str | os.PathLike, human_model_path,
                      model_config: model_lib.ModelConfig | None = None):
    """Loads an orbax checkpoint written by `python -m h4w_jax.convert`.

    model_config: None takes upstream's settings with the backbone depths of
    the checkpoint (50/50/18 for upstream's weights, e.g. 18/18/18 for the
    quickstart's).
    """
    variables, meta = files.load_checkpoint(checkpoint_dir)
    if files.is_hand_variables(variables):
      raise ValueError(f'{checkpoint_dir} holds the hand-only model of stage 2: use '
                       'h4w_jax.inference.HandPredictor')
    return cls(variables=variables, layer=outputs.smplx_layer(human_model_path),
               epoch=meta.get('epoch'), config=model_config or files.model_config_of(variables))

  def __call__(self, images) -> dict[str, np.ndarray]:
    images = np.asarray(images, np.float32)
    expected = spaces.INPUT_IMG_SHAPE + (3,)
    if images.ndim != 4 or images.shape[1:] != expected:
      raise ValueError(f'images must be (B, {expected[0]}, {expected[1]}, 3) RGB crops in '
                       f'[0, 1], channels last; got {images.shape}')
    return jax.tree.map(np.asarray, _predict(self.config, self.variables, self.layer, images))


@functools.partial(jax.jit, static_argnums=0)
def _predict_hand(config, variables, model, images):
  net = hand_only.HandOnly(config).apply(variables, images, train=False)
  return hand_outputs.test_outputs(net, model)


@dataclasses.dataclass(frozen=True)
class HandPredictor:
  """The hand-only model of stage 2: (B, 256, 256, 3) right-hand crops in [0, 1] -> upstream's
  Pose2Pose test-mode dict (hand_outputs.test_outputs). Mirror a left hand's crop first, and
  its mesh's x (and every pose joint's y, z) back after.

      predictor = HandPredictor.from_checkpoint('hand_ckpt', human_model_path='human_model_files')
      out = predictor(crops)   # out['mano_mesh_cam'] (B, 778, 3), out['mano_pose'] (B, 48), ...
  """
  variables: Any
  model: Any                      # hand_outputs.HandModel: the right MANO layer and regressor
  epoch: int | None = None
  config: hand_only.HandModelConfig = hand_only.HandModelConfig()

  @classmethod
  def from_checkpoint(cls, checkpoint, human_model_path):
    """A converted folder, a stage-2 training workdir or an upstream hand snapshot
    (snapshot_12_hand.pth.tar); the backbone depth is read off the weights."""
    path = Path(checkpoint)
    if path.is_dir():
      variables, meta = files.read_variables(path)
    else:
      state_dict, epoch, _ = files.load_snapshot(path)
      if not files.is_hand_state_dict(state_dict):
        raise ValueError(f'{path} holds the whole-body model: use h4w_jax.inference.Predictor')
      config = hand_only.HandModelConfig(depth=files.state_dict_depth(state_dict))
      variables = keys.torch_to_flax(state_dict, hand_only.variable_shapes(config), str(path))
      meta = {'epoch': epoch}
    if not files.is_hand_variables(variables):
      raise ValueError(f'{path} holds the whole-body model: use h4w_jax.inference.Predictor')
    return cls(variables=variables, model=hand_outputs.hand_model(human_model_path),
               epoch=meta.get('epoch'), config=files.model_config_of(variables))

  def __call__(self, images) -> dict[str, np.ndarray]:
    images = np.asarray(images, np.float32)
    expected = spaces.HAND_INPUT_SHAPE + (3,)
    if images.ndim != 4 or images.shape[1:] != expected:
      raise ValueError(f'images must be (B, {expected[0]}, {expected[1]}, 3) RGB hand crops in '
                       f'[0, 1], channels last; got {images.shape}')
    return jax.tree.map(np.asarray, _predict_hand(self.config, self.variables, self.model, images))
