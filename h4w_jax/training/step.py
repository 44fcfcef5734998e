"""Train state, initialisation under jit with shardings, and the jitted update step.

The step takes a batch of *examples* (h4w_datasets), computes the targets on the
device (the task's: SMPL-X targets for the whole-body model, MANO targets for the
hand-only model of stage 2; h4w_jax.training.tasks), runs the model in train mode
and applies Adam.

The guard: a step whose loss, gradients, new parameters or new optimizer state
are not all finite is not applied, and once one was not, no later step is
(`halted` chains from step to step on the device), so the state stays the last
good one. The metrics say which parts were non-finite (`bad_parts`, bits of
GUARD_PARTS). They stay on the device: the loop sums them into a window
(`start_window` / `add_to_window`) and reads it only at log steps, so the
steps in between make no device-to-host transfer.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from h4w_jax.models import hand4whole as model_lib
from h4w_jax.training.tasks import Task

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  step: Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: Array           # raw uint32 key data (checkpointable); no op draws from it yet


def init_state(rng, model_config: model_lib.ModelConfig, tx: optax.GradientTransformation,
               init_variables: Callable[[Any], dict] | None = None) -> TrainState:
  """A fresh state. `init_variables(rng)` may supply the variables (converted
  weights, upstream head init); the default is flax's init."""
  variables = (init_variables or functools.partial(model_lib.init_variables,
                                                   config=model_config))(rng)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables['batch_stats'], opt_state=tx.init(params),
                    rng=jax.random.key_data(jax.random.fold_in(rng, 1)))


GUARD_PARTS = ('loss', 'gradients', 'new parameters', 'new optimizer state')


def _all_finite(tree) -> Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.stack(leaves).all()


def guard_bits(*parts) -> Array:
  """int32 with bit i set when parts[i] (a pytree) holds a non-finite value."""
  return sum(jnp.where(_all_finite(part), 0, 1 << i) for i, part in enumerate(parts))


def describe_guard_bits(bits: int) -> str:
  return ', '.join(name for i, name in enumerate(GUARD_PARTS) if bits & (1 << i))


def train_step(state: TrainState, batch: dict, layer, target_layer=None, halted=False, *,
               task: Task, tx: optax.GradientTransformation, schedule: optax.Schedule):
  """One update. Returns (new_state, metrics): every loss term's mean, the total
  loss, the learning rate, the gradient norm, `num_skipped` (bad samples
  replaced in the batch), `bad_parts` (guard bits), `step` (the 1-based number
  of this step) and `halted` (pass it to the next step).

  layer: the body model of the model's outputs (task.body_models: upstream's
    smplx_layer, or the MANO layer with its joint regressor).
  target_layer: what the targets are computed with (`targets.smplx_joints(layer)`
    gives the same joints from ~6% of the vertices; default: `layer`).
  halted: a device bool; when set the step computes but applies nothing.
  The model's config says what its convolutions and matmuls compute in
  (ModelConfig.dtype); parameters, statistics, targets and losses are float32.
  """
  model = task.model
  inputs, target, meta_info = task.train_batch(
      layer if target_layer is None else target_layer, batch)

  def loss_fn(params):
    out, updates = model.apply({'params': params, 'batch_stats': state.batch_stats},
                               inputs['img'], train=True, mutable=['batch_stats'])
    losses = task.train_losses(out, layer, target, meta_info)
    means = {k: jnp.mean(v) for k, v in losses.items()}
    return sum(means.values()), (means, updates['batch_stats'])

  (loss, (means, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  bad_parts = guard_bits(loss, grads, params, opt_state)
  apply = (bad_parts == 0) & ~jnp.asarray(halted)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(apply, n, o), new, old)
  new_state = state.replace(
      step=state.step + apply.astype(jnp.int32), params=keep(params, state.params),
      batch_stats=keep(batch_stats, state.batch_stats),
      opt_state=keep(opt_state, state.opt_state))
  metrics = {f'loss/{k}': v for k, v in means.items()}
  metrics.update({'loss/total': loss, 'lr': schedule(state.step),
                  'grad_norm': optax.tree.norm(grads),
                  'num_skipped': jnp.sum(batch['num_skipped']).astype(jnp.float32),
                  'bad_parts': bad_parts, 'step': state.step + 1,
                  'halted': jnp.asarray(halted) | (bad_parts != 0)})
  return new_state, metrics


_WINDOW_SKIP = ('bad_parts', 'step', 'halted')


def start_window(metrics: dict) -> dict:
  """A log window holding one step's metrics (see add_to_window)."""
  first_bad = (metrics['bad_parts'] != 0)
  return {'sums': {k: v.astype(jnp.float32) for k, v in metrics.items() if k not in _WINDOW_SKIP},
          'steps': jnp.ones((), jnp.int32),
          'first_bad_step': jnp.where(first_bad, metrics['step'], 0),
          'bad_parts': metrics['bad_parts'],
          'lr_at_bad': jnp.where(first_bad, metrics['lr'], 0.0)}


def add_to_window(window: dict, metrics: dict) -> dict:
  """Sums a step's metrics into the window; remembers the first non-finite step
  (its number, what was non-finite, its learning rate)."""
  new_bad = (window['first_bad_step'] == 0) & (metrics['bad_parts'] != 0)
  return {'sums': {k: window['sums'][k] + v.astype(jnp.float32) for k, v in metrics.items()
                   if k not in _WINDOW_SKIP},
          'steps': window['steps'] + 1,
          'first_bad_step': jnp.where(new_bad, metrics['step'], window['first_bad_step']),
          'bad_parts': jnp.where(new_bad, metrics['bad_parts'], window['bad_parts']),
          'lr_at_bad': jnp.where(new_bad, metrics['lr'], window['lr_at_bad'])}


def predict(variables, images, layer, *, task: Task):
  """Test-mode outputs (upstream's out dict) for overlays and evaluation."""
  out = task.model.apply(variables, images, train=False)
  return task.test_outputs(out, layer)
