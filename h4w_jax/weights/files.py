"""Weights on disk: upstream snapshots, our converted folders, training workdirs.

`load_variables(path)` is the one entry point that evaluation, prediction and
the converter share: a converted folder (meta.json + variables/), an upstream
`.pth(.tar)` snapshot, or a training workdir (its newest orbax step), each read
without torch and without plain pickle.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Union

import jax
import numpy as np

from h4w_jax.common import atomic
from h4w_jax.models import hand4whole as model_lib
from h4w_jax.models import hand_only
from h4w_jax.models import resnet
from h4w_jax.weights import integrity, torch_pickle
from h4w_jax.weights.keys import flax_path, flax_to_torch, leaves, nest, torch_to_flax


log = logging.getLogger('h4w_jax.weights')


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
  """Writes `directory/variables` (an orbax PyTree checkpoint with checksums) and
  `directory/meta.json`, in that order.

  orbax renames `variables` into place when complete; meta.json is written
  last, atomically, so a folder with meta.json holds a complete checkpoint. A
  folder left with `variables/` but no meta.json by a killed run is an
  incomplete write: it is removed and written again.

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
  import shutil

  import orbax.checkpoint as ocp
  directory = Path(directory).absolute()
  if (directory / META_FILE).exists():
    raise FileExistsError(f'{directory}: already holds a checkpoint; remove it first')
  if (directory / VARIABLES_DIR).exists():
    log.warning('%s: %s/ without %s is an unfinished earlier write; writing it again',
                directory, VARIABLES_DIR, META_FILE)
    shutil.rmtree(directory / VARIABLES_DIR)
  directory.mkdir(parents=True, exist_ok=True)
  host = nest({p: np.asarray(v) for p, v in leaves(variables)})
  with ocp.StandardCheckpointer() as checkpointer:  # leaving the block waits for the write
    checkpointer.save(directory / VARIABLES_DIR, host)
  integrity.write_manifest(directory / VARIABLES_DIR)
  meta = {'format': FORMAT, 'epoch': epoch, 'source': None if source is None else str(source)}
  if num_batches_tracked:
    meta['num_batches_tracked'] = dict(num_batches_tracked)
  meta.update(notes or {})
  atomic.write_text(directory / META_FILE, json.dumps(meta, indent=1) + '\n')
  return directory


def load_checkpoint(directory: str | os.PathLike) -> tuple[dict, dict]:
  """Reads a checkpoint of `save_checkpoint`, its files checked against their checksums.

  Returns:
    (variables, meta): nested dicts of numpy arrays (keys sorted), and the
    metadata dict ('epoch', 'source', maybe 'num_batches_tracked', notes).
  Raises:
    ValueError naming the folder (and the file) for an incomplete, damaged
    or unreadable checkpoint.
  """
  import orbax.checkpoint as ocp
  directory = Path(directory).absolute()
  meta_path = directory / META_FILE
  if (directory / VARIABLES_DIR).is_dir() and not meta_path.is_file():
    raise ValueError(f'{directory}: an incomplete checkpoint ({VARIABLES_DIR}/ without '
                     f'{META_FILE}: its writer stopped before finishing); write it again')
  if not meta_path.is_file() or not (directory / VARIABLES_DIR).is_dir():
    raise ValueError(f'{directory}: not a checkpoint written by h4w_jax.convert '
                     f'(needs {META_FILE} and {VARIABLES_DIR}/)')
  try:
    meta = json.loads(meta_path.read_text())
  except (ValueError, UnicodeDecodeError) as e:
    raise ValueError(f'{meta_path}: not readable JSON ({integrity.one_line(e)})') from None
  if not isinstance(meta, dict) or meta.get('format') != FORMAT:
    raise ValueError(f'{directory}: unknown checkpoint format '
                     f'{meta.get("format") if isinstance(meta, dict) else meta!r}')
  verdict = integrity.verify(directory / VARIABLES_DIR)
  if not verdict.ok and verdict.reason != 'unverified':
    raise ValueError(f'{directory}/{VARIABLES_DIR}: damaged, {verdict.describe()}')
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      variables = checkpointer.restore(directory / VARIABLES_DIR)
  except Exception as e:   # TensorStore and JSON errors of damaged files come in many types
    integrity.quiet_closed_event_loop()
    raise ValueError(f'{directory}: orbax cannot read {VARIABLES_DIR}/ '
                     f'({integrity.one_line(e)})') from None
  variables = nest({p: np.asarray(v) for p, v in leaves(variables)})
  bad = nonfinite_paths(variables)
  if bad:
    raise ValueError(f'{directory}: NaN or Inf in {", ".join(bad[:3])}'
                     + (f' (+{len(bad) - 3} more)' if len(bad) > 3 else ''))
  return variables, meta


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

