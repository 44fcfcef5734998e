"""Inference API: a converted checkpoint and the body models in, upstream's test-mode outputs out.

    predictor = Predictor.from_checkpoint('ckpt_dir', human_model_path='human_model_files')
    out = predictor(images)   # (B, 512, 384, 3) float32 RGB in [0, 1] -> dict of numpy arrays

The crop is upstream's: a person box padded to aspect 3:4 and extended x1.25,
warped to 512x384 (no mean/std normalisation). Output keys and units are
upstream's test-mode dict (see `h4w_jax.models.outputs.test_outputs`).

Any B: the crops go through in chunks of at most `max_batch`, each padded to a
shape bucket (1, 2, 4, 8, ... up to max_batch), so the network compiles once
per bucket and never again, whatever the number of people in a picture or a
frame. In test mode every example is independent (batch norm uses its running
statistics), so the padding changes nothing in the results.
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
from h4w_jax.models import hand_only, hand_outputs, outputs
from h4w_jax.weights import files

# The SMPL-X parameters of upstream's test-mode outputs: our name -> output key.
PARAM_KEYS = {'root_pose': 'smplx_root_pose', 'body_pose': 'smplx_body_pose',
              'lhand_pose': 'smplx_lhand_pose', 'rhand_pose': 'smplx_rhand_pose',
              'jaw_pose': 'smplx_jaw_pose', 'shape': 'smplx_shape', 'expr': 'smplx_expr',
              'cam_trans': 'cam_trans'}


@functools.partial(jax.jit, static_argnums=0)
def _predict(config, variables, layer, images):
  net = model_lib.Hand4Whole(config).apply(variables, images, train=False)
  return outputs.test_outputs(net, layer)


@jax.jit
def _body(layer, params):
  out = layer(betas=params['shape'], global_orient=params['root_pose'],
              body_pose=params['body_pose'], left_hand_pose=params['lhand_pose'],
              right_hand_pose=params['rhand_pose'], jaw_pose=params['jaw_pose'],
              expression=params['expr'])
  t = params['cam_trans'][:, None]
  return {'vertices': out.vertices + t, 'joints': out.joints + t}


def buckets(max_batch: int) -> tuple[int, ...]:
  """The padded batch sizes: powers of two below max_batch, and max_batch."""
  sizes, b = [], 1
  while b < max_batch:
    sizes.append(b)
    b *= 2
  return tuple(sizes) + (max_batch,)


def bucket(n: int, max_batch: int) -> int:
  """The smallest bucket that holds n (1 <= n <= max_batch) examples."""
  return next(b for b in buckets(max_batch) if b >= n)


@dataclasses.dataclass(frozen=True)
class Predictor:
  variables: Any                  # {'params', 'batch_stats'}
  layer: Any                      # smplx_jax.SMPLX, upstream's neutral layer
  epoch: int | None = None
  config: model_lib.ModelConfig = model_lib.ModelConfig()
  max_batch: int = 8              # crops per network call (the largest shape bucket)

  @classmethod
  def from_checkpoint(cls, checkpoint: str | os.PathLike, human_model_path,
                      model_config: model_lib.ModelConfig | None = None, max_batch: int = 8):
    """Loads a checkpoint folder of `python -m h4w_jax.convert`, an upstream
    `snapshot_<N>.pth.tar` or a training workdir (its newest good step).

    model_config: None takes upstream's settings with the backbone depths of
    the checkpoint (50/50/18 for upstream's weights, 18/10/10 for the
    quickstart's); a given one must fit the weights (files.WeightsError).
    """
    variables, config, _, epoch = files.load_model(
        checkpoint, model_config or model_lib.ModelConfig(), with_epoch=True)
    if isinstance(config, hand_only.HandModelConfig):
      raise files.WeightsError(f'{checkpoint} holds the hand-only model of stage 2: use '
                               'h4w_jax.inference.HandPredictor')
    if model_config is not None and config != model_config:
      raise files.WeightsError(
          f'{checkpoint} has {files.depths_str(config)} backbones; model_config says '
          f'{files.depths_str(model_config)}')
    return cls(variables=variables, layer=outputs.smplx_layer(human_model_path), epoch=epoch,
               config=config, max_batch=max_batch)

  def __call__(self, images) -> dict[str, np.ndarray]:
    """images: (B, 512, 384, 3) float RGB crops in [0, 1], channels last, B >= 1."""
    images = np.asarray(images)
    height, width = spaces.INPUT_IMG_SHAPE
    chex.assert_shape(images, (None, height, width, 3), exception_type=ValueError,
                      custom_message=f'Predictor images must be (B, {height}, {width}, 3) RGB '
                                     'crops, channels last')
    chex.assert_type(images, float, exception_type=ValueError, custom_message=(
        'Predictor images must be float RGB in [0, 1] (uint8 crops: divide by 255)'))
    if len(images) == 0:
      raise ValueError('Predictor images: an empty batch (B = 0)')
    images = images.astype(np.float32)
    return self._chunked(
        lambda x: _predict(self.config, self.variables, self.layer, x), images)

  def _chunked(self, fn, arrays):
    """fn over chunks of at most max_batch examples, each zero-padded to its bucket."""
    n = len(jax.tree.leaves(arrays)[0])
    chunks = []
    for start in range(0, n, self.max_batch):
      chunk = jax.tree.map(lambda x: x[start:start + self.max_batch], arrays)
      k = len(jax.tree.leaves(chunk)[0])
      size = bucket(k, self.max_batch)
      padded = jax.tree.map(
          lambda x: np.concatenate([x, np.zeros((size - k,) + x.shape[1:], x.dtype)]), chunk)
      chunks.append(jax.tree.map(lambda x: np.asarray(x)[:k], fn(padded)))
    return chunks[0] if len(chunks) == 1 else jax.tree.map(
        lambda *xs: np.concatenate(xs), *chunks)

  def body(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """SMPL-X parameters (PARAM_KEYS names, (B, ...) each) -> {'vertices' (B, 10475, 3),
    'joints' (B, 144, 3)} in the camera frame: the mesh of upstream's get_coord
    (vertices + cam_trans), for parameters changed after the network (smoothed)."""
    params = {k: np.asarray(params[k], np.float32) for k in PARAM_KEYS}
    return self._chunked(lambda p: _body(self.layer, p), params)


def params_of(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The SMPL-X parameters of test-mode outputs, (B, ...) each, under PARAM_KEYS names."""
  return {k: np.asarray(out[v], np.float32) for k, v in PARAM_KEYS.items()}


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
    variables, config, _, epoch = files.load_model(checkpoint, hand_only.HandModelConfig(),
                                                   with_epoch=True)
    if not isinstance(config, hand_only.HandModelConfig):
      raise files.WeightsError(f'{checkpoint} holds the whole-body model: use '
                               'h4w_jax.inference.Predictor')
    return cls(variables=variables, model=hand_outputs.hand_model(human_model_path),
               epoch=epoch, config=config)

  def __call__(self, images) -> dict[str, np.ndarray]:
    images = np.asarray(images, np.float32)
    expected = spaces.HAND_INPUT_SHAPE + (3,)
    if images.ndim != 4 or images.shape[1:] != expected:
      raise ValueError(f'images must be (B, {expected[0]}, {expected[1]}, 3) RGB hand crops in '
                       f'[0, 1], channels last; got {images.shape}')
    return jax.tree.map(np.asarray, _predict_hand(self.config, self.variables, self.model, images))
