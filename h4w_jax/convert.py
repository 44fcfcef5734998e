"""Strict conversion between upstream PyTorch snapshots and our Flax variables.

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

The stage tools follow upstream's `tool/` scripts (SPEC_MODEL.md §14) on our
checkpoints: `reset_epoch`, `merge_hand`, and the backbone imports of
`convert_simple_to_pose2pose.py` and torchvision's ImageNet weights.

Command line:

  python -m h4w_jax.convert SNAPSHOT.pth.tar OUT_DIR
  python -m h4w_jax.convert --to-torch CKPT_DIR OUT.pth.tar
  python -m h4w_jax.convert reset-epoch CKPT_DIR OUT_DIR
  python -m h4w_jax.convert merge-hand BODY_DIR HAND OUT_DIR --init INIT_DIR [--fix-prefix]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from h4w_jax import torch_pickle

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
  """A state dict and a variables tree do not match; lists every difference."""

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
        lines += [f'    {item}' for item in items]
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

def _leaves(tree: Mapping, prefix: VarPath = ()) -> Iterator[tuple[VarPath, Any]]:
  for name, value in tree.items():
    if isinstance(value, Mapping):
      yield from _leaves(value, prefix + (name,))
    else:
      yield prefix + (name,), value


def _nest(flat: Mapping[VarPath, Any]) -> dict:
  tree: dict = {}
  for path, value in flat.items():
    node = tree
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = value
  return tree


def _shape_str(shape) -> str:
  return str(tuple(int(s) for s in shape))


def shapes(variables: Mapping) -> dict:
  """The same tree with `jax.ShapeDtypeStruct` leaves (a target for `torch_to_flax`)."""
  import jax
  return _nest({p: jax.ShapeDtypeStruct(np.shape(v), v.dtype) for p, v in _leaves(variables)})


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
  old = dict(_leaves(subtree(variables, module)))
  if not old:
    raise ValueError(f'replacing {where}: the model has no such module')
  new = dict(_leaves(part))
  mismatched = [f'{"/".join(p)}: {_shape_str(np.shape(new[p]))} replaces '
                f'{_shape_str(np.shape(old[p]))}'
                for p in new if p in old and np.shape(new[p]) != np.shape(old[p])]
  unexpected = ['/'.join(p) for p in new if p not in old]
  missing = ['/'.join(p) for p in old if p not in new]
  if unexpected or missing or mismatched:
    raise ConversionError(f'replacing {where}', unexpected, missing, mismatched)
  flat = {}
  for path, value in _leaves(variables):
    key = (path[0],) + path[len(module) + 1:]
    inside = tuple(path[1:len(module) + 1]) == tuple(module)
    flat[path] = new[key] if inside else value
  return _nest(flat)


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
    ConversionError naming every unexpected key, every unfilled variable and
    every shape mismatch.
  """
  targets = dict(_leaves(target))
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
        mismatched.append(f'{key}: {value.dtype} {_shape_str(value.shape)}, '
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
    if array.shape != tuple(want.shape):
      torch_shape = to_torch_layout(np.empty(want.shape, np.bool_)).shape
      mismatched.append(f'{key}: {_shape_str(value.shape)} in the file, the model needs '
                        f'{_shape_str(torch_shape)} ({"/".join(path)} {_shape_str(want.shape)})')
      wrong.add(path)  # reported once, as a mismatch, not also as missing
      continue
    filled[path] = np.asarray(array, dtype=getattr(want, 'dtype', None), order='C')
  prefix = PREFIX if any(k.startswith(PREFIX) for k in state_dict) else ''
  missing = [f'{"/".join(p)} (from {torch_key(p, prefix)})' for p in targets
             if p not in filled and p not in wrong]
  if unexpected or missing or mismatched:
    raise ConversionError(where, unexpected, missing, mismatched)
  return _nest({p: filled[p] for p in targets})


def _modules(variables: Mapping) -> dict[VarPath, dict[str, dict[str, Any]]]:
  """module path -> {collection: {leaf name: value}}, in order of first appearance."""
  modules: dict[VarPath, dict[str, dict[str, Any]]] = {}
  for collection in ('params', 'batch_stats'):
    for path, value in _leaves(variables.get(collection, {})):
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
  for module, by_collection in _modules(variables).items():
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


# ---------------------------------------------------------------------------
# Upstream snapshots
# ---------------------------------------------------------------------------

def _is_state_dict(obj: Any, dotted: bool = False) -> bool:
  """str -> array; `dotted`: and every key names a module's tensor ('conv1.weight')."""
  return (isinstance(obj, Mapping) and len(obj) > 0 and
          all(isinstance(k, str) and (not dotted or '.' in k) and isinstance(v, np.ndarray)
              for k, v in obj.items()))


def load_snapshot(path: str | os.PathLike) -> tuple[collections.OrderedDict, int | None, dict]:
  """Reads an upstream snapshot without torch.

  Args:
    path: `snapshot_{epoch}.pth.tar` ({'epoch', 'network', 'optimizer'?}) or
      a raw state dict (e.g. `body_pose_resnet_50_256x192.pth.tar`).
  Returns:
    (state_dict, epoch, extras): the state dict as an OrderedDict of numpy
    arrays, the epoch (None for a raw state dict), and every other entry of
    the file (e.g. 'optimizer').
  Raises:
    UnsafePickleError for a file that names a global outside the allow-list;
    ValueError for a file that is not a checkpoint.
  """
  obj = torch_pickle.load(path)
  if isinstance(obj, Mapping) and 'network' in obj:
    network = obj['network']
    if not _is_state_dict(network):
      raise ValueError(f'{path}: its "network" entry is not a state dict of tensors')
    epoch = obj.get('epoch')
    if epoch is not None and not isinstance(epoch, int):
      raise ValueError(f'{path}: epoch {epoch!r} is not an integer')
    extras = {k: v for k, v in obj.items() if k not in ('network', 'epoch')}
    return collections.OrderedDict(network), epoch, extras
  if _is_state_dict(obj, dotted=True):
    return collections.OrderedDict(obj), None, {}
  if isinstance(obj, Mapping):
    raise ValueError(f'{path}: a dict without a "network" entry (keys: '
                     f'{sorted(map(str, obj))[:10]}), and not a state dict of tensors')
  raise ValueError(f'{path}: holds a {type(obj).__name__}, not a checkpoint')


def save_snapshot(path: str | os.PathLike, state_dict: Mapping[str, np.ndarray],
                  epoch: int | None) -> None:
  """Writes {'epoch', 'network'} as upstream's tools do, loadable by `torch.load`."""
  torch_pickle.save(path, {'epoch': epoch, 'network': collections.OrderedDict(state_dict)})


# ---------------------------------------------------------------------------
# Our checkpoints (orbax)
# ---------------------------------------------------------------------------

VARIABLES_DIR = 'variables'
META_FILE = 'meta.json'
FORMAT = 'h4w_jax.variables/1'


def save_checkpoint(directory: str | os.PathLike, variables: Mapping, epoch: int | None, *,
                    source: str | os.PathLike | None = None,
                    num_batches_tracked: Mapping[str, int] | None = None,
                    notes: Mapping[str, Any] | None = None) -> Path:
  """Writes `directory/variables` (an orbax PyTree checkpoint) and `directory/meta.json`.

  Args:
    directory: created if needed; must not hold a checkpoint already.
    variables: {'params': ..., 'batch_stats': ...} of numpy or jax arrays.
    epoch: the last finished epoch, as upstream numbers them (training
      resumes at epoch + 1).
    source: the file the weights came from, for the record.
    num_batches_tracked: torch BatchNorm counters to give back on export.
    notes: more JSON-able facts for meta.json (e.g. what was re-initialised).
  Returns:
    The directory.
  """
  import orbax.checkpoint as ocp
  directory = Path(directory).absolute()
  if (directory / VARIABLES_DIR).exists() or (directory / META_FILE).exists():
    raise FileExistsError(f'{directory}: already holds a checkpoint; remove it first')
  directory.mkdir(parents=True, exist_ok=True)
  host = _nest({p: np.asarray(v) for p, v in _leaves(variables)})
  with ocp.StandardCheckpointer() as checkpointer:  # leaving the block waits for the write
    checkpointer.save(directory / VARIABLES_DIR, host)
  meta = {'format': FORMAT, 'epoch': epoch, 'source': None if source is None else str(source)}
  if num_batches_tracked:
    meta['num_batches_tracked'] = dict(num_batches_tracked)
  meta.update(notes or {})
  # Written last: a directory with meta.json holds a complete checkpoint.
  (directory / META_FILE).write_text(json.dumps(meta, indent=1) + '\n')
  return directory


def load_checkpoint(directory: str | os.PathLike) -> tuple[dict, dict]:
  """Reads a checkpoint of `save_checkpoint`.

  Returns:
    (variables, meta): nested dicts of numpy arrays (keys sorted), and the
    metadata dict ('epoch', 'source', maybe 'num_batches_tracked', notes).
  """
  import orbax.checkpoint as ocp
  directory = Path(directory).absolute()
  meta_path = directory / META_FILE
  if not meta_path.is_file() or not (directory / VARIABLES_DIR).is_dir():
    raise ValueError(f'{directory}: not a checkpoint written by h4w_jax.convert '
                     f'(needs {META_FILE} and {VARIABLES_DIR}/)')
  meta = json.loads(meta_path.read_text())
  if meta.get('format') != FORMAT:
    raise ValueError(f'{directory}: unknown checkpoint format {meta.get("format")!r}')
  with ocp.StandardCheckpointer() as checkpointer:
    variables = checkpointer.restore(directory / VARIABLES_DIR)
  return _nest({p: np.asarray(v) for p, v in _leaves(variables)}), meta


def read_state_dict(path: str | os.PathLike) -> collections.OrderedDict:
  """A torch-style state dict from an upstream snapshot file or one of our checkpoints."""
  if Path(path).is_dir():
    variables, meta = load_checkpoint(path)
    return flax_to_torch(variables, meta.get('num_batches_tracked', 0))
  return load_snapshot(path)[0]


# ---------------------------------------------------------------------------
# Stage tools (upstream tool/*.py)
# ---------------------------------------------------------------------------

HAND_BACKBONE = ('hand_roi_net', 'backbone')
# merge_hand_to_all.py deletes these from the whole-body snapshot: stage 3
# starts them from their train-mode init (missing keys under strict=False).
REINITIALISED = ('hand_position_net', 'hand_rotation_net')
# Hand-snapshot prefix that merge_hand_to_all.py copies; our and Pose2Pose's
# hand snapshots use the second one (quirk Q12).
HAND_PREFIX = 'module.hand_backbone.'
POSE2POSE_PREFIX = 'module.backbone.'


def reset_epoch(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
  """tool/reset_epoch.py on our checkpoints: a copy of `src` with epoch 0."""
  variables, meta = load_checkpoint(src)
  notes = {k: v for k, v in meta.items()
           if k not in ('format', 'epoch', 'source', 'num_batches_tracked')}
  return save_checkpoint(dst, variables, 0, source=src,
                         num_batches_tracked=meta.get('num_batches_tracked'), notes=notes)


def hand_backbone_state(hand_state_dict: Mapping[str, Any], fix_prefix: bool = False,
                        where: str = 'hand snapshot') -> dict[str, Any]:
  """The hand backbone's keys of a hand snapshot, with the prefix removed.

  Upstream copies keys containing `module.hand_backbone`; with `fix_prefix`
  keys under `module.backbone.` (what Pose2Pose's hand model saves) count as
  well. Raises ValueError if none match, where upstream silently copies
  nothing.
  """
  prefixes = [HAND_PREFIX] + ([POSE2POSE_PREFIX] if fix_prefix else [])
  found = {p: {k[len(p):]: v for k, v in hand_state_dict.items() if k.startswith(p)}
           for p in prefixes}
  found = {p: keys for p, keys in found.items() if keys}
  if not found:
    tops = sorted({k.removeprefix(PREFIX).split('.')[0] for k in hand_state_dict})
    hint = '' if fix_prefix else '; pass fix_prefix (--fix-prefix) to take module.backbone.*'
    raise ValueError(f'{where}: no key starts with {" or ".join(prefixes)} '
                     f'(its modules: {tops}){hint}')
  if len(found) > 1:
    raise ValueError(f'{where}: has both {" and ".join(found)} keys; which one is the '
                     'hand backbone is ambiguous')
  return next(iter(found.values()))


def merge_hand(body: Mapping, hand_state_dict: Mapping[str, Any], init_variables: Mapping, *,
               fix_prefix: bool = False, where: str = 'hand snapshot') -> dict:
  """tool/merge_hand_to_all.py: the stage-3 start from stage-1 and stage-2 weights.

  Args:
    body: variables of the whole-body model after stage 1.
    hand_state_dict: the hand model's state dict (torch keys; from
      `read_state_dict`). Its backbone (see `hand_backbone_state`) must fill
      the whole hand RoI backbone.
    init_variables: variables of a freshly (train-mode) initialised model;
      only `REINITIALISED` are taken from it. Upstream deletes those heads
      from the body snapshot so that stage 3 keeps their init.
    fix_prefix: also take hand keys under `module.backbone.` (quirk Q12).
  Returns:
    The merged variables (the caller saves them with epoch 0).
  """
  hand = hand_backbone_state(hand_state_dict, fix_prefix, where)
  target = shapes(subtree(body, HAND_BACKBONE))
  merged = graft(body, HAND_BACKBONE, torch_to_flax(hand, target, where))
  for name in REINITIALISED:
    merged = graft(merged, (name,), subtree(init_variables, (name,)))
  return merged


def resnet_shapes(depth: int) -> dict:
  """Variable shapes of our torchvision-named ResNet backbone (`h4w_jax.resnet`)."""
  import jax
  import jax.numpy as jnp
  from h4w_jax import resnet
  module = resnet.ResNetBackbone(depth)
  return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                            train=False))


