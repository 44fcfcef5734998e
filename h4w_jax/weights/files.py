"""Weights on disk: upstream snapshots, our converted folders, training workdirs.

`load_variables(path)` is the one entry point that evaluation, prediction and
the converter share: a converted folder (meta.json + variables/), an upstream
`.pth(.tar)` snapshot, or a training workdir (its newest orbax step), each read
without torch and without plain pickle.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from h4w_jax.models import hand4whole as model_lib
from h4w_jax.models import hand_only
from h4w_jax.models import resnet
from h4w_jax.weights import torch_pickle
from h4w_jax.weights.keys import flax_to_torch, leaves, nest, torch_to_flax


class WeightsError(ValueError):
  """Weights that cannot be read or do not fit the model: the message names the path and why."""

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
  host = nest({p: np.asarray(v) for p, v in leaves(variables)})
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
  return nest({p: np.asarray(v) for p, v in leaves(variables)}), meta


def read_state_dict(path: str | os.PathLike) -> collections.OrderedDict:
  """A torch-style state dict from an upstream snapshot file, one of our converted
  checkpoints or a training workdir (its newest step)."""
  path = Path(path)
  if path.is_dir():
    if (path / META_FILE).is_file():
      variables, meta = load_checkpoint(path)
      return flax_to_torch(variables, meta.get('num_batches_tracked', 0))
    folder = _is_training_workdir(path)
    if folder is None:
      raise ValueError(f'{path}: neither a converted checkpoint ({META_FILE}) nor a training '
                       'workdir (checkpoints/<step>)')
    _, state = load_latest_state(folder)
    return flax_to_torch({'params': state['params'], 'batch_stats': state['batch_stats']})
  return load_snapshot(path)[0]


def read_variables(path: str | os.PathLike) -> tuple[dict, dict]:
  """(variables, meta) of a converted checkpoint or of a training workdir's newest step
  (meta {'epoch': None, 'source': ..., 'train_step': N} for a workdir)."""
  path = Path(path)
  if path.is_dir() and not (path / META_FILE).is_file():
    folder = _is_training_workdir(path)
    if folder is not None:
      step, state = load_latest_state(folder)
      return ({'params': state['params'], 'batch_stats': state['batch_stats']},
              {'epoch': None, 'source': str(folder), 'train_step': int(step)})
  return load_checkpoint(path)


def is_hand_state_dict(state_dict: Mapping[str, Any]) -> bool:
  """Whether a state dict is the hand-only model's (Pose2Pose parts='hand', or stage 2 here)."""
  plain = {k.removeprefix('module.') for k in state_dict}
  return all(k in plain for k in hand_only.SIGNATURE_KEYS) and \
      not any(k.startswith('hand_roi_net.') for k in plain)


def is_hand_variables(variables: Mapping) -> bool:
  params = variables.get('params', {})
  return 'rotation_net' in params and 'position_net' in params and 'hand_roi_net' not in params


def state_dict_depth(state_dict: Mapping[str, Any], prefix: str = 'module.backbone.') -> int:
  """The ResNet depth (resnet.STAGES) of the backbone under `prefix` in a state dict."""
  plain = {k[len(prefix):] for k in state_dict if k.startswith(prefix)}
  counts = tuple(len({k.split('.')[1] for k in plain if k.startswith(f'layer{stage}.')})
                 for stage in range(1, 5))
  kind = 'bottleneck' if 'layer1.0.conv3.weight' in plain else 'basic'
  for depth, stages in resnet.STAGES.items():
    if stages == (kind, counts):
      return depth
  raise ValueError(f'the backbone under {prefix!r} is a {kind} ResNet with {counts} blocks per '
                   f'stage: none of depths {sorted(resnet.STAGES)}')


# ---------------------------------------------------------------------------
# Training workdirs (orbax steps of h4w_jax.training.checkpoints)
# ---------------------------------------------------------------------------

def load_latest_state(directory, step: int | None = None) -> tuple[int, dict]:
  """(step, state as nested numpy dicts) of the newest (or the given) checkpoint.

  Works whatever devices wrote it (every array is read whole onto this host's
  first device). For inspection and tests; training resumes through
  `Manager.restore_latest`.
  """
  import orbax.checkpoint as ocp
  manager = ocp.CheckpointManager(Path(directory).absolute(),
                                  item_handlers={'state': ocp.StandardCheckpointHandler()})
  step = manager.latest_step() if step is None else step
  if step is None or step not in manager.all_steps():
    raise FileNotFoundError(f'{directory}: no finished checkpoint'
                            + ('' if step is None else f' for step {step}'))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  metadata = manager.item_metadata(step)['state']
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        metadata)
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  manager.close()
  return step, jax.tree.map(np.asarray, restored['state'])


# ---------------------------------------------------------------------------
# Any source, and the architecture read off the weights
# ---------------------------------------------------------------------------

