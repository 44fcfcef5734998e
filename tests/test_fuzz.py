"""Seeded fuzzing of every file reader: damaged input ends in the project's own error naming the
file, or in a documented fallback; never a library traceback, a hang or a partial load.

Readers and what a case may end in:
  converter (.pth.tar): `python -m h4w_jax.convert` returns 1 with one line `error: <file>: ...`;
    a damaged state dict (keys, shapes, dtypes, NaN) raises ValueError naming the file and the
    key, or converts to exactly the undamaged result (a float64 copy of a float32 tensor).
  body models (MANO .pkl with chumpy objects, .npz): ValueError (ModelFileError) naming the
    file, or a complete model. Documented fallback: pickles carry no checksum, so a flipped
    byte inside an array's data loads as another finite number (zip members of .npz files
    have CRCs, so there it is an error).
  annotation JSON of the readers: ValueError or OSError naming the file (or a path under the
    dataset), or a reader whose records all read (mutations that upstream also accepts: extra
    keys, huge boxes clipped to the image, NaN boxes dropped and counted).
  orbax checkpoints: tests/test_checkpoint_integrity.py (fall back to the previous step).

Each test runs a few seconds of cases from a fixed seed; `-m slow` runs many more. The counts
in the report come from the slow runs.
"""

import collections
import contextlib
import functools
import io
import json
import shutil
import traceback
from pathlib import Path

import jax
import numpy as np
import pytest

from h4w_jax.weights import cli, files, keys, torch_pickle


class Tally:
  """Outcomes by kind; `crashes` lists what was not the project's own error."""

  def __init__(self):
    self.counts = collections.Counter()
    self.crashes = []

  def crash(self, what, error):
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    at = f' at {Path(frame.filename).name}:{frame.lineno}' if frame else ''
    self.crashes.append(f'{what}: {type(error).__name__}: {str(error)[:200]}{at}')

  def check(self, name=''):
    print(f'\n{name}: {sum(self.counts.values())} cases, {dict(self.counts)}, '
          f'{len(self.crashes)} not the project\'s own error')
    assert not self.crashes, '\n'.join(self.crashes[:20])


def _mutate_bytes(data: bytes, rng) -> tuple[bytes, str]:
  data = bytearray(data)
  n = len(data)
  op = ('truncate', 'flip', 'flip_tail', 'flip_head', 'zero_run', 'insert')[rng.integers(6)]
  if op == 'truncate':
    return bytes(data[:int(rng.integers(n))]), op
  if op == 'insert':
    i = int(rng.integers(n))
    return bytes(data[:i] + rng.bytes(int(rng.integers(1, 16))) + data[i:]), op
  if op == 'zero_run':
    i = int(rng.integers(n))
    data[i:i + 64] = bytes(len(data[i:i + 64]))
    return bytes(data), op
  lo, hi = {'flip': (0, n), 'flip_tail': (max(0, n - 4096), n),
            'flip_head': (0, min(n, 4096))}[op]
  for i in rng.integers(lo, hi, size=int(rng.integers(1, 9))):
    data[i] ^= int(rng.integers(1, 256))
  return bytes(data), op


# ------------------------------------------------------------------ converter: bytes