def _import_backbone(state_dict: Mapping[str, Any], drop: Sequence[str], target: Mapping,
                     where: str) -> tuple[dict, list[str]]:
  plain = {k.removeprefix(PREFIX): v for k, v in state_dict.items()}
  dropped = [k for k in plain if k.startswith(tuple(drop))]
  kept = {k: v for k, v in plain.items() if not k.startswith(tuple(drop))}
  return torch_to_flax(kept, target, where), dropped


def import_torchvision_resnet(state_dict: Mapping[str, Any], depth: int,
                              target: Mapping | None = None,
                              where: str = 'torchvision ResNet') -> tuple[dict, list[str]]:
  """ImageNet weights of torchvision's resnet18/50 -> one backbone's variables.

  Args:
    state_dict: torchvision keys (`conv1.weight`, `layer1.0.conv1.weight`,
      ..., `fc.*`), optionally with the `module.` prefix.
    depth: 18 or 50.
    target: the backbone's variable shapes; default `resnet_shapes(depth)`.
  Returns:
    ({'params', 'batch_stats'} of the backbone, the dropped keys: `fc.*`,
    the classifier, which the backbone does not have).
  """
  return _import_backbone(state_dict, ('fc.',), target or resnet_shapes(depth), where)


def import_pose_resnet(state_dict: Mapping[str, Any], target: Mapping | None = None,
                       where: str = 'pose ResNet') -> tuple[dict, list[str]]:
  """tool/convert_simple_to_pose2pose.py: SimpleBaseline's ResNet-50 -> body backbone.

  Upstream renames every key to `module.backbone.<key>` and loads with
  strict=False, so `deconv_layers.*` and `final_layer.*` (the 2D heatmap
  head) are silently ignored; here they are dropped and returned.

  Returns:
    ({'params', 'batch_stats'} of the backbone, the dropped keys).
  """
  return _import_backbone(state_dict, ('deconv_layers.', 'final_layer.'),
                          target or resnet_shapes(50), where)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def model_variable_shapes() -> Mapping:
  """Shapes of the default model's variables; the model code is imported only here."""
  from h4w_jax import model
  return model.variable_shapes()


