"""What the trainer needs to know about a model family: one `Task` per family.

The training loop (loop.py) and the step (step.py) are the same for every stage of
the paper's recipe; a task bundles what differs between the whole-body model
(stages 1 and 3, upstream's main branch) and the hand-only model (stage 2,
upstream's Pose2Pose branch with parts='hand'): the network, its initial
weights, the body models it needs, the device-side targets, the losses, the
test-mode outputs and how an overlay is drawn. `config.task` picks one.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax

from h4w_jax.common import draw, spaces
from h4w_jax.models import hand4whole, hand_only, hand_outputs, hand_targets, outputs, targets
from h4w_jax.weights import stages

TASKS = ('wholebody', 'hand')


@dataclasses.dataclass(frozen=True)
class Task:
  """A model family as the trainer sees it (all functions pure; no state).

  model_config: the network's static settings; model: the Flax module, called
    as `model.apply(variables, img (B, H, W, 3) in [0, 1], train=...)`.
  init_variables(rng): flax's init (the abstract state's shapes).
  initial_variables(rng, **config.init): the run's starting weights.
  body_models(human_model_path): (layer, target_layer) host pytrees: what the
    losses and the test outputs use, and what the targets are computed with.
  train_batch(target_layer, batch): a batch of examples -> (inputs, targets,
    meta_info), on the device.
  train_losses(out, layer, targets, meta_info): unreduced loss terms.
  test_outputs(out, layer): upstream's test-mode dict.
  mesh_key, overlay_camera: the test-dict mesh and the crop camera (focal,
    princpt) for the overlays; body_model_need: which smplx_jax.check files the
    run needs ('model': SMPL-X; 'hand': MANO).
  """
  name: str
  model_config: Any
  model: nn.Module
  init_variables: Callable[[jax.Array], dict]
  initial_variables: Callable[..., dict]
  body_models: Callable[[Any], tuple[Any, Any]]
  train_batch: Callable
  train_losses: Callable
  test_outputs: Callable
  mesh_key: str
  overlay_camera: tuple[tuple[float, float], tuple[float, float]]
  body_model_need: str


def _wholebody_body_models(human_model_path):
  layer = outputs.smplx_layer(human_model_path)
  # Targets need only joints: the cut skins ~6% of the vertices (h4w_jax.models.targets).
  return layer, targets.smplx_joints(layer)


def wholebody(model_cfg: hand4whole.ModelConfig,
              detach_joints_for_projection: bool = False) -> Task:
  """Hand4Whole (upstream's main branch): stages 1 and 3, AGORA fine-tuning."""
  return Task(
      name='wholebody', model_config=model_cfg, model=hand4whole.Hand4Whole(model_cfg),
      init_variables=functools.partial(hand4whole.init_variables, config=model_cfg),
      initial_variables=lambda rng, **init: stages.initial_variables(model_cfg, rng, **init),
      body_models=_wholebody_body_models, train_batch=targets.train_batch,
      train_losses=functools.partial(
          outputs.train_losses, detach_joints_for_projection=detach_joints_for_projection),
      test_outputs=outputs.test_outputs, mesh_key='smplx_mesh_cam',
      overlay_camera=(draw.CROP_FOCAL, draw.CROP_PRINCPT), body_model_need='model')


def hand(model_cfg: hand_only.HandModelConfig) -> Task:
  """The hand-only Pose2Pose model (upstream's Pose2Pose branch, parts='hand'): stage 2."""
  return Task(
      name='hand', model_config=model_cfg, model=hand_only.HandOnly(model_cfg),
      init_variables=functools.partial(hand_only.init_variables, config=model_cfg),
      initial_variables=lambda rng, **init: stages.initial_hand_variables(model_cfg, rng, **init),
      body_models=lambda path: (hand_outputs.hand_model(path), hand_targets.mano_layers(path)),
      train_batch=hand_targets.hand_train_batch, train_losses=hand_outputs.train_losses,
      test_outputs=hand_outputs.test_outputs, mesh_key='mano_mesh_cam',
      overlay_camera=(spaces.HAND_FOCAL, spaces.HAND_PRINCPT), body_model_need='hand')


def from_config(config, device_count: int | None = None) -> Task:
  """The task of a training config (`config.task`, default 'wholebody')."""
  name = config.get('task', 'wholebody')
  if name not in TASKS:
    raise ValueError(f'config.task must be one of {TASKS}, got {name!r}')
  if config.batchnorm not in ('per_device', 'synced'):
    raise ValueError(f"config.batchnorm must be 'per_device' or 'synced', got {config.batchnorm!r}")
  per_device = config.batch_size // (device_count or jax.device_count())
  group = per_device if config.batchnorm == 'per_device' else None
  m = config.model
  if name == 'hand':
    return hand(hand_only.HandModelConfig(depth=m.hand_depth, bn_group_size=group,
                                          dtype=config.compute_dtype, remat=m.remat))
  return wholebody(hand4whole.ModelConfig(
      body_depth=m.body_depth, hand_depth=m.hand_depth, face_depth=m.face_depth,
      fix_lhand_flip=m.fix_lhand_flip, bn_group_size=group, dtype=config.compute_dtype,
      remat=m.remat),
      detach_joints_for_projection=config.detach_joints_for_projection)