def _fuzz_snapshot_bytes(tmp_path, seed, cases) -> Tally:
  """A small upstream-style snapshot ({'epoch', 'network', 'optimizer'}) damaged byte-wise."""
  rng = np.random.default_rng(seed)
  state_dict = collections.OrderedDict()
  for name, shape in (('conv1.weight', (8, 3, 7, 7)), ('bn1.weight', (8,)), ('bn1.bias', (8,)),
                      ('bn1.running_mean', (8,)), ('bn1.running_var', (8,))):
    state_dict[f'module.backbone.{name}'] = rng.standard_normal(shape).astype(np.float32)
  state_dict['module.backbone.bn1.num_batches_tracked'] = np.asarray(5, np.int64)
  good = tmp_path / 'good.pth.tar'
  torch_pickle.save(good, {'epoch': 3, 'network': state_dict,
                           'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-4}]}})
  raw = good.read_bytes()
  tally = Tally()
  for case in range(cases):
    data, op = _mutate_bytes(raw, rng)
    path = tmp_path / 'snapshot_3.pth.tar'
    path.write_bytes(data)
    err = io.StringIO()
    try:
      with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main([str(path), str(tmp_path / f'out{case}')])
    except Exception as e:   # noqa: BLE001  (a crash is the finding)
      tally.crash(f'case {case} ({op})', e)
      continue
    message = err.getvalue().strip()
    # A backbone-only file is never a whole model: every case ends in an error line.
    if rc != 1 or '\n' in message or not message.startswith('error: ') or str(path) not in message:
      tally.crashes.append(f'case {case} ({op}): rc {rc}, stderr {message[:300]!r}')
    tally.counts['error'] += 1
  return tally


def test_fuzz_snapshot_bytes(tmp_path):
  """30 cases, about 1 s."""
  tally = _fuzz_snapshot_bytes(tmp_path, seed=0, cases=30)
  tally.check()
  assert tally.counts['error'] == 30


@pytest.mark.slow
def test_fuzz_snapshot_bytes_many(tmp_path):
  _fuzz_snapshot_bytes(tmp_path, seed=100, cases=500).check('snapshot bytes')


# ------------------------------------------------------------------ converter: state dicts

@functools.lru_cache(maxsize=None)
def _small_model_state_dict():
  """A whole ResNet-10/10/10 Hand4Whole state dict (constant values: only structure matters)."""
  from h4w_jax.models import hand4whole
  shapes = files.variable_shapes(hand4whole.ModelConfig(10, 10, 10))
  variables = jax.tree.map(lambda s: np.full(s.shape, 0.01, s.dtype), shapes)
  state_dict = keys.flax_to_torch(variables)
  return state_dict, keys.torch_to_flax(state_dict, shapes)


_STATE_DICT_OPS = ('drop', 'add', 'shape', 'int', 'float64', 'nan', 'inf', 'scalar', 'str', 'none',
                   'rename', 'drop_module', 'bool', 'complex')


def _fuzz_state_dicts(seed, cases) -> Tally:
  state_dict, reference = _small_model_state_dict()
  names = list(state_dict)
  rng = np.random.default_rng(seed)
  tally = Tally()
  for case in range(cases):
    damaged = collections.OrderedDict(state_dict)
    key = names[rng.integers(len(names))]
    op = _STATE_DICT_OPS[rng.integers(len(_STATE_DICT_OPS))]
    value = damaged[key]
    if op == 'drop':
      del damaged[key]
    elif op == 'add':
      damaged[key.rpartition('.')[0] + '.extra'] = value
    elif op == 'shape':
      damaged[key] = value.reshape(-1)[:max(1, value.size - 1)]
    elif op in ('int', 'float64', 'bool', 'complex'):
      damaged[key] = value.astype({'int': np.int64, 'float64': np.float64, 'bool': bool,
                                   'complex': np.complex64}[op])
    elif op in ('nan', 'inf'):
      damaged[key] = value.astype(np.float32).copy()
      damaged[key].reshape(-1)[0] = np.nan if op == 'nan' else np.inf
    elif op in ('scalar', 'str', 'none'):
      damaged[key] = {'scalar': np.float32(1.0), 'str': 'x', 'none': None}[op]
    elif op == 'rename':
      del damaged[key]
      key = key.replace('.', '_', 1)   # the name a message must show
      damaged[key] = value
    else:   # every tensor of the module
      module = key.rpartition('.')[0]
      for k in [k for k in damaged if k.rpartition('.')[0] == module]:
        del damaged[k]
    what = f'case {case} ({op} {key})'
    try:
      config = files.model_config_of_state_dict(damaged, 'snap.pth.tar')
      out = keys.torch_to_flax(damaged, files.variable_shapes(config), 'snap.pth.tar')
    except ValueError as e:
      message = str(e)
      if 'snap.pth.tar' not in message:
        tally.crashes.append(f'{what}: the file is not named: {message[:200]}')
      module = key.rpartition('.')[0]
      if op != 'drop_module' and module not in message and 'ResNet' not in message \
          and 'weights (torch keys' not in message:
        tally.crashes.append(f'{what}: neither the key nor the module is named: {message[:300]}')
      tally.counts['error'] += 1
      continue
    except Exception as e:   # noqa: BLE001
      tally.crash(what, e)
      continue
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(out),
                                                    jax.tree.leaves(reference)))
    if not same:
      tally.crashes.append(f'{what}: converted silently to other values')
    tally.counts['same'] += 1
  return tally


