"""Inference API: a converted checkpoint and the body models in, upstream's
test-mode outputs out.

    predictor = Predictor.from_checkpoint('ckpt_dir', human_model_path='human_model_files')
    out = predictor(images)   # (B, 512, 384, 3) float32 RGB in [0, 1] -> dict of numpy arrays

The crop is upstream's: a person box padded to aspect 3:4 and extended x1.25,
warped to 512x384 (no mean/std normalisation). Output keys and units are
upstream's test-mode dict (see `h4w_jax.outputs.test_outputs`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from h4w_jax import geometry as geo
from h4w_jax import model as model_lib
from h4w_jax import outputs


@jax.jit
def _predict(variables, layer, images):
  net = model_lib.Hand4Whole().apply(variables, images, train=False)
  return outputs.test_outputs(net, layer)


@dataclasses.dataclass(frozen=True)
class Predictor:
  variables: Any                  # {'params', 'batch_stats'}
  layer: Any                      # smplx_jax.SMPLX, upstream's neutral layer
  epoch: int | None = None

  @classmethod
  def from_checkpoint(cls, checkpoint_dir: str | os.PathLike, human_model_path):
    """Loads an orbax checkpoint written by `python -m h4w_jax.convert`."""
    from h4w_jax import convert
    variables, meta = convert.load_checkpoint(checkpoint_dir)
    return cls(variables=variables, layer=outputs.smplx_layer(human_model_path),
               epoch=meta.get('epoch'))

  def __call__(self, images) -> dict[str, np.ndarray]:
    images = np.asarray(images, np.float32)
    expected = geo.INPUT_IMG_SHAPE + (3,)
    if images.ndim != 4 or images.shape[1:] != expected:
      raise ValueError(f'images must be (B, {expected[0]}, {expected[1]}, 3) RGB crops in '
                       f'[0, 1], channels last; got {images.shape}')
    return jax.tree.map(np.asarray, _predict(self.variables, self.layer, images))
