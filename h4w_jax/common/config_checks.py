"""Settings checked before anything runs: one line per problem, naming the field and what it takes.

A bad value used to surface minutes later as a library error (`batch_size=0`:
ZeroDivisionError; 7 on 2 devices: a JAX IndivisibleError after compiling)
and left an empty workdir behind. train.py and eval.py call these checks
first, before a folder is created or a device is touched beyond counting it.
The training-only checks (schedule, initial weights, sharding rules against
the parameters) are in h4w_jax.training.config_checks.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

COMPUTE_DTYPES = ('float32', 'bfloat16')
CROP_DTYPES = ('uint8', 'float32')
BATCHNORM = ('per_device', 'synced')
SHARDING_TACTICS = ('replicate', 'fsdp')


class ConfigError(ValueError):
  """Bad settings: one line per problem, each naming the field and the allowed values."""

  def __init__(self, problems: Sequence[str]):
    self.problems = list(problems)
    super().__init__('\n'.join(self.problems))


class Checker:
  """Collects problems; `done()` raises them all at once."""

  def __init__(self, config):
    self.config = config
    self.problems: list[str] = []

  def get(self, field: str, default: Any = None) -> Any:
    node = self.config
    for name in field.split('.'):
      try:
        node = node[name]
      except (KeyError, TypeError, AttributeError):
        return default
    return node

  def fail(self, field: str, message: str) -> None:
    self.problems.append(f'config.{field} {message}')

  def integer(self, field: str, low: int | None = None, high: int | None = None,
              what: str = '') -> int | None:
    value = self.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
      self.fail(field, f'must be an integer{what}, got {value!r}')
      return None
    if (low is not None and value < low) or (high is not None and value > high):
      bounds = (f'>= {low}' if high is None else f'in {low}..{high}') if low is not None \
          else f'<= {high}'
      self.fail(field, f'must be {bounds}{what}, got {value}')
      return None
    return value

  def number(self, field: str, positive: bool = False, what: str = '') -> float | None:
    value = self.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
        or (positive and value <= 0) or value < 0:
      kind = 'a positive' if positive else 'a non-negative'
      self.fail(field, f'must be {kind} finite number{what}, got {value!r}')
      return None
    return float(value)

  def choice(self, field: str, allowed: Sequence[str]) -> Any:
    value = self.get(field)
    if value not in allowed:
      self.fail(field, f'must be one of {", ".join(repr(a) for a in allowed)}, got {value!r}')
      return None
    return value

  def existing(self, field: str, kind: str, hint: str = '') -> None:
    value = self.get(field)
    if not value:
      return
    path = Path(os.path.expanduser(str(value)))
    ok = path.is_dir() if kind == 'folder' else path.is_file() if kind == 'file' else path.exists()
    if not ok:
      self.fail(field, f'{path} is not an existing {kind}{hint}')

  def done(self) -> None:
    if self.problems:
      raise ConfigError(self.problems)


def check_devices(c: Checker, devices: int, processes: int) -> None:
  """Global batch against devices and processes; the mesh against the devices."""
  batch = c.integer('batch_size', 1, what=' (the global batch)')
  if batch is not None:
    if batch % processes:
      c.fail('batch_size', f'{batch} does not split over {processes} processes: use a multiple '
             f'of {processes}')
    elif batch % devices:
      c.fail('batch_size', f'{batch} does not split over {devices} devices: use a multiple of '
             f'{devices} (e.g. {devices * max(1, round(batch / devices))})')
  mesh = c.get('mesh')
  pairs = []
  try:
    pairs = [(name, size) for name, size in mesh]
  except (TypeError, ValueError):
    c.fail('mesh', f"must be (name, size) pairs, e.g. (('data', -1), ('fsdp', 1)), got {mesh!r}")
    return
  names = [name for name, _ in pairs]
  sizes = [size for _, size in pairs]
  if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
    c.fail('mesh', f'axis names must be distinct strings, got {names}')
  elif any(isinstance(s, bool) or not isinstance(s, int) or (s < 1 and s != -1) for s in sizes) \
      or sizes.count(-1) > 1:
    c.fail('mesh', f'sizes must be positive integers, with at most one -1 (all remaining '
           f'devices), got {sizes}')
  else:
    known = math.prod(s for s in sizes if s != -1)
    if (-1 in sizes and devices % known) or (-1 not in sizes and known != devices):
      c.fail('mesh', f'{tuple(pairs)} needs {"a multiple of " if -1 in sizes else ""}{known} '
             f'devices, {devices} are present')


def check_data(c: Checker, datasets: Sequence[str], dataset_names: Sequence[str],
               synthetic: bool = False) -> None:
  """Data and body-model folders, dataset names and input-pipeline settings."""
  hint = ' (set config.synthetic=True to write synthetic files there)'
  if not synthetic:
    c.existing('data_root', 'folder', hint)
    c.existing('human_model_path', 'folder', ' (upstream\'s common/utils/human_model_files; '
               '`python -m smplx_jax.check PATH` lists what it needs)')
  root = Path(os.path.expanduser(str(c.get('data_root'))))
  for name in datasets:
    if not str(name).endswith('.json') and name not in dataset_names:
      c.fail('trainset_3d/trainset_2d' if c.get('eval') is None else 'eval.dataset',
             f'names an unknown dataset {name!r}; known: {", ".join(dataset_names)}')
    elif not synthetic and root.is_dir() and not (root / name).exists():
      c.fail('data_root', f'{root} has no {name} (upstream\'s data/{name}; see README '
             '"Datasets", or config.synthetic=True for a synthetic one)')
  c.choice('data.crop_dtype', CROP_DTYPES)
  c.integer('data.num_workers', 0)
  c.integer('data.read_threads', 1)


def check_evaluation(config, checkpoint, *, devices: int, processes: int,
                     datasets: Sequence[str], splits: Callable[[str], Sequence[str]]) -> None:
  """eval.py's settings (before the weights are read or `--out` is created).

  datasets: the evaluable dataset names; splits(name): that dataset's splits.
  """
  c = Checker(config)
  dataset = c.choice('eval.dataset', datasets)
  if dataset is not None:
    c.choice('eval.split', splits(dataset))
  check_devices(c, devices, processes)
  check_data(c, [], datasets)
  if dataset is not None and not (Path(str(c.get('data_root'))) / dataset).is_dir() and \
      Path(str(c.get('data_root'))).is_dir():
    c.fail('data_root', f'{c.get("data_root")} has no {dataset}/ folder (upstream\'s '
           f'data/{dataset}; see README "Datasets")')
  c.integer('log_every', 1)
  if checkpoint is not None and not Path(str(checkpoint)).exists():
    c.problems.append(f'checkpoint {checkpoint} does not exist (give a converted checkpoint '
                      'folder, an upstream snapshot_<N>.pth.tar or a training workdir)')
  c.done()


def check_rules(c: Checker, paths: Sequence[str]) -> None:
  """config.sharding_rules: (regex, tactic) pairs; each regex must match a state path."""
  rules = c.get('sharding_rules')
  try:
    rules = [(pattern, tactic) for pattern, tactic in rules]
  except (TypeError, ValueError):
    c.fail('sharding_rules', f"must be (regex, tactic) pairs, e.g. (('.*', 'fsdp'),), "
           f'got {rules!r}')
    return
  for i, (pattern, tactic) in enumerate(rules):
    if tactic not in SHARDING_TACTICS:
      c.fail(f'sharding_rules[{i}]', f'tactic must be one of {SHARDING_TACTICS}, got {tactic!r}')
    try:
      regex = re.compile(pattern)
    except (re.error, TypeError) as e:
      c.fail(f'sharding_rules[{i}]', f'{pattern!r} is not a regular expression ({e})')
      continue
    if paths and not any(regex.fullmatch(p) or regex.match(p) for p in paths):
      c.fail(f'sharding_rules[{i}]', f'{pattern!r} matches no parameter or optimizer state '
             f'(names look like {paths[1] if len(paths) > 1 else paths[0]!r})')


def config_from_flag(flag):
  """The ConfigDict of an ml_collections config-file flag; a missing file is one ConfigError
  line instead of absl's 30-line traceback. (A config file that raises keeps its traceback:
  it points into the user's own code.)"""
  from ml_collections import config_flags
  filename = config_flags.get_config_filename(flag)
  path = Path(str(filename).split(':')[0])
  if not path.is_file():
    here = Path(__file__).resolve().parents[2] / 'configs'
    known = sorted(p.name for p in here.glob('*.py') if p.name not in ('__init__.py',
                                                                         'default.py'))
    raise ConfigError([f'--config {path}: no such file'
                       + (f' (configs/ has {", ".join(known)})' if known else '')])
  return flag.value