def test_fuzz_state_dicts():
  """20 cases, about 4 s (most of it tracing the model's shapes once)."""
  _fuzz_state_dicts(seed=0, cases=20).check()


@pytest.mark.slow
def test_fuzz_state_dicts_many():
  _fuzz_state_dicts(seed=100, cases=400).check('state dicts')


# ------------------------------------------------------------------ body models

def _fuzz_body_models(human_model_files, tmp_path, seed, cases) -> Tally:
  import smplx_jax
  from smplx_jax import model_files
  source = Path(human_model_files) / 'mano' / 'MANO_RIGHT.pkl'
  reference = model_files.load(source, 'mano')
  npz = tmp_path / 'ref' / 'MANO_RIGHT.npz'
  npz.parent.mkdir()
  np.savez(npz, **reference)
  raw = {'pkl': source.read_bytes(), 'npz': npz.read_bytes()}
  rng = np.random.default_rng(seed)
  tally = Tally()
  for case in range(cases):
    kind = ('pkl', 'npz')[case % 2]
    data, op = _mutate_bytes(raw[kind], rng)
    folder = tmp_path / f'case{case}'
    folder.mkdir()
    path = folder / f'MANO_RIGHT.{kind}'
    path.write_bytes(data)
    what = f'case {case} ({kind}, {op})'
    try:
      model = smplx_jax.create(path, 'mano', use_pca=False)
      loaded = model_files.load(path, 'mano')
    except ValueError as e:
      if str(path) not in str(e):
        tally.crashes.append(f'{what}: the file is not named: {str(e)[:200]}')
      tally.counts[f'{kind} error'] += 1
    except Exception as e:   # noqa: BLE001
      tally.crash(what, e)
    else:
      complete = set(loaded) == set(reference) and all(
          np.shape(loaded[k]) == np.shape(reference[k]) for k in reference)
      finite = all(np.all(np.isfinite(np.asarray(leaf))) for leaf in
                   jax.tree.leaves((model.v_template, model.shapedirs, model.posedirs,
                                    model.J_regressor, model.lbs_weights)))
      if not (complete and finite):
        tally.crashes.append(f'{what}: loaded a partial or non-finite model')
      same = all(np.array_equal(np.asarray(loaded[k]), np.asarray(reference[k])) for k in reference)
      if kind == 'npz' and not same:   # zip members have CRCs: other bytes cannot load
        tally.crashes.append(f'{what}: an .npz loaded other values silently')
      tally.counts[f'{kind} loaded {"unchanged" if same else "other values (no checksum)"}'] += 1
    shutil.rmtree(folder)
  return tally


def test_fuzz_body_model_files(human_model_files, tmp_path):
  """30 cases (MANO .pkl with chumpy objects and .npz), about 3 s."""
  _fuzz_body_models(human_model_files, tmp_path, seed=0, cases=30).check()


@pytest.mark.slow
def test_fuzz_body_model_files_many(human_model_files, tmp_path):
  _fuzz_body_models(human_model_files, tmp_path, seed=100, cases=400).check('body models')


# ------------------------------------------------------------------ annotation files

SPLITS = {'Human36M': ('train', 'test'), 'MSCOCO': ('train', 'test'), 'MPII': ('train',),
          'MPI_INF_3DHP': ('train',), 'PW3D': ('train', 'validation', 'test'),
          'AGORA': ('train', 'validation', 'test'), 'EHF': ('test',)}
