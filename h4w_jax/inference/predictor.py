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

import chex
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
  def from_checkpoint(cls, checkpoint_dir: str | os.PathLike, human_model_path,
                      model_config: model_lib.ModelConfig | None = None):
    """Loads an orbax checkpoint written by `python -m h4w_jax.convert`.

    model_config: None takes upstream's settings with the backbone depths of
    the checkpoint (50/50/18 for upstream's weights, e.g. 18/18/18 for the
    quickstart's).
    """
    variables, meta = files.load_checkpoint(checkpoint_dir)
    return cls(variables=variables, layer=outputs.smplx_layer(human_model_path),
               epoch=meta.get('epoch'), config=model_config or files.model_config_of(variables))

  def __call__(self, images) -> dict[str, np.ndarray]:
    """images: (B, 512, 384, 3) float RGB crops in [0, 1], channels last."""
    images = np.asarray(images)
    height, width = spaces.INPUT_IMG_SHAPE
    chex.assert_shape(images, (None, height, width, 3), exception_type=ValueError,
                      custom_message=f'Predictor images must be (B, {height}, {width}, 3) RGB '
                                     'crops, channels last')
    chex.assert_type(images, float, exception_type=ValueError, custom_message=(
        'Predictor images must be float RGB in [0, 1] (uint8 crops: divide by 255)'))
    images = images.astype(np.float32)
    return jax.tree.map(np.asarray, _predict(self.config, self.variables, self.layer, images))