def step_numbers(directory) -> list[int]:
  """The finished steps in an orbax checkpoints folder, newest first (numbered folders only:
  unfinished saves and steps set aside have other names)."""
  directory = Path(directory)
  if not directory.is_dir():
    return []
  return sorted((int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()),
                reverse=True)


def nonfinite_paths(tree) -> list[str]:
  """'/'-joined paths of the float leaves of a nested dict of arrays with NaN or Inf."""
  return ['/'.join(map(str, p)) for p, v in leaves(tree)
          if np.asarray(v).dtype.kind in 'fc' and not np.all(np.isfinite(v))]


def _restore_on_host(directory: Path, step: int) -> dict:
  import orbax.checkpoint as ocp
  absl = logging.getLogger('absl')   # orbax warns that it skips the data iterator's item
  level = absl.level
  absl.setLevel(logging.ERROR)
  try:
    manager = ocp.CheckpointManager(directory,
                                    item_handlers={'state': ocp.StandardCheckpointHandler()})
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    metadata = manager.item_metadata(step)['state']
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          metadata)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))
    manager.close()
  except Exception as e:   # TensorStore and JSON errors of damaged files come in many types
    integrity.quiet_closed_event_loop()
    raise WeightsError(f'{directory}/{step}: orbax cannot read it '
                       f'({integrity.one_line(e)})') from None
  finally:
    absl.setLevel(level)
  return jax.tree.map(np.asarray, restored['state'])


def load_latest_state(directory, step: int | None = None, *,
                      check: bool = True) -> tuple[int, dict]:
  """(step, state as nested numpy dicts) of the newest good (or the given) checkpoint.

  Works whatever devices wrote it (every array is read whole onto this host's
  first device). With `check`, a step whose files do not match their
  checksums (h4w_jax.weights.integrity), that orbax cannot read or whose
  values are not all finite is skipped with a warning (the newest) or refused
  (a given `step`). Nothing is moved: training's Manager sets damaged steps
  aside when it resumes. For evaluation, export and inspection; training
  resumes through `Manager.restore_latest`.
  """
  directory = Path(directory).absolute()
  steps = step_numbers(directory)
  if step is not None and step not in steps:
    raise FileNotFoundError(f'{directory}: no finished checkpoint for step {step}')
  if not steps:
    raise FileNotFoundError(f'{directory}: no finished checkpoint')
  problems = []
  for candidate in [step] if step is not None else steps:
    try:
      if check:
        verdict = integrity.verify(directory / str(candidate))
        if not verdict.ok and verdict.reason != 'unverified':
          raise WeightsError(f'{directory}/{candidate}: {verdict.describe()}')
      state = _restore_on_host(directory, candidate)
      bad = nonfinite_paths(state) if check else []
      if bad:
        raise WeightsError(f'{directory}/{candidate}: NaN or Inf in {", ".join(bad[:3])}')
    except WeightsError as e:
      if step is not None:
        raise
      problems.append(str(e))
      log.warning('skipping a damaged checkpoint: %s', e)
      continue
    return candidate, state
  raise WeightsError(f'{directory}: no good checkpoint among steps {steps} '
                     f'({"; ".join(problems)})')


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
  raise WeightsError(f'{where}: a {kind} ResNet with {counts} blocks per stage is none of '
                     f'depths {sorted(resnet.STAGES)}')