CHEAP = ('MPII', 'MPI_INF_3DHP', 'EHF')   # need only SMPL-X neutral to write: the default suite
_JSON_OPS = ('delete', 'null', 'string', 'nan', 'inf', 'negative', 'huge', 'empty_list',
             'empty_dict', 'bool', 'duplicate', 'wrap', 'truncate_file')


def _write_datasets(root, human_model_files, names):
  """The synthetic mini datasets with 48x64 images and the body model loaded once per gender."""
  import smplx_jax
  from h4w_datasets import synthetic
  create = functools.lru_cache(maxsize=None)(smplx_jax.create)
  render = synthetic.render_scenes
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(smplx_jax, 'create', lambda *a, **k: create(*a, **k))
    mp.setattr(synthetic, 'render_scenes',
               lambda *a, **k: render(*a, **{**k, 'image_shape': (48, 64)}))
    synthetic.write_mini_datasets(root, human_model_files, names, num=3)
  return root


@pytest.fixture(scope='module')
def cheap_datasets(tmp_path_factory, human_model_files):
  return _write_datasets(tmp_path_factory.mktemp('fuzz_data'), human_model_files, CHEAP)


def _json_nodes(tree, path=(), depth=0):
  yield path
  if depth > 7:
    return
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _json_nodes(v, path + (k,), depth + 1)
  elif isinstance(tree, list):
    for i, v in enumerate(tree[:6]):
      yield from _json_nodes(v, path + (i,), depth + 1)


def _mutate_json(text: str, rng) -> tuple[str, str]:
  op = _JSON_OPS[rng.integers(len(_JSON_OPS))]
  if op == 'truncate_file':
    return text[:int(rng.integers(len(text)))], op
  tree = json.loads(text)
  paths = [p for p in _json_nodes(tree) if p]
  if not paths:
    return '', 'empty file'
  path = paths[rng.integers(len(paths))]
  parent = tree
  for k in path[:-1]:
    parent = parent[k]
  key = path[-1]
  if op == 'delete':
    del parent[key]
  elif op == 'duplicate':   # a duplicate list entry (e.g. an annotation id) or field
    if isinstance(parent, list):
      parent.append(parent[key])
    else:
      parent[f'{key}_dup'] = parent[key]
  elif op == 'wrap':
    parent[key] = [parent[key]]
  else:
    parent[key] = {'null': None, 'string': 'x', 'nan': float('nan'), 'inf': float('inf'),
                   'negative': -1e9, 'huge': 1e30, 'empty_list': [], 'empty_dict': {},
                   'bool': True}[op]
  return json.dumps(tree), f'{op} at {list(path)}'


def _fuzz_annotations(root, names, seed, cases) -> Tally:
  from h4w_datasets import registry
  rng = np.random.default_rng(seed)
  tally = Tally()
  for case in range(cases):
    name = names[rng.integers(len(names))]
    candidates = sorted((Path(root) / name).rglob('*.json'))
    path = candidates[rng.integers(len(candidates))]
    original = path.read_text()
    text, op = _mutate_json(original, rng)
    path.write_text(text)
    what = f'case {case}: {path.relative_to(root)} {op}'
    try:
      for split in SPLITS[name]:
        reader = registry.make_reader(name, root, split)
        for i in range(len(reader)):
          reader[i]
      tally.counts['read'] += 1
    except (ValueError, OSError) as e:
      if path.name not in str(e) and str(root) not in str(e):
        tally.crashes.append(f'{what}: {type(e).__name__} names no file: {str(e)[:200]}')
      tally.counts['error'] += 1
    except Exception as e:   # noqa: BLE001
      tally.crash(what, e)
    finally:
      path.write_text(original)
  return tally


def test_fuzz_annotation_files(cheap_datasets):
  """40 cases over MPII, MPI-INF-3DHP and EHF, about 2 s (writing them: about 5 s)."""
  _fuzz_annotations(cheap_datasets, CHEAP, seed=0, cases=40).check()


@pytest.mark.slow
def test_fuzz_annotation_files_of_every_reader(tmp_path, human_model_files):
  root = _write_datasets(tmp_path, human_model_files, list(SPLITS))
  _fuzz_annotations(root, list(SPLITS), seed=100, cases=1500).check('annotations')
