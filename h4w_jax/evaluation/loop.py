"""Evaluation behind eval.py: batched, sharded, jitted, upstream's metrics.


CKPT is a converted checkpoint folder (`python -m h4w_jax.convert`), an
upstream `snapshot_<N>.pth.tar`, or a training workdir (its newest orbax
checkpoint). Any config field can be overridden: `--config.batch_size=128`.
Results go to --out (default results/): `<DATASET>_<split>.json` (the means
over samples, in mm, as upstream's print_eval_result), `..._per_sample.npz`
(each sample's metrics by reader index) and, for AGORA, the per-person result
pickles for the official server under `AGORA_<split>/predictions/`.

upstream: main/test.py with each dataset's `evaluate()`: the whole split in
order, once; here batches are sharded over every device of the mesh and the
model, the ground truth and the metrics run in two jitted functions. The last
batch is padded; padded samples (`sample_valid` 0) are dropped before the
means. Multi-host works as in train.py (every process runs the command,
process 0 writes the files).

3DPW is our protocol, not upstream's (its main branch has no 3DPW metric):
the SMPL-X prediction is carried to SMPL topology by the official SMPL-X ->
SMPL deformation transfer, then scored with the Pose2Pose branch's
PW3D.evaluate against the SMPL GT (configs/eval_pw3d.py says why and what
files it needs).
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from h4w_datasets import example as ex
from h4w_jax.common import atomic, config_checks, sharding
from h4w_jax.evaluation import agora_files, hand_loop, metrics
from h4w_jax.models import hand4whole as model_lib
from h4w_jax.models import outputs, targets
from h4w_jax.weights import files
from smplx_jax import safe_pickle


DATASETS = ('EHF', 'AGORA', 'PW3D')
SPLITS = {'EHF': ('test',), 'AGORA': ('train', 'validation', 'test'),
          'PW3D': ('train', 'validation', 'test')}
# Batch fields each dataset's ground truth needs (besides the crop).
_COMMON_KEYS = ('img', 'color_scale', 'sample_valid', 'index')
_GT_KEYS = {
    'EHF': ('smplx_mesh_cam',),
    'AGORA': (*ex.SMPLX_PARAM_SHAPES, *ex.SMPLX_FLAGS[1:], 'cam_R', 'cam_t', 'smplx_gender'),
    'PW3D': ('smpl_pose', 'smpl_shape', 'smpl_trans', 'smpl_gender', 'cam_R', 'cam_t'),
}
_AGORA_KEYS = ('bb2img_trans', 'crop_trans')
# upstream's test outputs the AGORA result files hold (agora_files.write_agora_results).
_AGORA_OUTPUTS = ('cam_trans', 'smplx_root_pose', 'smplx_body_pose', 'smplx_lhand_pose',
                  'smplx_rhand_pose', 'smplx_jaw_pose', 'smplx_expr', 'smplx_shape',
                  'smplx_joint_proj')
SMPLX_TO_SMPL_HELP = (
    'the SMPL-X -> SMPL deformation-transfer matrix of the smplx package\'s transfer_model '
    '(smplx2smpl_deftrafo_setup.pkl from "model_transfer.zip" on smpl-x.is.tue.mpg.de), '
    'or a dense (6890, 10475) .npy')


class EvalError(RuntimeError):
  """An evaluation that cannot run (missing files, a bad checkpoint): the message says why."""


# ---------------------------------------------------------------------------
# 3DPW: SMPL-X prediction vs SMPL ground truth


class _SparseState:
  """A pickled scipy csr/csc matrix's state, kept sparse (safe_pickle would densify
  the (6890, 20950) float64 transfer matrix: 1.2 GB)."""
  compressed_axis = 0

  def __setstate__(self, state):
    self.state = state


class _CsrState(_SparseState):
  compressed_axis = 0


class _CscState(_SparseState):
  compressed_axis = 1


def _triplets(matrix, where: str):
  """(rows, cols, values, shape) of a sparse stand-in or a dense array."""
  if isinstance(matrix, _SparseState):
    try:
      state = matrix.state
      shape = tuple(int(s) for s in state.get('_shape', state.get('shape')))
      values = np.asarray(state['data'], np.float64)
      indices = np.asarray(state['indices'], np.int64)
      outer = np.repeat(np.arange(len(state['indptr']) - 1), np.diff(state['indptr']))
    except (KeyError, TypeError, AttributeError) as e:
      raise EvalError(f'{where}: malformed sparse matrix ({e})') from e
    rows, cols = (outer, indices) if matrix.compressed_axis == 0 else (indices, outer)
    return rows, cols, values, shape
  dense = np.asarray(matrix, np.float64)
  if dense.ndim != 2:
    raise EvalError(f'{where}: expected a 2-D matrix, got shape {dense.shape}')
  rows, cols = np.nonzero(dense)
  return rows, cols, dense[rows, cols], dense.shape


def load_smplx_to_smpl(path, num_smpl: int = 6890, num_smplx: int = 10475):
  """SMPL-X -> SMPL vertex transfer as gather tables: (ids (V, K) int32, weights (V, K) f32).

  smpl_vertices[v] = sum_k weights[v, k] * smplx_vertices[ids[v, k]]. Reads
  the transfer_model's pickle ({'mtx': sparse (6890, 2 * 10475)} or
  {'matrix': ...}; only the vertex half is used, as transfer_model's
  use_normal=False) through safe_pickle's allow-list, or a .npy matrix.
  """
  path = Path(path)
  if not path.is_file():
    raise EvalError(f'3DPW needs {SMPLX_TO_SMPL_HELP}; {path} does not exist '
                    '(set --config.eval.smplx_to_smpl)')
  where = str(path)
  if path.suffix == '.npy':
    matrix = safe_pickle.load_npy(path)
  else:
    allowed = dict(safe_pickle.BODY_MODEL_GLOBALS)
    for module in ('scipy.sparse.csr', 'scipy.sparse._csr'):
      allowed[(module, 'csr_matrix')] = lambda: _CsrState
    for module in ('scipy.sparse.csc', 'scipy.sparse._csc'):
      allowed[(module, 'csc_matrix')] = lambda: _CscState
    with open(path, 'rb') as f:
      try:
        setup = safe_pickle.RestrictedUnpickler(f, allowed=allowed, where=where,
                                                encoding='latin1').load()
      except safe_pickle.UnsafePickleError:
        raise
      except Exception as e:  # corrupt streams raise many types
        raise EvalError(f'{where}: not a readable pickle ({type(e).__name__}: {e})') from e
    key = next((k for k in ('mtx', 'matrix') if isinstance(setup, dict) and k in setup), None)
    if key is None:
      raise EvalError(f"{where}: expected a dict with 'mtx' or 'matrix' ({SMPLX_TO_SMPL_HELP})")
    matrix = setup[key]
  rows, cols, values, shape = _triplets(matrix, where)
  if shape[0] != num_smpl or shape[1] not in (num_smplx, 2 * num_smplx):
    raise EvalError(f'{where}: transfer matrix has shape {shape}; expected ({num_smpl}, '
                    f'{num_smplx}) or ({num_smpl}, {2 * num_smplx})')
  keep = (cols < num_smplx) & (values != 0)
  rows, cols, values = rows[keep], cols[keep], values[keep]
  counts = np.bincount(rows, minlength=num_smpl)
  if counts.min() == 0:
    raise EvalError(f'{where}: SMPL vertex {int(np.argmin(counts))} has no SMPL-X source')
  order = np.argsort(rows, kind='stable')
  rows, cols, values = rows[order], cols[order], values[order]
  slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
  ids = np.zeros((num_smpl, counts.max()), np.int32)
  weights = np.zeros((num_smpl, counts.max()), np.float32)
  ids[rows, slot], weights[rows, slot] = cols, values
  return ids, weights


def _load_h36m_regressor(path, num_smpl: int = 6890) -> np.ndarray:
  path = Path(path)
  if not path.is_file():
    raise EvalError(f'3DPW needs the H36M-from-SMPL joint regressor {path} (upstream '
                    "Pose2Pose's data/Human36M/J_regressor_h36m_smpl.npy; set "
                    '--config.eval.h36m_regressor)')
  regressor = safe_pickle.load_npy(path)
  if not isinstance(regressor, np.ndarray) or regressor.shape != (17, num_smpl):
    raise EvalError(f'{path}: expected a (17, {num_smpl}) array, got '
                    f'{getattr(regressor, "shape", type(regressor).__name__)}')
  return regressor.astype(np.float32)


# ---------------------------------------------------------------------------
# The two jitted halves of a batch


@functools.lru_cache(maxsize=None)
def net_fn(model_cfg: model_lib.ModelConfig):
  """jit((variables, img uint8/f32 (B, 512, 384, 3), color_scale (B, 3)) -> NetOutput).

  The input is upstream's test crop / 255 (targets.train_batch's input with
  the test-time colour scale 1). Cached per ModelConfig: the three datasets
  share one compiled network.
  """
  model = model_lib.Hand4Whole(model_cfg)

  def net(variables, img, color_scale):
    scale = jnp.asarray(color_scale, jnp.float32)[:, None, None, :]
    x = jnp.clip(jnp.asarray(img, jnp.float32) * scale, 0.0, 255.0) / 255.0
    return model.apply(variables, x, train=False)
  return jax.jit(net)


@functools.partial(jax.jit, static_argnames=('dataset', 'has_gt'))
def finish(net, batch, consts, *, dataset: str, has_gt: bool):
  """Test outputs, ground truth and per-sample metrics of one batch.

  consts: {'layer': upstream's neutral SMPL-X layer, 'eval_model':
  metrics.EvalModel, 'gt_layers' (AGORA / PW3D), 'h36m' (17, 6890) and
  'transfer' (ids, weights) (PW3D)}.
  Returns {'sample_valid', 'index', 'metrics': {key: (B,) mm} (with GT), and
  for AGORA 'agora': the result-file fields}.
  """
  out = outputs.test_outputs(net, consts['layer'], all_joints=dataset == 'AGORA')
  pred = out['smplx_mesh_cam']
  res = {'sample_valid': batch['sample_valid'], 'index': batch['index']}
  if dataset == 'EHF':
    res['metrics'] = metrics.ehf_metrics(pred, batch['smplx_mesh_cam'], consts['eval_model'])
  elif dataset == 'AGORA':
    if has_gt:
      gt = targets.gt_mesh(consts['gt_layers'], batch)
      res['metrics'] = metrics.agora_metrics(pred, gt, consts['eval_model'])
    res['agora'] = {k: out[k] for k in _AGORA_OUTPUTS}
    res['agora'].update({k: batch[k] for k in _AGORA_KEYS})
  else:
    gt = targets.gt_mesh(consts['gt_layers'], batch)
    ids, weights = consts['transfer']
    pred_smpl = jnp.einsum('vk,bvkc->bvc', weights, pred[:, ids],
                           precision=jax.lax.Precision.HIGHEST)
    res['metrics'] = metrics.pw3d_metrics(pred_smpl, gt, consts['h36m'])
  return res


# ---------------------------------------------------------------------------
# The run


def model_config(config) -> model_lib.ModelConfig:
  """The settings of config.model but the backbone depths, which come from the weights."""
  return model_lib.ModelConfig(fix_lhand_flip=config.model.fix_lhand_flip)


def _smplx_layer(human_model_path, gender):
  import smplx_jax
  return smplx_jax.create(human_model_path, 'smplx', gender=gender, use_pca=False,
                          use_face_contour=True, flat_hand_mean=False)


def _constants(config, dataset: str, gendered: bool) -> dict:
  """Body models and metric tables for `finish` (host arrays)."""
  import smplx_jax
  from h4w_datasets import pw3d
  hmf = Path(config.human_model_path)
  if not (hmf / 'smplx' / 'SMPLX_NEUTRAL.npz').is_file() and \
      not (hmf / 'smplx' / 'SMPLX_NEUTRAL.pkl').is_file():
    raise EvalError(f'no SMPL-X model in {hmf}/smplx (set --config.human_model_path; '
                    f'`python -m smplx_jax.check {hmf}` lists what is needed)')
  layer = outputs.smplx_layer(hmf)
  consts = {'layer': layer, 'eval_model': metrics.load_eval_model(hmf, layer=layer)}
  if dataset == 'AGORA':
    consts['gt_layers'] = (layer, _smplx_layer(hmf, 'male'), _smplx_layer(hmf, 'female')) \
        if gendered else layer
  elif dataset == 'PW3D':
    # upstream (Pose2Pose): the GT mesh of the annotation's gender, neutral without one.
    consts['gt_layers'] = tuple(smplx_jax.create(hmf, 'smpl', gender=g) for g in ex.GENDERS)
    # Relative paths: the regressor under data_root, the transfer matrix under hmf.
    consts['h36m'] = _load_h36m_regressor(
        Path(config.data_root) / (config.eval.h36m_regressor or pw3d.H36M_REGRESSOR))
    consts['transfer'] = load_smplx_to_smpl(hmf / config.eval.smplx_to_smpl)
  return consts


def _local_batch(local: dict, keys) -> dict:
  """The fields the device needs; int64 ids as int32 (jax's default width)."""
  out = {}
  for key in keys:
    value = np.asarray(local[key])
    out[key] = value.astype(np.int32) if value.dtype == np.int64 else value
  return out


def _to_host(tree):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def _agora_files(reader, split: str, index: np.ndarray, agora: dict, out_dir: Path) -> Path:
  """Writes the per-person pickles of upstream's AGORA.evaluate; returns their folder."""
  names, person_ids = [], []
  test_set = 'test' if split == 'test' else 'val'
  for i in index:
    record = reader[int(i)]
    # Result files are named after the original images: the folder path's img_path or the
    # TFDS path's source_path.
    path = record.get('img_path') or record.get('source_path')
    if not path:
      raise EvalError(f'AGORA[{int(i)}]: the record has neither img_path nor source_path')
    names.append(agora_files.agora_save_name(path, reader.resolution, test_set))
    person_ids.append(int(record['person_id']))
  if split != 'test':   # upstream's val ids: 0, 1, ... per image in a fresh folder
    person_ids = agora_files.agora_person_ids(names)
  eye = np.broadcast_to(np.array([0.0, 0.0, 1.0]), (len(index), 1, 3))
  crop = np.concatenate([agora['crop_trans'], eye], axis=1)        # original -> reader image
  bb2img = np.concatenate([agora['bb2img_trans'], eye], axis=1)    # crop -> reader image
  bb2orig = (np.linalg.inv(crop) @ bb2img)[:, :2]                  # crop -> original image
  joints = agora_files.agora_joints_to_original(agora['smplx_joint_proj'], bb2orig, reader.resolution)
  folder = out_dir / f'AGORA_{split}' / 'predictions'
  agora_files.write_agora_results(folder, names, person_ids, agora, joints)
  return folder


def run(config, checkpoint, out_dir='results') -> dict[str, Any]:
  """Evaluate `checkpoint` on config.eval.dataset; returns what the JSON holds.

  FreiHAND and InterHand26M evaluate the hand-only model of stage 2 (hand_loop)."""
  from h4w_datasets import pipeline, registry
  try:   # every setting, before anything is read or written
    config_checks.check_evaluation(config, checkpoint, devices=jax.device_count(),
                                   processes=jax.process_count(),
                                   datasets=DATASETS + hand_loop.DATASETS,
                                   splits={**SPLITS, **hand_loop.SPLITS}.get)
  except config_checks.ConfigError as e:
    raise EvalError(str(e)) from None
  ev = config.eval
  dataset = ev.dataset
  if dataset in hand_loop.DATASETS:
    try:
      return hand_loop.run(config, checkpoint, out_dir)
    except hand_loop.HandEvalError as e:
      raise EvalError(str(e)) from e
  is_chief = jax.process_index() == 0
  out_dir = Path(out_dir)
  started = time.perf_counter()

  # ---------------------------------------------------------------- Weights
  try:   # the architecture is the weights' (config.model's depths are not needed)
    variables, model_cfg, what = files.load_model(checkpoint, model_config(config))
  except files.WeightsError as e:
    raise EvalError(str(e)) from e
  what += f', {files.depths_str(model_cfg)} backbones'

  # ---------------------------------------------------------------- Data
  options = dict(config.dataset_options.to_dict().get(dataset, {}))
  gendered = bool(options.get('gendered', False))
  try:
    reader = registry.make_reader(dataset, config.data_root, ev.split, source=config.data.source,
                                  tfds_data_dir=config.data.tfds_data_dir, **options)
  except (FileNotFoundError, ValueError) as e:
    raise EvalError(str(e)) from e
  has_gt = not (dataset == 'AGORA' and ev.split == 'test')
  data_cfg = pipeline.PipelineConfig(
      local_batch=config.batch_size // jax.process_count(), num_epochs=1,
      num_workers=config.data.num_workers, read_threads=config.data.read_threads,
      crop_dtype=config.data.crop_dtype)
  data, source = pipeline.build([[reader]], data_cfg, train=False,
                                process_index=jax.process_index(),
                                process_count=jax.process_count())
  keys = _COMMON_KEYS + (_GT_KEYS[dataset] if has_gt else ()) + \
      (_AGORA_KEYS if dataset == 'AGORA' else ())

  # ---------------------------------------------------------------- Mesh & constants
  mesh = sharding.make_mesh(config.mesh)
  repl = sharding.replicated(mesh)
  variables = jax.device_put(variables, repl)
  consts = jax.device_put(_constants(config, dataset, gendered), repl)
  apply = net_fn(model_cfg)
  if is_chief:
    print(f'{dataset} {ev.split}: {len(reader)} samples in {source.steps_per_epoch} batches of '
          f'{config.batch_size} on {jax.device_count()} devices; weights: {what}', flush=True)

  # ---------------------------------------------------------------- Loop
  host = []
  batches = iter(data)
  for step, local in enumerate(batches):
    batch = sharding.global_batch(_local_batch(local, keys), mesh)
    net = apply(variables, batch['img'], batch['color_scale'])
    host.append(_to_host(finish(net, batch, consts, dataset=dataset, has_gt=has_gt)))
    if is_chief and (step + 1) % config.log_every == 0:
      print(f'batch {step + 1}/{source.steps_per_epoch}', flush=True)
  local = None   # the last batch's shared memory goes with the iterator
  pipeline.close(batches)
  gathered = jax.tree.map(lambda *xs: np.concatenate(xs), *host)
  real = gathered['sample_valid'] > 0
  if int(real.sum()) != len(reader):
    raise EvalError(f'evaluated {int(real.sum())} samples, the split has {len(reader)}')
  index = gathered['index'][real]
  elapsed = time.perf_counter() - started

  # ---------------------------------------------------------------- Results
  name = f'{dataset}_{ev.split}'
  result = {'dataset': dataset, 'split': ev.split, 'checkpoint': str(checkpoint),
            'weights': what, 'num_samples': int(real.sum()), 'unit': 'mm',
            'metrics': {}, 'published': dict(ev.published.to_dict()),
            'batch_size': config.batch_size, 'devices': jax.device_count(),
            'seconds': round(elapsed, 1)}
  per_sample = {}
  if has_gt:
    per_sample = {k: v[real] for k, v in gathered['metrics'].items()}
    result['metrics'] = metrics.summarize(per_sample)
  if not is_chief:
    return result
  out_dir.mkdir(parents=True, exist_ok=True)
  if dataset == 'AGORA':
    agora = {k: v[real] for k, v in gathered['agora'].items()}
    folder = _agora_files(reader, ev.split, index, agora, out_dir)
    result['agora_predictions'] = str(folder)
  with atomic.open_for_writing(out_dir / f'{name}_per_sample.npz') as f:
    np.savez(f, index=index, **per_sample)
  result['per_sample'] = f'{name}_per_sample.npz'
  atomic.write_text(out_dir / f'{name}.json', json.dumps(result, indent=1) + '\n')
  title = f'{dataset} {ev.split}, {result["num_samples"]} samples ({what})'
  print(metrics.format_table(result['metrics'], title) if has_gt else title)
  published = result['published']
  if published:
    order = [k for k in metrics.METRIC_LABELS if k in published]
    print('published: ' + ', '.join(f'{metrics.METRIC_LABELS[k]} {published[k]}' for k in order))
  if dataset == 'AGORA':
    print(f'AGORA result files: {result["agora_predictions"]} (zip the predictions folder and '
          'submit it to the official AGORA evaluation server)')
  print(f'wrote {out_dir / (name + ".json")} in {elapsed:.1f} s', flush=True)
  return result