# ModelConfig field <- the module path of that backbone's weights.
_BACKBONES = (('body_depth', ('backbone',)), ('hand_depth', ('hand_roi_net', 'backbone')),
              ('face_depth', ('face_roi_net', 'backbone')))

AnyModelConfig = Union[model_lib.ModelConfig, hand_only.HandModelConfig]


def model_config_of(variables, where: str = 'weights', base: AnyModelConfig | None = None
                    ) -> AnyModelConfig:
  """The model config that fits {'params': ...}: `base` (upstream's settings by default) with
  the backbone depths read off the weights (only the tree's names are looked at). The
  hand-only model of stage 2 gives a HandModelConfig, the whole-body model a ModelConfig."""
  params = variables.get('params') if isinstance(variables, Mapping) else None
  if isinstance(variables, Mapping) and is_hand_variables(variables):
    hand_base = base if isinstance(base, hand_only.HandModelConfig) else \
        hand_only.HandModelConfig()
    return dataclasses.replace(
        hand_base, depth=_resnet_depth(params['backbone'], f'{where}: backbone'))
  depths = {}
  for field, path in _BACKBONES:
    node = params
    for name in path:
      node = node.get(name) if isinstance(node, Mapping) else None
    if not node:
      raise WeightsError(f'{where}: no {"/".join(path)} weights (torch keys '
                         f'{".".join(path)}.*): not a Hand4Whole checkpoint (whole-body or '
                         'hand-only)')
    depths[field] = _resnet_depth(node, f'{where}: {"/".join(path)}')
  body_base = base if isinstance(base, model_lib.ModelConfig) else model_lib.ModelConfig()
  return dataclasses.replace(body_base, **depths)


def model_config_of_state_dict(state_dict: Mapping, where: str = 'state dict',
                               base: AnyModelConfig | None = None) -> AnyModelConfig:
  """`model_config_of` for a torch state dict (upstream snapshot)."""
  if is_hand_state_dict(state_dict):
    hand_base = base if isinstance(base, hand_only.HandModelConfig) else \
        hand_only.HandModelConfig()
    try:
      return dataclasses.replace(hand_base, depth=state_dict_depth(state_dict))
    except ValueError as e:
      raise WeightsError(f'{where}: {e}') from e
  names = {}
  for key, value in state_dict.items():
    path = flax_path(key, np.ndim(value))
    if path is not None and path[0] == 'params':
      names[path] = None
  return model_config_of(nest(names), where, base)


@functools.lru_cache(maxsize=8)
def variable_shapes(config: AnyModelConfig):
  """The variables' shapes of the whole-body (ModelConfig) or hand-only (HandModelConfig)
  model, once per config (tracing the model takes seconds)."""
  if isinstance(config, hand_only.HandModelConfig):
    return hand_only.variable_shapes(config)
  return model_lib.variable_shapes(config)


def depths_str(cfg: AnyModelConfig) -> str:
  if isinstance(cfg, hand_only.HandModelConfig):
    return f'hand-only ResNet-{cfg.depth}'
  return f'ResNet-{cfg.body_depth}/{cfg.hand_depth}/{cfg.face_depth}'


def _is_training_workdir(path: Path) -> Path | None:
  """The orbax checkpoint folder of a training workdir (or the folder itself), else None."""
  for folder in (path / 'checkpoints', path):
    if folder.is_dir() and any(p.is_dir() and p.name.isdigit() for p in folder.iterdir()):
      return folder
  return None


