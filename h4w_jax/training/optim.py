"""Adam with upstream's epoch-based step decay, optional clipping.

upstream: base.Trainer.get_optimizer / set_lr: torch Adam (betas 0.9/0.999,
eps 1e-8, no weight decay); at the start of epoch e the learning rate is
lr * factor^-k, k = number of milestones <= e. Runs resumed from a snapshot
start at its epoch + 1 (quirk Q18), so `start_epoch` says which epoch step 0
belongs to.
"""

from __future__ import annotations

from typing import Sequence

import optax


def epoch_of_step(step, steps_per_epoch: int, start_epoch: int):
  return start_epoch + step // steps_per_epoch


def learning_rate_schedule(base_lr: float, milestones: Sequence[int], factor: float,
                           steps_per_epoch: int, start_epoch: int = 0) -> optax.Schedule:
  """lr(step) = base_lr * factor^-(#milestones <= epoch(step))."""
  boundaries = {}
  initial = base_lr
  for milestone in sorted(milestones):
    step = (milestone - start_epoch) * steps_per_epoch
    if step <= 0:
      initial /= factor
    else:
      boundaries[step] = boundaries.get(step, 1.0) / factor
  return optax.piecewise_constant_schedule(initial, boundaries)


def make_optimizer(schedule: optax.Schedule, grad_clip_norm: float = 0.0
                   ) -> optax.GradientTransformation:
  """torch.optim.Adam's defaults; clip by global norm first when grad_clip_norm > 0."""
  adam = optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)
  if grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(grad_clip_norm), adam)
  return adam