def _resnet_depth(backbone_params, where: str) -> int:
  """The depth in resnet.STAGES whose block kind and blocks per stage these weights have."""
  counts = tuple(sum(k.startswith(f'layer{stage}_') for k in backbone_params)
                 for stage in range(1, 5))
  kind = 'bottleneck' if 'conv3' in backbone_params.get('layer1_0', {}) else 'basic'
  for depth, stages in resnet.STAGES.items():
    if stages == (kind, counts):
      return depth
  raise ValueError(f'{where}: a {kind} ResNet with {counts} blocks per stage is none of '
                   f'depths {sorted(resnet.STAGES)}')


def model_config_of(variables):
  """upstream's ModelConfig with the three backbone depths read off the weights (a
  HandModelConfig for the hand-only model of stage 2)."""
  params = variables['params']
  if is_hand_variables(variables):
    return hand_only.HandModelConfig(depth=_resnet_depth(params['backbone'], 'backbone'))
  return model_lib.ModelConfig(
      body_depth=_resnet_depth(params['backbone'], 'backbone'),
      hand_depth=_resnet_depth(params['hand_roi_net']['backbone'], 'hand_roi_net/backbone'),
      face_depth=_resnet_depth(params['face_roi_net']['backbone'], 'face_roi_net/backbone'))


def _is_training_workdir(path: Path) -> Path | None:
  """The orbax checkpoint folder of a training workdir (or the folder itself), else None."""
  for folder in (path / 'checkpoints', path):
    if folder.is_dir() and any(p.is_dir() and p.name.isdigit() for p in folder.iterdir()):
      return folder
  return None


def variable_shapes(model_cfg):
  """The variables' shapes of the whole-body (ModelConfig) or hand-only (HandModelConfig) model."""
  if isinstance(model_cfg, hand_only.HandModelConfig):
    return hand_only.variable_shapes(model_cfg)
  return model_lib.variable_shapes(model_cfg)


def load_variables(checkpoint, model_cfg) -> tuple[dict, str]:
  """{'params', 'batch_stats'} numpy trees that fit `model_cfg`, and a line saying what was read.

  Accepts a converter folder (meta.json + variables/), an upstream
  .pth(.tar) snapshot, or a training workdir (the newest of
  `checkpoints/<step>/`, or such a checkpoints folder itself). `model_cfg` is
  a ModelConfig (whole body) or a HandModelConfig (stage 2's hand model).
  """
  path = Path(checkpoint)
  if not path.exists():
    raise WeightsError(f'checkpoint {path} does not exist (give a converted checkpoint folder, an '
                    'upstream snapshot_<N>.pth.tar or a training workdir)')
  shapes = variable_shapes(model_cfg)
  try:
    if path.is_file():
      variables = torch_to_flax(read_state_dict(path), shapes, str(path))
      what = f'upstream snapshot {path}'
    elif (path / META_FILE).is_file():
      variables, meta = load_checkpoint(path)
      what = f'converted checkpoint {path} (epoch {meta.get("epoch")})'
    elif (folder := _is_training_workdir(path)) is not None:
      step, state = load_latest_state(folder)
      variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
      what = f'training checkpoint {folder}/{step}'
    else:
      raise WeightsError(f'checkpoint {path}: a folder without {META_FILE} (converted '
                      'checkpoint) or numbered orbax steps (training workdir, checkpoints/<step>)')
  except (ValueError, KeyError, FileNotFoundError) as e:
    raise WeightsError(f'checkpoint {path}: {e}') from e
  _check_shapes(variables, shapes, path, model_cfg)
  return variables, what


def _check_shapes(variables, shapes, path, model_cfg) -> None:
  got = {jax.tree_util.keystr(p): np.shape(v)
         for p, v in jax.tree_util.tree_leaves_with_path(variables)}
  want = {jax.tree_util.keystr(p): tuple(v.shape)
          for p, v in jax.tree_util.tree_leaves_with_path(shapes)}
  problems = [f'{k} missing' for k in want if k not in got]
  problems += [f'{k} unexpected' for k in got if k not in want]
  problems += [f'{k} {got[k]} vs {want[k]}' for k in want if k in got and got[k] != want[k]]
  if problems:
    more = f' (+{len(problems) - 5} more)' if len(problems) > 5 else ''
    if isinstance(model_cfg, hand_only.HandModelConfig):
      model = f'the hand-only model (depth {model_cfg.depth})'
      hint = 'Set --config.model.hand_depth=... to the trained one.'
    else:
      model = (f'the model (body/hand/face depth {model_cfg.body_depth}/{model_cfg.hand_depth}/'
               f'{model_cfg.face_depth})')
      hint = 'Set --config.model.body_depth=... (hand_depth, face_depth) to the trained ones.'
    raise WeightsError(f'checkpoint {path} does not fit {model}: {"; ".join(problems[:5])}'
                       f'{more}. {hint}')
