"""Strict key mapping between upstream PyTorch state dicts and our Flax variables.

Upstream (`main/train.py`) saves `{'epoch', 'network', 'optimizer'}` as
`snapshot_{epoch}.pth.tar`, where 'network' is the state dict of
`DataParallel(Model)`. It loads with `load_state_dict(strict=False)`, which
ignores missing and extra keys (quirk Q11); here every key must land and
every variable must be filled, or the error lists all that does not fit.

The mapping is a rule, not a table, because our modules carry the torch
attribute names (see `h4w_jax/resnet.py`):

  * drop the DataParallel prefix `module.`; split on '.'; join a numeric
    segment to the one before with '_': `layer1.0.downsample.0.weight` ->
    `layer1_0/downsample_0/...`, `box_net.deconv.3` -> `box_net/deconv_3`;
  * leaves: `weight` -> `kernel` (Conv, Dense, ConvTranspose: 2-D and more)
    or `scale` (BatchNorm: 1-D), `bias` -> `bias`, all in 'params';
    `running_mean` -> `mean`, `running_var` -> `var` in 'batch_stats';
    `num_batches_tracked` is checked (an integer scalar) and not kept;
  * layouts: an n-D kernel (n >= 2) is transposed by (2, ..., n-1, 1, 0):
    Conv2d OIHW -> HWIO, ConvTranspose2d IOHW -> (kh, kw, O, I) which flax
    `ConvTranspose(transpose_kernel=True)` stores, Linear (out, in) -> (in, out).

`num_batches_tracked` only matters to torch's BatchNorm with momentum=None,
which upstream never uses. A converted checkpoint keeps the values in its
metadata so that `--to-torch` writes them back; checkpoints that never came
from torch export 0.
"""

from __future__ import annotations

import collections
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

PREFIX = 'module.'
COUNTER = 'num_batches_tracked'
_STATS = {'running_mean': 'mean', 'running_var': 'var'}
_STATS_BACK = {v: k for k, v in _STATS.items()}
# Flax leaves in the order torch lists a module's keys.
_TORCH_ORDER = (('params', ('kernel', 'scale', 'bias')), ('batch_stats', ('mean', 'var')))
# Keys of the SMPL-X layer's buffers: upstream's save_model deletes them.
_SKIPPED = 'smplx_layer'

VarPath = tuple[str, ...]  # ('params', 'backbone', 'layer1_0', 'conv1', 'kernel')


class ConversionError(ValueError):
  """A state dict and a variables tree do not match; the attributes list every difference,
  the message the first `SHOWN` of each kind."""
  SHOWN = 10

  def __init__(self, where: str, unexpected: Sequence[str] = (),
               missing: Sequence[str] = (), mismatched: Sequence[str] = ()):
    self.unexpected = list(unexpected)
    self.missing = list(missing)
    self.mismatched = list(mismatched)
    lines = [f'{where}: the weights do not match the model']
    for title, items in ((f'{len(self.unexpected)} unexpected key(s), not in the model',
                          self.unexpected),
                         (f'{len(self.missing)} model variable(s) that no key fills',
                          self.missing),
                         (f'{len(self.mismatched)} shape/dtype mismatch(es)', self.mismatched)):
      if items:
        lines.append(f'  {title}:')
        lines += [f'    {item}' for item in items[:self.SHOWN]]
        if len(items) > self.SHOWN:
          lines.append(f'    ... (+{len(items) - self.SHOWN} more)')
    super().__init__('\n'.join(lines))


# ---------------------------------------------------------------------------
# Naming and layout rules
# ---------------------------------------------------------------------------

def module_path(torch_module: str) -> VarPath:
  """'body_rotation_net.body_conv.1' -> ('body_rotation_net', 'body_conv_1')."""
  out: list[str] = []
  for segment in torch_module.split('.') if torch_module else []:
    if segment.isdecimal() and out:
      out[-1] += '_' + segment  # a Sequential index names the layer inside it
    else:
      out.append(segment)
  return tuple(out)


def torch_module(path: Sequence[str]) -> str:
  """Inverse of `module_path`: ('layer1_0', 'downsample_0') -> 'layer1.0.downsample.0'."""
  segments = []
  for name in path:
    parts = name.split('_')
    i = len(parts)
    while i > 1 and parts[i - 1].isdecimal():
      i -= 1
    segments += ['_'.join(parts[:i])] + parts[i:]
  return '.'.join(segments)


def flax_path(key: str, ndim: int) -> VarPath | None:
  """Where a torch key lands: ('params'|'batch_stats', *modules, leaf).

  Args:
    key: a state-dict key, with or without the `module.` prefix.
    ndim: the tensor's rank; a 1-D `weight` is a BatchNorm scale.
  Returns:
    The path, or None for `num_batches_tracked` and unknown leaf names.
  """
  module, _, leaf = key.removeprefix(PREFIX).rpartition('.')
  path = module_path(module)
  if leaf == 'weight':
    return ('params',) + path + ('kernel' if ndim >= 2 else 'scale',)
  if leaf == 'bias':
    return ('params',) + path + ('bias',)
  if leaf in _STATS:
    return ('batch_stats',) + path + (_STATS[leaf],)
  return None