def summarize(variables: Mapping) -> list[tuple[str, int, int]]:
  """(top-level module, torch tensors, parameters) rows; tensors count BN counters."""
  rows: dict[str, list[int]] = {}
  for module, by_collection in _modules(variables).items():
    row = rows.setdefault(module[0], [0, 0])
    params = by_collection.get('params', {})
    stats = by_collection.get('batch_stats', {})
    row[0] += len(params) + len(stats) + ('mean' in stats)
    row[1] += sum(int(np.prod(np.shape(v))) for v in params.values())
  return [(name, n, size) for name, (n, size) in rows.items()]


def _print_summary(variables: Mapping, epoch: int | None) -> None:
  rows = summarize(variables)
  print(f'epoch: {epoch}')
  print(f'{"module":<20} {"tensors":>8} {"parameters":>12}')
  for name, n, size in rows:
    print(f'{name:<20} {n:>8} {size:>12,}')
  print(f'{"total":<20} {sum(r[1] for r in rows):>8} {sum(r[2] for r in rows):>12,}')


def _from_torch(args) -> None:
  state_dict, epoch, extras = load_snapshot(args.snapshot)
  variables = torch_to_flax(state_dict, model_variable_shapes(), where=str(args.snapshot))
  save_checkpoint(args.out, variables, epoch, source=args.snapshot,
                  num_batches_tracked=batches_tracked(state_dict))
  _print_summary(variables, epoch)
  for name in extras:  # upstream never restores the optimizer either (quirk Q13)
    print(f'not converted: {name!r}')
  print(f'wrote {args.out}')


