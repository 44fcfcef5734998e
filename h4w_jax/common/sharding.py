"""Device mesh and parameter sharding, declared as data (big_vision style).

    config.mesh = (('data', -1), ('fsdp', 1))        # -1: all remaining devices
    config.sharding_rules = (('.*', 'fsdp'),)        # ordered (regex, tactic)

Tactics: 'replicate' (every device holds the leaf) and 'fsdp' (the leaf's
largest dimension divisible by the fsdp axis is split over it). The batch is
split over every mesh axis, so the mesh's devices all take part in data
parallelism; fsdp only changes where parameters and optimizer state live.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ('data', 'fsdp')


def make_mesh(axes: Sequence[tuple[str, int]], devices=None) -> Mesh:
  """A Mesh with named axes; one size may be -1 (the rest of the devices)."""
  devices = list(jax.devices() if devices is None else devices)
  names = [name for name, _ in axes]
  sizes = [int(size) for _, size in axes]
  if sizes.count(-1) > 1:
    raise ValueError(f'mesh {axes}: at most one axis may be -1')
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(f'mesh {axes}: {len(devices)} devices do not divide by {known}')
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ValueError(f'mesh {axes} needs {math.prod(sizes)} devices, {len(devices)} are present')
  for name in BATCH_AXES:
    if name not in names:
      names.append(name)
      sizes.append(1)
  grid = np.asarray(devices, dtype=object).reshape(sizes)
  return Mesh(grid, tuple(names))


def _fsdp_spec(shape, axis_size: int) -> P:
  if axis_size == 1:
    return P()
  order = sorted(range(len(shape)), key=lambda d: -shape[d])
  for dim in order:
    if shape[dim] % axis_size == 0:
      spec = [None] * len(shape)
      spec[dim] = 'fsdp'
      return P(*spec)
  return P()


def leaf_specs(tree, rules: Sequence[tuple[str, str]], mesh: Mesh):
  """PartitionSpecs for a pytree of arrays/ShapeDtypeStructs by the first matching rule."""
  compiled = [(re.compile(pattern), tactic) for pattern, tactic in rules]
  fsdp_size = mesh.shape['fsdp']

  def spec(path, leaf):
    name = '/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)
    for pattern, tactic in compiled:
      if pattern.fullmatch(name) or pattern.match(name):
        if tactic == 'replicate':
          return P()
        if tactic == 'fsdp':
          return _fsdp_spec(getattr(leaf, 'shape', ()), fsdp_size)
        raise ValueError(f'sharding rule {pattern.pattern!r}: unknown tactic {tactic!r}')
    return P()
  return jax.tree_util.tree_map_with_path(spec, tree)


def tree_shardings(tree, rules, mesh: Mesh):
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), leaf_specs(tree, rules, mesh),
                      is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over every batch axis of the mesh."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def constrain_batch(x):
  """Pins an activation's leading (batch) axis to the mesh's batch axes.

  A no-op unless the function is traced under a mesh with those axes
  (`jax.set_mesh(mesh)`, as the training and evaluation loops do). Without the
  pin, XLA's propagation may follow an fsdp-sharded weight and split
  activations by channel (each device then holds every sample: all-gathers of
  activations instead of the weights).
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or not set(BATCH_AXES) <= set(mesh.axis_names):
    return x
  return jax.lax.with_sharding_constraint(x, P(BATCH_AXES))


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Per-host numpy batch -> global jax.Arrays sharded over the batch axes.

  Hosts hold consecutive slices of the global batch (process order), which is
  what the input pipeline's global positions assume.
  """
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      local_batch)