def torch_key(path: Sequence[str], prefix: str = PREFIX) -> str:
  """Inverse of `flax_path`.

  ('params', 'backbone', 'bn1', 'scale') -> 'module.backbone.bn1.weight'.
  """
  collection, *modules, leaf = path
  if collection == 'params':
    name = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'}.get(leaf)
  elif collection == 'batch_stats':
    name = _STATS_BACK.get(leaf)
  else:
    name = None
  if name is None:
    raise ValueError(f'no torch name for the variable {"/".join(path)}')
  return prefix + '.'.join(filter(None, [torch_module(modules), name]))


def to_flax_layout(x: np.ndarray) -> np.ndarray:
  """(O, I, *spatial) -> (*spatial, I, O); 1-D and scalars as they are."""
  if x.ndim < 2:
    return x
  return x.transpose(tuple(range(2, x.ndim)) + (1, 0))


def to_torch_layout(x: np.ndarray) -> np.ndarray:
  """Inverse of `to_flax_layout`: (*spatial, I, O) -> (O, I, *spatial)."""
  if x.ndim < 2:
    return x
  return x.transpose((x.ndim - 1, x.ndim - 2) + tuple(range(x.ndim - 2)))


# ---------------------------------------------------------------------------
# Trees (nested dicts, insertion order kept)
# ---------------------------------------------------------------------------

def leaves(tree: Mapping, prefix: VarPath = ()) -> Iterator[tuple[VarPath, Any]]:
  for name, value in tree.items():
    if isinstance(value, Mapping):
      yield from leaves(value, prefix + (name,))
    else:
      yield prefix + (name,), value


def nest(flat: Mapping[VarPath, Any]) -> dict:
  tree: dict = {}
  for path, value in flat.items():
    node = tree
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = value
  return tree


def shape_str(shape) -> str:
  return str(tuple(int(s) for s in shape))


def shapes(variables: Mapping) -> dict:
  """The same tree with `jax.ShapeDtypeStruct` leaves (a target for `torch_to_flax`)."""
  import jax
  return nest({p: jax.ShapeDtypeStruct(np.shape(v), v.dtype) for p, v in leaves(variables)})


def subtree(variables: Mapping, module: Sequence[str]) -> dict:
  """{collection: variables[collection][*module]} for each collection that has it."""
  out = {}
  for collection, tree in variables.items():
    node = tree
    for name in module:
      node = node.get(name) if isinstance(node, Mapping) else None
    if node is not None:
      out[collection] = node
  return out


def graft(variables: Mapping, module: Sequence[str], part: Mapping) -> dict:
  """A copy of `variables` with the subtree at `module` replaced by `part`.

  Args:
    variables: {'params': ..., 'batch_stats': ...}.
    module: the path of the module, e.g. ('hand_roi_net', 'backbone').
    part: {collection: subtree}, with the same leaves and shapes as the one
      it replaces.
  Raises:
    ConversionError listing every leaf that differs.
  """
  where = '/'.join(module)
  old = dict(leaves(subtree(variables, module)))
  if not old:
    raise ValueError(f'replacing {where}: the model has no such module')
  new = dict(leaves(part))
  mismatched = [f'{"/".join(p)}: {shape_str(np.shape(new[p]))} replaces '
                f'{shape_str(np.shape(old[p]))}'
                for p in new if p in old and np.shape(new[p]) != np.shape(old[p])]
  unexpected = ['/'.join(p) for p in new if p not in old]
  missing = ['/'.join(p) for p in old if p not in new]
  if unexpected or missing or mismatched:
    raise ConversionError(f'replacing {where}', unexpected, missing, mismatched)
  flat = {}
  for path, value in leaves(variables):
    key = (path[0],) + path[len(module) + 1:]
    inside = tuple(path[1:len(module) + 1]) == tuple(module)
    flat[path] = new[key] if inside else value
  return nest(flat)


# ---------------------------------------------------------------------------
# State dict <-> variables
# ---------------------------------------------------------------------------