def _to_torch(args) -> None:
  variables, meta = load_checkpoint(args.snapshot)
  save_snapshot(args.out, flax_to_torch(variables, meta.get('num_batches_tracked', 0)),
                meta.get('epoch'))
  _print_summary(variables, meta.get('epoch'))
  print(f'wrote {args.out}')


def _reset_epoch(args) -> None:
  reset_epoch(args.src, args.out)
  print(f'wrote {args.out} (epoch 0)')


def _merge_hand(args) -> None:
  body, _ = load_checkpoint(args.body)
  if args.init:
    init, init_source = load_checkpoint(args.init)[0], str(args.init)
  else:
    import jax
    from h4w_jax import model
    heads = {c: {n: t[n] for n in REINITIALISED if n in t} for c, t in shapes(body).items()}
    init = model.upstream_head_init(jax.random.key(args.seed), heads)
    init_source = f"upstream's init_weights (h4w_jax.model.upstream_head_init, seed {args.seed})"
  merged = merge_hand(body, read_state_dict(args.hand), init, fix_prefix=args.fix_prefix,
                      where=str(args.hand))
  save_checkpoint(args.out, merged, 0, source=args.body,
                  notes={'hand_source': str(args.hand), 'reinitialised': list(REINITIALISED),
                         'init_source': init_source})
  print(f'wrote {args.out} (epoch 0): hand backbone from {args.hand}, '
        f'{" and ".join(REINITIALISED)} from {init_source}')


