"""Train state, initialisation under jit with shardings, and the jitted update step.

The step takes a batch of *examples* (h4w_datasets), computes the targets on the
device (the task's: SMPL-X targets for the whole-body model, MANO targets for the
hand-only model of stage 2; h4w_jax.training.tasks), runs the model in train mode
and applies Adam. A non-finite loss or gradient leaves the state untouched and is
reported in the metrics, so the loop can stop with the last good state.
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


def _all_finite(tree) -> Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.stack(leaves).all()


def train_step(state: TrainState, batch: dict, layer, target_layer=None, *, task: Task,
               tx: optax.GradientTransformation, schedule: optax.Schedule,
               compute_dtype=jnp.float32):
  """One update. Returns (new_state, metrics) with every loss term's mean,
  the total loss, the learning rate, the gradient norm and `finite`.

  layer: the body model of the model's outputs (task.body_models: upstream's
    smplx_layer, or the MANO layer with its joint regressor).
  target_layer: what the targets are computed with (`targets.smplx_joints(layer)`
    gives the same joints from ~6% of the vertices; default: `layer`).
  """
  model = task.model
  inputs, target, meta_info = task.train_batch(
      layer if target_layer is None else target_layer, batch)

  def loss_fn(params):
    cast = lambda x: x.astype(compute_dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
    out, updates = model.apply(
        {'params': jax.tree.map(cast, params), 'batch_stats': state.batch_stats},
        cast(inputs['img']), train=True, mutable=['batch_stats'])
    out = jax.tree.map(lambda x: x.astype(jnp.float32), out)
    losses = task.train_losses(out, layer, target, meta_info)
    means = {k: jnp.mean(v) for k, v in losses.items()}
    return sum(means.values()), (means, updates['batch_stats'])

  (loss, (means, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(loss) & _all_finite(grads)
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  new_state = state.replace(
      step=state.step + finite.astype(jnp.int32), params=keep(params, state.params),
      batch_stats=keep(batch_stats, state.batch_stats),
      opt_state=keep(opt_state, state.opt_state))
  metrics = {f'loss/{k}': v for k, v in means.items()}
  metrics.update({'loss/total': loss, 'lr': schedule(state.step),
                  'grad_norm': optax.tree.norm(grads), 'finite': finite,
                  'num_skipped': jnp.sum(batch['num_skipped'])})
  return new_state, metrics


def predict(variables, images, layer, *, task: Task):
  """Test-mode outputs (upstream's out dict) for overlays and evaluation."""
  out = task.model.apply(variables, images, train=False)
  return task.test_outputs(out, layer)
