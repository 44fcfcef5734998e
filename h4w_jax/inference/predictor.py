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
from typing import Any

import jax
import numpy as np

from h4w_jax.common import spaces
from h4w_jax.models import hand4whole as model_lib
from h4w_jax.models import outputs
from h4w_jax.weights import files


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
  def from_checkpoint(cls, checkpoint: str | os.PathLike, human_model_path,
                      model_config: model_lib.ModelConfig | None = None):
    """Loads a checkpoint folder of `python -m h4w_jax.convert`, an upstream
    `snapshot_<N>.pth.tar` or a training workdir (its newest good step).

    model_config: None takes upstream's settings with the backbone depths of
    the checkpoint (50/50/18 for upstream's weights, 18/10/10 for the
    quickstart's); a given one must fit the weights (files.WeightsError).
    """
    variables, config, _, epoch = files.load_model(
        checkpoint, model_config or model_lib.ModelConfig(), with_epoch=True)
    if model_config is not None and config != model_config:
      raise files.WeightsError(
          f'{checkpoint} has {files.depths_str(config)} backbones; model_config says '
          f'{files.depths_str(model_config)}')
    return cls(variables=variables, layer=outputs.smplx_layer(human_model_path), epoch=epoch,
               config=config)

  def __call__(self, images) -> dict[str, np.ndarray]:
    images = np.asarray(images, np.float32)
    expected = spaces.INPUT_IMG_SHAPE + (3,)
    if images.ndim != 4 or images.shape[1:] != expected:
      raise ValueError(f'images must be (B, {expected[0]}, {expected[1]}, 3) RGB crops in '
                       f'[0, 1], channels last; got {images.shape}')
    return jax.tree.map(np.asarray, _predict(self.config, self.variables, self.layer, images))
