"""The training run behind train.py: data, mesh, state, step, logs, checkpoints.

One linear `run(config, workdir)`, split by banner comments as big_vision's
train.py. Every option is a config field (configs/*.py); see configs/default.py
for what each field means.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from h4w_jax.common import draw, sharding
from h4w_jax.training import checkpoints, logs, optim, step as step_lib, tasks

log = logging.getLogger('h4w_jax.train')


class TrainingError(RuntimeError):
  """A run that cannot go on (non-finite loss, missing files): the message says why."""


def _check_files(config, need: str = 'model') -> None:
  from smplx_jax import check
  root = Path(config.human_model_path)
  missing = [f'{e.relpath} (from {e.source})' for e in check.expected_files()
             if e.need == need and not (root / e.relpath).exists()]
  if missing:
    raise TrainingError(f'body-model files missing in {root}: ' + '; '.join(missing)
                        + f'. Run `python -m smplx_jax.check {root}` for the full list.')


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
  """Train as `config` says; returns the last logged metrics (host floats)."""
  workdir = Path(workdir)
  is_chief = jax.process_index() == 0
  if is_chief:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / 'config.json').write_text(config.to_json_best_effort(indent=1) + '\n')

  # ---------------------------------------------------------------- Data & body models
  task = tasks.from_config(config)
  if config.synthetic:
    if is_chief:
      from h4w_datasets import synthetic
      synthetic.write_missing(config.data_root, config.human_model_path,
                              (*config.trainset_3d, *config.trainset_2d),
                              num=config.synthetic_images, task=task.name)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices('synthetic files written')
  _check_files(config, task.body_model_need)
  from h4w_datasets import pipeline, registry
  if config.batch_size % jax.process_count():
    raise ValueError(f'batch_size {config.batch_size} does not split over '
                     f'{jax.process_count()} processes')
  local_batch = config.batch_size // jax.process_count()
  groups = registry.make_groups(config.data_root, config.trainset_3d, config.trainset_2d,
                                config.dataset_options.to_dict(), task=task.name)
  num_epochs = config.end_epoch - config.start_epoch
  data_cfg = pipeline.PipelineConfig(
      seed=config.seed, local_batch=local_batch, num_epochs=num_epochs,
      num_workers=config.data.num_workers, read_threads=config.data.read_threads,
      crop_dtype=config.data.crop_dtype, skip_bad_samples=config.data.skip_bad_samples)
  dataset, source = pipeline.build(groups, data_cfg, process_index=jax.process_index(),
                                   process_count=jax.process_count())
  steps_per_epoch = source.steps_per_epoch
  total_steps = config.total_steps or num_epochs * steps_per_epoch
  if total_steps > num_epochs * steps_per_epoch:   # total_steps beyond end_epoch: more data
    data_cfg = dataclasses.replace(data_cfg, num_epochs=-(-total_steps // steps_per_epoch))
    dataset, source = pipeline.build(groups, data_cfg, process_index=jax.process_index(),
                                     process_count=jax.process_count())
  layer, target_layer = task.body_models(config.human_model_path)

  # ---------------------------------------------------------------- Mesh & shardings
  mesh = sharding.make_mesh(config.mesh)
  model_cfg = task.model_config
  schedule = optim.learning_rate_schedule(config.lr, config.lr_dec_epoch, config.lr_dec_factor,
                                          steps_per_epoch, config.start_epoch)
  tx = optim.make_optimizer(schedule, config.grad_clip_norm)
  rng = jax.random.key(config.seed)
  abstract = jax.eval_shape(lambda: step_lib.init_state(rng, model_cfg, tx, task.init_variables))
  state_shardings = sharding.tree_shardings(abstract, config.sharding_rules, mesh)
  repl = sharding.replicated(mesh)
  target_layer = jax.device_put(target_layer, repl)
  layer = jax.device_put(layer, repl)

  # ---------------------------------------------------------------- Checkpoints & state
  manager = checkpoints.Manager(workdir / 'checkpoints', keep=config.keep_checkpoints,
                                  async_save=config.async_checkpoints)
  data_iter = iter(dataset)
  restored = manager.restore_latest(abstract, state_shardings, data_iter)
  if restored is None:
    variables = task.initial_variables(rng, **config.init.to_dict())
    # Arguments, not closures: the weights must not become constants of the program.
    state = jax.jit(lambda v, key: step_lib.init_state(key, model_cfg, tx, lambda _: v),
                    out_shardings=state_shardings)(variables, rng)
    print(f'Starting from scratch: {total_steps} steps, {steps_per_epoch} per epoch, '
          f'global batch {config.batch_size} on {jax.device_count()} devices '
          f'({jax.process_count()} processes), mesh {dict(mesh.shape)}', flush=True)
  else:
    state = restored
    print(f'Resumed from {manager.directory} at step {int(state.step)}', flush=True)

  # ---------------------------------------------------------------- Update step
  step_fn = jax.jit(
      functools.partial(step_lib.train_step, task=task, tx=tx, schedule=schedule,
                        compute_dtype=jnp.dtype(config.compute_dtype)),
      donate_argnums=0, out_shardings=(state_shardings, repl))
  predict_fn = jax.jit(functools.partial(step_lib.predict, task=task))

  # ---------------------------------------------------------------- Train loop
  writer = logs.SummaryWriter(workdir / 'tb') if is_chief else None
  first_step = int(state.step)
  last_metrics: dict[str, Any] = {}
  skipped_in_epoch = 0
  timer_start, timer_step = time.perf_counter(), first_step
  window: dict[str, float] = {}
  window_steps = 0
  for step in range(first_step, total_steps):
    tick = time.perf_counter()
    local = next(data_iter)
    data_seconds = time.perf_counter() - tick
    batch = sharding.global_batch(local, mesh)
    state, metrics = step_fn(state, batch, layer, target_layer)
    metrics = jax.device_get(metrics)
    metrics['time/data_wait'] = data_seconds
    metrics['time/step'] = time.perf_counter() - tick
    if not metrics['finite']:
      manager.wait()
      raise TrainingError(
          f'non-finite loss or gradient at step {step} (loss {metrics["loss/total"]}); the state '
          f'was not updated and nothing was saved after it. The last good checkpoint is step '
          f'{manager.latest_step()} in {manager.directory}. Lower config.lr or set '
          'config.grad_clip_norm, then run again: training resumes from that checkpoint.')
    skipped_in_epoch += int(metrics['num_skipped'])
    for key, value in metrics.items():
      window[key] = window.get(key, 0.0) + float(value)
    window_steps += 1
    done = step + 1
    epoch = config.start_epoch + step // steps_per_epoch
    if done % config.log_every == 0 or done == total_steps:
      elapsed = time.perf_counter() - timer_start
      rate = (done - timer_step) / max(elapsed, 1e-9)
      eta = (total_steps - done) / max(rate, 1e-9)
      # Means over the steps since the last log line: one batch's loss is noisy.
      last_metrics = {k: v / window_steps for k, v in window.items()}
      last_metrics['samples_per_sec'] = rate * config.batch_size
      last_metrics['epoch'] = epoch
      if is_chief:
        print(f'step {done}/{total_steps} epoch {epoch} loss {last_metrics["loss/total"]:.4f} '
              f'lr {last_metrics["lr"]:.2e} {rate:.2f} steps/s '
              f'({last_metrics["samples_per_sec"]:.1f} samples/s, '
              f'{last_metrics["time/data_wait"]:.2f} s of {last_metrics["time/step"]:.2f} s '
              f'waiting for data) ETA {eta / 60:.1f} min', flush=True)
        writer.scalars(done, last_metrics)
      window, window_steps = {}, 0
      timer_start, timer_step = time.perf_counter(), done
    if is_chief and config.image_every and (done % config.image_every == 0 or done == total_steps):
      image = logs.overlay_first(predict_fn, state, local, layer, task.mesh_key,
                                 *task.overlay_camera)
      draw.save_png(workdir / 'images' / f'overlay_{done:07d}.png', image)
      writer.image(done, 'overlay', image)
    if done % steps_per_epoch == 0:
      if skipped_in_epoch and is_chief:
        print(f'epoch {epoch}: {skipped_in_epoch} bad samples were skipped and replaced '
              '(see the warnings above for which)', flush=True)
      skipped_in_epoch = 0
    if (config.checkpoint_every and done % config.checkpoint_every == 0) \
        or done % steps_per_epoch == 0 or done == total_steps:
      manager.save(done, state, data_iter)
    if config.stop_after_steps and done >= first_step + config.stop_after_steps:
      break   # for tests and preemption drills: stop as a kill would, after a save or not
  manager.wait()
  if writer is not None:
    writer.close()
    if is_chief:
      logs.loss_curve(workdir / 'tb_scalars.jsonl', workdir / 'loss_curve.png')
  return last_metrics


def load_config_file(path) -> ml_collections.ConfigDict:
  """The ConfigDict of a configs/*.py file (get_config())."""
  import importlib.util
  spec = importlib.util.spec_from_file_location('h4w_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def dump_metrics(path, metrics) -> None:
  Path(path).write_text(json.dumps({k: float(np.asarray(v)) for k, v in metrics.items()},
                                   indent=1))
