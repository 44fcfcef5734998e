"""The training step compiled for a mesh and read: collectives, dtypes, FLOPs, memory.

    XLA_FLAGS=... python -m h4w_jax.training.scaling --devices 8 --mesh 4,2 --json out.json

compiles (never runs) the exact step of `training.loop` on fake CPU devices
with abstract inputs and reports, per device and step: the bytes of every
collective kind from the module right after SPMD partitioning, next to the
analytic need of data parallelism and fsdp; the activations or batch that get
all-gathered (should be none); convolution dtypes; FLOPs per sample
(cost_analysis); memory (memory_analysis); the compile time. It is the engine
of bench/scaling.py and of tests/test_scaling.py. It must run in a fresh
process: the device count and the dump flags are fixed when JAX starts
(`main` sets them itself).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from typing import Any

REPO_CONFIGS = os.path.join(os.path.dirname(__file__), '..', '..')


def analytic_need(param_bytes: int, data: int, fsdp: int) -> dict[str, int]:
  """Collective bytes per device per step that the parallelism itself needs (f32 params).

  data parallel: the gradients' all-reduce (param_bytes). fsdp: the parameters'
  all-gather before use and the gradients' reduce-scatter (param_bytes each),
  plus, with data > 1, the all-reduce of each gradient shard over `data`.
  Re-gathering the parameters for the backward pass may add param_bytes more.
  """
  if fsdp == 1:
    return {'all-reduce': param_bytes if data > 1 else 0, 'total': param_bytes if data > 1 else 0}
  need = {'all-gather': param_bytes, 'reduce-scatter': param_bytes,
          'all-reduce': param_bytes // fsdp if data > 1 else 0}
  need['total'] = sum(need.values())
  return need


def _state_shapes(tree) -> set[tuple[int, ...]]:
  """Every state leaf's dims, sorted and without 1s: XLA may gather a kernel transposed,
  a BatchNorm scale as (1, C)."""
  import jax
  return {_dims(x.shape) for x in jax.tree.leaves(tree)}


def _dims(shape) -> tuple[int, ...]:
  return tuple(sorted(d for d in shape if d != 1))


def saved_activation_bytes(model, abstract_state, batch: int) -> int:
  """Bytes the backward pass keeps from the network's forward for `batch` samples (the
  residuals of its vjp in train mode; what config.model.remat trades for recompute)."""
  import jax
  import jax.numpy as jnp

  def residuals(params, stats, images):
    def forward(p):
      out, _ = model.apply({'params': p, 'batch_stats': stats}, images, train=True,
                           mutable=['batch_stats'])
      return sum(jnp.sum(x) for x in jax.tree.leaves(out))
    return jax.vjp(forward, params)[1]
  shapes = jax.eval_shape(residuals, abstract_state.params, abstract_state.batch_stats,
                          jax.ShapeDtypeStruct((batch, 512, 384, 3), jnp.float32))
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))


def report(config, human_model_path, dump_dir: str) -> dict[str, Any]:
  """Lowers and compiles `config`'s step on the current devices; returns the figures."""
  import jax
  import numpy as np
  from h4w_datasets import pipeline
  from h4w_jax.common import hlo, sharding
  from h4w_jax.models import outputs, targets
  from h4w_jax.training import loop

  mesh = sharding.make_mesh(config.mesh)
  parts = loop.make_parts(config, mesh, steps_per_epoch=1000)
  repl = sharding.replicated(mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  sds = lambda x, s: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s)
  state = jax.tree.map(sds, parts.abstract_state, parts.state_shardings)
  batch = {k: jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sharding)
           for k, (shape, dtype) in pipeline.train_batch_spec(config.batch_size).items()}
  layer = outputs.smplx_layer(human_model_path)
  target_layer = jax.tree.map(lambda x: sds(x, repl), targets.smplx_joints(layer))
  layer = jax.tree.map(lambda x: sds(x, repl), layer)
  halted = jax.ShapeDtypeStruct((), bool, sharding=repl)

  start = time.perf_counter()
  with jax.set_mesh(mesh):
    lowered = parts.step_fn.trace(state, batch, layer, target_layer, halted).lower()
  stablehlo = lowered.as_text()
  compiled = lowered.compile()
  compile_seconds = time.perf_counter() - start
  spmd = hlo.find_dump(dump_dir, 'train_step')

  params = parts.abstract_state.params
  param_bytes = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(params))
  param_count = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
  state_shapes = _state_shapes(parts.abstract_state)
  gathers = [c for c in hlo.collectives(spmd) if c.kind == 'all-gather']
  other_gathers = [c for c in gathers
                   if any(_dims(a.shape) not in state_shapes for a in c.arrays)]
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  memory = compiled.memory_analysis()
  data, fsdp = mesh.shape['data'], mesh.shape['fsdp']
  return {
      'mesh': {'data': data, 'fsdp': fsdp}, 'devices': jax.device_count(),
      'global_batch': config.batch_size, 'dtype': config.compute_dtype,
      'depths': [config.model.body_depth, config.model.hand_depth, config.model.face_depth],
      'remat': config.model.remat,
      'param_count': param_count, 'param_bytes': param_bytes,
      'collective_bytes': hlo.collective_bytes(spmd),
      'collective_counts': {k: sum(c.kind == k for c in hlo.collectives(spmd))
                            for k in hlo.COLLECTIVES},
      'analytic_need': analytic_need(param_bytes, data, fsdp),
      'non_parameter_all_gathers': [
          {'arrays': [f'{a.dtype}{list(a.shape)}' for a in c.arrays], 'bytes': c.nbytes}
          for c in other_gathers],
      'non_parameter_all_gather_bytes': sum(c.nbytes for c in other_gathers),
      'convolution_dtypes': hlo.convolution_dtypes(spmd),
      'dot_precisions': hlo.dot_precisions(stablehlo),
      'flops_per_sample': float(cost.get('flops', 0.0)) * jax.device_count() / config.batch_size,
      'temp_bytes_per_sample': memory.temp_size_in_bytes * jax.device_count() / config.batch_size,
      'saved_activation_bytes_per_sample': saved_activation_bytes(
          parts.model, parts.abstract_state, 1),
      'argument_bytes': memory.argument_size_in_bytes,
      'compile_seconds': compile_seconds,
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--devices', type=int, default=8)
  parser.add_argument('--mesh', default='8,1', help='data,fsdp')
  parser.add_argument('--per-device-batch', type=int, default=2)
  parser.add_argument('--depths', default='50,50,18', help='body,hand,face ResNet depths')
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--remat', default='none')
  parser.add_argument('--batchnorm', default='per_device')
  parser.add_argument('--human-model-path', default=None,
                      help='body models (default: the synthetic ones of the quickstart)')
  parser.add_argument('--json', default=None, help='write the report here')
  parser.add_argument('--dump-dir', default=None, help='keep the XLA dump here (default: removed)')
  args = parser.parse_args(argv)

  dump_dir = args.dump_dir or tempfile.mkdtemp(prefix='h4w_hlo_')
  from h4w_jax.common import hlo
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + hlo.dump_flags(dump_dir))
  import jax
  jax.config.update('jax_num_cpu_devices', args.devices)
  sys.path.insert(0, os.path.abspath(REPO_CONFIGS))
  from configs import default
  config = default.get_config()
  data, fsdp = (int(x) for x in args.mesh.split(','))
  config.mesh = (('data', data), ('fsdp', fsdp))
  config.batch_size = args.per_device_batch * args.devices
  config.model.body_depth, config.model.hand_depth, config.model.face_depth = (
      int(x) for x in args.depths.split(','))
  config.compute_dtype = args.dtype
  config.model.remat = args.remat
  config.batchnorm = args.batchnorm
  path = args.human_model_path
  if path is None:
    from smplx_jax.demo import default_model_path
    path = default_model_path()
  result = report(config, path, dump_dir)
  if not args.dump_dir:
    import shutil
    shutil.rmtree(dump_dir, ignore_errors=True)
  text = json.dumps(result, indent=1)
  if args.json:
    with open(args.json, 'w') as f:
      f.write(text + '\n')
  print(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