def torch_to_flax(state_dict: Mapping[str, Any], target: Mapping,
                  where: str = 'state dict') -> dict:
  """Upstream state dict -> Flax variables, strictly.

  Args:
    state_dict: torch key -> array (numpy or anything `np.asarray` takes), as
      `load_snapshot` returns it; the `module.` prefix is optional. Keys of
      the SMPL-X layer (`smplx_layer`) are skipped, as upstream never saves
      them.
    target: the variables' shapes, e.g. `jax.eval_shape` of the model's init:
      {'params': ..., 'batch_stats': ...} with leaves that have `.shape` (and
      `.dtype`, which the arrays are cast to).
    where: names the source in errors.
  Returns:
    A tree like `target` (same order) of numpy arrays in the Flax layout.
  Raises:
    ConversionError naming every unexpected key, every unfilled variable,
    every shape mismatch and every tensor that is not finite floats.
  """
  targets = dict(leaves(target))
  filled: dict[VarPath, np.ndarray] = {}
  unexpected, mismatched, wrong = [], [], set()
  for key, value in state_dict.items():
    if _SKIPPED in key:
      continue
    value = np.asarray(value)
    if key.rpartition('.')[2] == COUNTER:
      module = module_path(key.removeprefix(PREFIX).rpartition('.')[0])
      if ('batch_stats',) + module + ('mean',) not in targets:
        unexpected.append(key)
      elif value.ndim != 0 or value.dtype.kind not in 'iu':
        mismatched.append(f'{key}: {value.dtype} {shape_str(value.shape)}, '
                          'a BatchNorm counter is an integer scalar')
      continue
    path = flax_path(key, value.ndim)
    # The reverse check keeps the rule a bijection (e.g. 'x.0' and 'x_0' may not both map).
    if path is None or path not in targets or path in filled or \
        torch_key(path, '') != key.removeprefix(PREFIX):
      unexpected.append(key)
      continue
    want = targets[path]
    array = to_flax_layout(value)
    if value.dtype.kind != 'f' and value.dtype.name != 'bfloat16':
      mismatched.append(f'{key}: {value.dtype} values, the model needs floats')
      wrong.add(path)
      continue
    if array.shape != tuple(want.shape):
      torch_shape = to_torch_layout(np.empty(want.shape, np.bool_)).shape
      mismatched.append(f'{key}: {shape_str(value.shape)} in the file, the model needs '
                        f'{shape_str(torch_shape)} ({"/".join(path)} {shape_str(want.shape)})')
      wrong.add(path)  # reported once, as a mismatch, not also as missing
      continue
    if not np.all(np.isfinite(value)):   # never load NaN weights as if they were trained
      mismatched.append(f'{key}: holds NaN or Inf values')
      wrong.add(path)
      continue
    filled[path] = np.asarray(array, dtype=getattr(want, 'dtype', None), order='C')
  prefix = PREFIX if any(k.startswith(PREFIX) for k in state_dict) else ''
  missing = [f'{"/".join(p)} (from {torch_key(p, prefix)})' for p in targets
             if p not in filled and p not in wrong]
  if unexpected or missing or mismatched:
    raise ConversionError(where, unexpected, missing, mismatched)
  return nest({p: filled[p] for p in targets})


def modules(variables: Mapping) -> dict[VarPath, dict[str, dict[str, Any]]]:
  """module path -> {collection: {leaf name: value}}, in order of first appearance."""
  modules: dict[VarPath, dict[str, dict[str, Any]]] = {}
  for collection in ('params', 'batch_stats'):
    for path, value in leaves(variables.get(collection, {})):
      modules.setdefault(path[:-1], {}).setdefault(collection, {})[path[-1]] = value
  return modules


def flax_to_torch(variables: Mapping, num_batches_tracked: int | Mapping[str, int] = 0,
                  prefix: str = PREFIX) -> collections.OrderedDict:
  """Flax variables -> upstream state dict (inverse of `torch_to_flax`).

  Args:
    variables: {'params': ..., 'batch_stats': ...}; other collections are an
      error, as upstream has nothing to put them in.
    num_batches_tracked: the value of every BatchNorm's counter, or a mapping
      torch key -> value (as `batches_tracked` returns; absent keys get 0).
    prefix: prepended to every key (DataParallel's `module.`).
  Returns:
    OrderedDict torch key -> numpy array in torch layout, each module's keys
    in torch's order (weight, bias, running_mean, running_var,
    num_batches_tracked).
  """
  extra = sorted(set(variables) - {'params', 'batch_stats'})
  if extra:
    raise ValueError(f'collections {extra} have no place in a torch state dict')
  out = collections.OrderedDict()
  unnamed = []
  for module, by_collection in modules(variables).items():
    stats = by_collection.get('batch_stats', {})
    leaves = [(c, n) for c, names in _TORCH_ORDER for n in names if n in by_collection.get(c, {})]
    unnamed += ['/'.join((c,) + module + (n,)) for c, tree in by_collection.items()
                for n in tree if (c, n) not in leaves]
    for collection, name in leaves:
      value = np.asarray(by_collection[collection][name])
      out[torch_key((collection,) + module + (name,), prefix)] = to_torch_layout(value)
    if 'mean' in stats:
      key = torch_key(('batch_stats',) + module + ('mean',), prefix).rpartition('.')[0]
      key = f'{key}.{COUNTER}'
      count = num_batches_tracked.get(key, 0) if isinstance(num_batches_tracked, Mapping) \
          else num_batches_tracked
      out[key] = np.asarray(count, np.int64)
  if unnamed:
    raise ValueError(f'variables with no torch name: {unnamed}')
  return out


def batches_tracked(state_dict: Mapping[str, Any]) -> dict[str, int]:
  """torch key -> value of every `num_batches_tracked` in a state dict."""
  return {k: int(np.asarray(v)) for k, v in state_dict.items()
          if k.rpartition('.')[2] == COUNTER}