def _parser(command: str | None) -> argparse.ArgumentParser:
  prog = 'python -m h4w_jax.convert'
  if command == 'reset-epoch':
    p = argparse.ArgumentParser(f'{prog} reset-epoch',
                                description='Copy a checkpoint with epoch 0 (tool/reset_epoch.py).')
    p.add_argument('src', help='checkpoint directory')
    p.add_argument('out', help='new checkpoint directory')
    p.set_defaults(run=_reset_epoch)
  elif command == 'merge-hand':
    p = argparse.ArgumentParser(
        f'{prog} merge-hand', description='Stage-3 start (tool/merge_hand_to_all.py): the body '
        'checkpoint with the hand snapshot\'s backbone as hand_roi_net/backbone, '
        'hand_position_net and hand_rotation_net re-initialised as upstream does, epoch 0.')
    p.add_argument('body', help='whole-body checkpoint directory (stage 1)')
    p.add_argument('hand', help='hand snapshot (.pth.tar) or checkpoint directory (stage 2)')
    p.add_argument('out', help='new checkpoint directory')
    p.add_argument('--init', default=None,
                   help='take the re-initialised heads from this checkpoint directory '
                        "(default: upstream's train-mode init_weights, drawn here)")
    p.add_argument('--seed', type=int, default=0, help='seed of the default head init')
    p.add_argument('--fix-prefix', action='store_true',
                   help='also take the hand backbone from module.backbone.* keys (quirk Q12)')
    p.set_defaults(run=_merge_hand)
  else:
    p = argparse.ArgumentParser(
        prog, description='Convert an upstream snapshot to an orbax checkpoint, or back with '
        '--to-torch. Stage tools: reset-epoch, merge-hand (see their --help).')
    p.add_argument('snapshot', help='SNAPSHOT.pth.tar, or CKPT_DIR with --to-torch')
    p.add_argument('out', help='OUT_DIR, or OUT.pth.tar with --to-torch')
    p.add_argument('--to-torch', action='store_true',
                   help='write {"epoch", "network"} for upstream from a checkpoint directory')
  return p


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  command = argv[0] if argv and argv[0] in ('reset-epoch', 'merge-hand') else None
  args = _parser(command).parse_args(argv[1:] if command else argv)
  run = getattr(args, 'run', None) or (_to_torch if args.to_torch else _from_torch)
  try:
    run(args)
  except (ValueError, OSError, torch_pickle.UnsafePickleError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
