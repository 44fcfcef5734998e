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
from h4w_jax.models import hand4whole as model_lib
from h4w_jax.training import (checkpoints, config_checks, feeding, guard, inputs, logs, optim,
                              step as step_lib, tasks)

log = logging.getLogger('h4w_jax.train')


class TrainingError(RuntimeError):
  """A run that cannot go on (non-finite loss, missing files): the message says why."""


def model_config(config) -> model_lib.ModelConfig:
  """The network settings of a training config (its task's model config)."""
  return tasks.from_config(config).model_config


@dataclasses.dataclass(frozen=True)
class Parts:
  """What a run's jitted step is made of (loop.run, and the compile checks of bench/ and tests)."""
  model_config: Any                        # the task's: hand4whole.ModelConfig, HandModelConfig
  model: Any                               # the Flax module
  schedule: Any
  tx: Any
  abstract_state: step_lib.TrainState      # ShapeDtypeStructs
  state_shardings: Any
  step_fn: Any                             # jitted, state donated
  task: tasks.Task


def make_parts(config, mesh, steps_per_epoch: int, task: tasks.Task | None = None) -> Parts:
  task = task or tasks.from_config(config)
  schedule = optim.learning_rate_schedule(config.lr, config.lr_dec_epoch, config.lr_dec_factor,
                                          steps_per_epoch, config.start_epoch)
  tx = optim.make_optimizer(schedule, config.grad_clip_norm)
  rng = jax.random.key(config.seed)
  abstract = jax.eval_shape(
      lambda: step_lib.init_state(rng, task.model_config, tx, task.init_variables))
  state_shardings = sharding.tree_shardings(abstract, config.sharding_rules, mesh)
  step_fn = jax.jit(
      functools.partial(step_lib.train_step, task=task, tx=tx, schedule=schedule),
      donate_argnums=0, out_shardings=(state_shardings, sharding.replicated(mesh)))
  return Parts(task.model_config, task.model, schedule, tx, abstract, state_shardings, step_fn,
               task)


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
  config_checks.check_training(config)   # ConfigError before anything is created
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
                                config.dataset_options.to_dict(), source=config.data.source,
                                tfds_data_dir=config.data.tfds_data_dir, task=task.name)
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
  parts = make_parts(config, mesh, steps_per_epoch, task)
  model_cfg, tx, abstract, state_shardings = (parts.model_config, parts.tx, parts.abstract_state,
                                              parts.state_shardings)
  rng = jax.random.key(config.seed)
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
  step_fn = parts.step_fn
  start_window, add_to_window = jax.jit(step_lib.start_window), jax.jit(step_lib.add_to_window)
  mesh_fn = jax.jit(functools.partial(
      logs.first_example_mesh, mesh_key=task.mesh_key,
      predict=functools.partial(step_lib.predict, task=task)), out_shardings=repl)

  # ---------------------------------------------------------------- Train loop
  # Metrics stay on the device between sync steps (logs, checkpoints, epoch ends); the
  # next batches are assembled and transferred in the background meanwhile.
  divergence = guard.DivergenceMonitor(config.guard.divergence_factor,
                                       config.guard.divergence_logs)
  watchdog = guard.Watchdog(0, '')
  first_step = int(state.step)
  writer = logs.SummaryWriter(workdir / 'tb', resume_step=first_step) if is_chief else None
  feed = feeding.Prefetcher(data_iter, mesh, depth=config.data.prefetch_batches,
                            check=functools.partial(inputs.check_batch, batch_size=local_batch,
                                                    crop_dtype=config.data.crop_dtype,
                                                    kind=task.name))
  last_metrics: dict[str, Any] = {}
  skipped_in_epoch = 0.0
  timer_start, timer_step = time.perf_counter(), first_step
  # Placed as the step's outputs are: another placement would compile the step again.
  window, data_wait, halted = None, 0.0, jax.device_put(jnp.zeros((), bool), repl)
  try:
    with jax.set_mesh(mesh):
      for step in range(first_step, total_steps):
        # Between sync steps nothing may wait for the device: a transfer to the host
        # here is an error (config.guard.host_transfers='allow' lifts it).
        with jax.transfer_guard_device_to_host(config.guard.host_transfers):
          fed = next(feed)
          data_wait += fed.wait_seconds
          state, metrics = step_fn(state, fed.batch, layer, target_layer, halted)
          halted = metrics['halted']
          window = start_window(metrics) if window is None else add_to_window(window, metrics)
        if step == first_step:   # compiled: from here on the loop must keep moving
          watchdog.close()
          watchdog = guard.Watchdog(config.hang_timeout_seconds, HANG_ADVICE)
        watchdog.beat(f'dispatched step {step + 1}')
        done = step + 1
        epoch = config.start_epoch + step // steps_per_epoch
        epoch_end = done % steps_per_epoch == 0
        save = (config.checkpoint_every and done % config.checkpoint_every == 0) or epoch_end \
            or done == total_steps
        stop = bool(config.stop_after_steps) and done >= first_step + config.stop_after_steps
        if not (done % config.log_every == 0 or save or epoch_end or stop or done == total_steps):
          continue   # no device-to-host transfer on this step

        # ------------------------------------------------------------ Sync: metrics
        host = jax.device_get(window)
        watchdog.beat(f'step {done} metrics')
        steps_in_window = int(host['steps'])
        if host['first_bad_step']:
          manager.wait()
          raise TrainingError(guard.non_finite_message(
              int(host['first_bad_step']), int(host['bad_parts']), float(host['lr_at_bad']),
              manager.directory, manager.latest_step()))
        elapsed = time.perf_counter() - timer_start
        rate = (done - timer_step) / max(elapsed, 1e-9)
        eta = (total_steps - done) / max(rate, 1e-9)
        # Means over the window's steps: one batch's loss is noisy.
        last_metrics = {k: float(v) / steps_in_window for k, v in host['sums'].items()}
        skipped_in_epoch += last_metrics.pop('num_skipped') * steps_in_window
        last_metrics.update({'samples_per_sec': rate * config.batch_size, 'epoch': epoch,
                             'time/step': elapsed / max(done - timer_step, 1),
                             'time/data_wait': data_wait / steps_in_window,
                             'window_steps': steps_in_window})
        warning = divergence.update(done, last_metrics['loss/total'])
        if is_chief:
          print(f'step {done}/{total_steps} epoch {epoch} loss {last_metrics["loss/total"]:.4f} '
                f'(mean of {steps_in_window} steps) lr {last_metrics["lr"]:.2e} '
                f'{rate:.2f} steps/s ({last_metrics["samples_per_sec"]:.1f} samples/s, '
                f'{last_metrics["time/data_wait"]:.2f} s of {last_metrics["time/step"]:.2f} s '
                f'waiting for data) ETA {eta / 60:.1f} min', flush=True)
          if warning:
            print(f'warning: {warning}', flush=True)
          writer.scalars(done, last_metrics)
        window, data_wait = None, 0.0
        timer_start, timer_step = time.perf_counter(), done

        # ------------------------------------------------------------ Pictures
        if config.image_every and (done % config.image_every == 0 or done == total_steps):
          vertices = jax.device_get(mesh_fn(state, fed.batch, layer))   # every process
          if is_chief:
            image = logs.overlay_first(fed.local, vertices, layer.faces,
                                      *task.overlay_camera)
            draw.save_png(workdir / 'images' / f'overlay_{done:07d}.png', image)
            writer.image(done, 'overlay', image)
        if epoch_end:
          if skipped_in_epoch and is_chief:
            print(f'epoch {epoch}: {int(round(skipped_in_epoch))} bad samples were skipped and '
                  'replaced (see the warnings above for which)', flush=True)
          skipped_in_epoch = 0.0

        # ------------------------------------------------------------ Checkpoints
        if save:
          manager.save(done, state, feeding.ConsumedState(fed.iterator_state))
          watchdog.beat(f'saved step {done}')
        if stop:
          break   # for tests and preemption drills: stop as a kill would, after a save or not
  except (jax.errors.JaxRuntimeError, ValueError) as e:   # gloo reports a dead peer as ValueError
    if jax.process_count() > 1:
      raise TrainingError(f'process {jax.process_index()} of {jax.process_count()}: a device '
                          f'operation failed ({str(e).splitlines()[0]}). With several processes '
                          'this usually means another process died or lost its connection: see '
                          'its log. Restart every process: training resumes from the newest '
                          'checkpoint.') from e
    raise
  finally:
    watchdog.close()
    feed.close()
  manager.wait()
  if writer is not None:
    writer.close()
    if is_chief:
      logs.loss_curve(workdir / 'tb_scalars.jsonl', workdir / 'loss_curve.png')
  return last_metrics


HANG_ADVICE = ('The run is stuck: with several processes another one has most likely died '
               '(a collective waits for it forever); see the other logs. Restart every process: '
               'training resumes from the newest checkpoint. config.hang_timeout_seconds sets '
               'this bound (0: off).')


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