def _read_any(path: Path):
  """(kind, weights, what, epoch): ('state_dict', torch state dict) for a snapshot file,
  ('variables', {'params', 'batch_stats'}) for a folder; a line saying what was read; the
  epoch when the file records one."""
  if not path.exists():
    raise WeightsError(f'checkpoint {path} does not exist (give a converted checkpoint folder, '
                       'an upstream snapshot_<N>.pth.tar or a training workdir)')
  try:
    if path.is_file():
      state_dict, epoch, _ = load_snapshot(path)
      return 'state_dict', state_dict, f'upstream snapshot {path}', epoch
    if (path / META_FILE).is_file() or (path / VARIABLES_DIR).is_dir():
      variables, meta = load_checkpoint(path)
      epoch = meta.get('epoch')
      return 'variables', variables, f'converted checkpoint {path} (epoch {epoch})', epoch
    if (folder := _is_training_workdir(path)) is not None:
      step, state = load_latest_state(folder)
      variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
      return 'variables', variables, f'training checkpoint {folder}/{step}', None
  except WeightsError:
    raise
  except (ValueError, KeyError, FileNotFoundError) as e:
    raise WeightsError(f'checkpoint {path}: {e}') from e
  raise WeightsError(f'checkpoint {path}: a folder without {META_FILE} (converted '
                     'checkpoint) or numbered orbax steps (training workdir, checkpoints/<step>)')


def _fit(kind, raw, path, model_cfg) -> dict:
  shapes = variable_shapes(model_cfg)
  if kind == 'state_dict':
    try:
      return torch_to_flax(raw, shapes, str(path))
    except ValueError as e:
      raise WeightsError(str(e)) from e
  check_variables(raw, shapes, path, model_cfg)
  return raw


def load_model(checkpoint, base: AnyModelConfig | None = None, *,
               with_epoch: bool = False):
  """(variables, the ModelConfig they fit, a line saying what was read) of any checkpoint
  (and the epoch it records, or None, `with_epoch`).

  The model family and the backbone depths come from the weights
  (`model_config_of`); the other settings (fix_lhand_flip, roi sampling, ...)
  from `base` when it is of that family. Accepts what
  `load_variables` accepts.
  """
  path = Path(checkpoint)
  kind, raw, what, epoch = _read_any(path)
  if kind == 'state_dict':
    model_cfg = model_config_of_state_dict(raw, str(path), base)
  else:
    model_cfg = model_config_of(raw, str(path), base)
  loaded = _fit(kind, raw, path, model_cfg), model_cfg, what
  return loaded + (epoch,) if with_epoch else loaded


def load_variables(checkpoint, model_cfg: AnyModelConfig) -> tuple[dict, str]:
  """{'params', 'batch_stats'} numpy trees that fit `model_cfg`, and a line saying what was read.

  Accepts a converter folder (meta.json + variables/), an upstream
  .pth(.tar) snapshot, or a training workdir (the newest good step of
  `checkpoints/<step>/`, or such a checkpoints folder itself). `model_cfg` is
  a ModelConfig (whole body) or a HandModelConfig (stage 2's hand model);
  `load_model` takes the depths from the weights instead.
  """
  path = Path(checkpoint)
  kind, raw, what, _ = _read_any(path)
  return _fit(kind, raw, path, model_cfg), what


def check_variables(variables, shapes, path, model_cfg) -> None:
  got = {jax.tree_util.keystr(p): np.shape(v)
         for p, v in jax.tree_util.tree_leaves_with_path(variables)}
  want = {jax.tree_util.keystr(p): tuple(v.shape)
          for p, v in jax.tree_util.tree_leaves_with_path(shapes)}
  problems = [f'{k} missing' for k in want if k not in got]
  problems += [f'{k} unexpected' for k in got if k not in want]
  problems += [f'{k} {got[k]} vs {want[k]}' for k in want if k in got and got[k] != want[k]]
  if problems:
    try:
      has = f'; the weights have {depths_str(model_config_of(variables))} backbones'
    except WeightsError:
      has = ''
    more = f' (+{len(problems) - 5} more)' if len(problems) > 5 else ''
    raise WeightsError(
        f'checkpoint {path} does not fit the model ({depths_str(model_cfg)} backbones{has}): '
        f'{"; ".join(problems[:5])}{more}')
