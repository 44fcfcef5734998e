"""train.py's settings, checked before the workdir is created (h4w_jax.common.config_checks).

    check_training(config)   # raises ConfigError: one line per problem

On top of the shared checks (batch against devices and processes, mesh, data
folders, dataset names, input pipeline): the model, dtypes, the epoch range
and schedule, logging and checkpoint intervals, the initial-weight files, and
the sharding rules against the train state's names (each rule must match
something; the names come from `jax.eval_shape` of the state, which builds
no arrays but traces the model: 2-7 s for ResNet-50/50/18 on this shared
machine, so only for rules that do not match every name anyway).
"""

from __future__ import annotations

import re

import jax

from h4w_jax.common.config_checks import (BATCHNORM, COMPUTE_DTYPES, Checker, ConfigError,
                                          check_data, check_devices, check_rules)
from h4w_jax.models import resnet

__all__ = ['ConfigError', 'check_training']


def _state_paths(config, grad_clip_norm: float) -> list[str]:
  """The '/'-joined names that sharding rules are matched against (common.sharding)."""
  from h4w_jax.training import optim, step as step_lib, tasks
  task = tasks.from_config(config, device_count=1)
  tx = optim.make_optimizer(lambda _: 1e-4, grad_clip_norm)
  abstract = jax.eval_shape(lambda: step_lib.init_state(jax.random.key(0), task.model_config,
                                                        tx, task.init_variables))
  return ['/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)
          for path, _ in jax.tree_util.tree_leaves_with_path(abstract)]


def check_training(config, *, devices: int | None = None, processes: int | None = None) -> None:
  """Every training setting that can be judged before the run starts; raises ConfigError."""
  from h4w_datasets import registry
  devices = jax.device_count() if devices is None else devices
  processes = jax.process_count() if processes is None else processes
  from h4w_jax.training import tasks
  c = Checker(config)
  check_devices(c, devices, processes)
  task = c.get('task', 'wholebody')
  if task not in tasks.TASKS:
    c.fail('task', f'must be one of {", ".join(map(repr, tasks.TASKS))}, got {task!r}')
  datasets = [*(c.get('trainset_3d') or ()), *(c.get('trainset_2d') or ())]
  if not datasets:
    c.fail('trainset_3d/trainset_2d', 'name no dataset; at least one is needed')
  synthetic = bool(c.get('synthetic'))
  check_data(c, datasets, registry.HAND_NAMES if task == 'hand' else registry.NAMES,
             synthetic=synthetic)
  if task == 'hand' and c.get('data.source', 'folder') != 'folder':
    c.fail('data.source', "must be 'folder' for the hand-only model (its datasets have no TFDS "
           f"builders), got {c.get('data.source')!r}")
  if synthetic:
    c.integer('synthetic_images', 1, 99)

  depths = [c.integer(f'model.{f}') for f in ('body_depth', 'hand_depth', 'face_depth')]
  for field, depth in zip(('body_depth', 'hand_depth', 'face_depth'), depths):
    if depth is not None and depth not in resnet.STAGES:
      c.fail(f'model.{field}', f'must be one of {sorted(resnet.STAGES)}, got {depth}')
  c.choice('batchnorm', BATCHNORM)
  c.choice('compute_dtype', COMPUTE_DTYPES)
  c.choice('model.remat', ('none', 'blocks'))
  c.integer('data.prefetch_batches', 1)
  c.choice('guard.host_transfers', ('allow', 'log', 'disallow'))
  c.number('guard.divergence_factor', what=' (0: no divergence warning)')
  c.integer('guard.divergence_logs', 0, what=' (0: no growth warning)')
  c.number('hang_timeout_seconds', what=' (0: no watchdog)')

  c.integer('seed')
  start, end = c.integer('start_epoch', 0), c.integer('end_epoch', 1)
  if start is not None and end is not None and end <= start:
    c.fail('end_epoch', f'must be greater than config.start_epoch ({start}), got {end}')
  c.integer('total_steps', 0, what=' (0: end_epoch - start_epoch epochs)')
  c.number('lr', positive=True)
  c.number('lr_dec_factor', positive=True)
  milestones = c.get('lr_dec_epoch')
  try:
    if any(isinstance(m, bool) or not isinstance(m, int) for m in milestones):
      raise TypeError
  except TypeError:
    c.fail('lr_dec_epoch', f'must be a sequence of epoch numbers, e.g. (4, 6), got {milestones!r}')
  c.number('grad_clip_norm', what=' (0: no clipping)')
  c.integer('log_every', 1)
  c.integer('image_every', 0, what=' (0: no overlay images)')
  c.integer('checkpoint_every', 0, what=' (0: at every epoch end)')
  c.integer('keep_checkpoints', 1)
  c.integer('stop_after_steps', 0)
  for field in ('init.checkpoint', 'init.body_backbone', 'init.hand_backbone',
                'init.face_backbone'):
    c.existing(field, 'file or folder' if field == 'init.checkpoint' else 'file')

  # The state's names need a valid model, and tracing it costs seconds: only for rules that
  # do not match everything (the default '.*' does).
  if not c.problems and not _match_everything(c.get('sharding_rules')):
    check_rules(c, _state_paths(config, float(c.get('grad_clip_norm'))))
  else:
    check_rules(c, [])
  c.done()


def _match_everything(rules) -> bool:
  try:
    return all(re.fullmatch(pattern, '') is not None for pattern, _ in rules)
  except (TypeError, ValueError, re.error):
    return False
