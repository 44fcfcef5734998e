"""Evaluation of the hand-only model (stage 2) behind eval.py: FreiHAND and InterHand2.6M.

upstream: Pose2Pose main/test.py with FreiHAND.evaluate / InterHand26M.evaluate. The
split is read once, in order, in sharded batches; the model and the per-sample
outputs run jitted; the last batch is padded and the padding dropped.

FreiHAND ('test', the evaluation set): `pred.json` exactly as upstream writes it
(`[joints, vertices]`, lists of (21, 3) and (778, 3) in metres in the split's
annotation order) for the official server; when the ground truth of the
evaluation set is there (`config.eval.ground_truth`: FreiHAND_pub_v2_eval with
evaluation_xyz.json and evaluation_verts.json, read by each sample's db_idx), also
the benchmark's numbers (hand_metrics.freihand_metrics: PA-MPJPE, PA-MPVPE, F@5,
F@15, ...). InterHand2.6M ('test' or 'val'): upstream's MPJPE / MPVPE, fixed as
hand_metrics says (the GT mesh is the fit's, computed on the device).
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

from h4w_jax.common import sharding
from h4w_jax.evaluation import hand_metrics
from h4w_jax.models import hand_only, hand_outputs, hand_targets
from h4w_jax.weights import files

DATASETS = ('FreiHAND', 'InterHand26M')
SPLITS = {'FreiHAND': ('train', 'test', 'eval'), 'InterHand26M': ('train', 'val', 'test')}
_COMMON_KEYS = ('img', 'color_scale', 'sample_valid', 'index')
_GT_KEYS = {'FreiHAND': (),
            'InterHand26M': ('joint_cam', 'joint_valid', 'root_cam', 'mano_pose', 'mano_shape',
                             'mano_trans', 'mano_valid', 'is_left', 'cam_R', 'cam_t')}


class HandEvalError(RuntimeError):
  """A hand evaluation that cannot run: the message says why."""


@functools.lru_cache(maxsize=None)
def net_fn(model_cfg: hand_only.HandModelConfig):
  """jit((variables, img (B, 256, 256, 3) uint8/f32, color_scale (B, 3)) -> HandNetOutput)."""
  model = hand_only.HandOnly(model_cfg)

  def net(variables, img, color_scale):
    scale = jnp.asarray(color_scale, jnp.float32)[:, None, None, :]
    x = jnp.clip(jnp.asarray(img, jnp.float32) * scale, 0.0, 255.0) / 255.0
    return model.apply(variables, x, train=False)
  return jax.jit(net)


@functools.partial(jax.jit, static_argnames=('dataset', 'unmirror_left'))
def finish(net, batch, consts, *, dataset: str, unmirror_left: bool = True):
  """The predicted mesh and joints, and for InterHand2.6M the per-sample errors."""
  out = hand_outputs.test_outputs(net, consts['model'])
  mesh = out['mano_mesh_cam']
  joints = hand_outputs.regress_joints(consts['model'].regressor, mesh)
  res = {'sample_valid': batch['sample_valid'], 'index': batch['index']}
  if dataset == 'FreiHAND':
    res.update(mesh=mesh, joints=joints)
    if 'gt_xyz' in batch:
      res['metrics'] = hand_metrics.freihand_metrics(batch['gt_xyz'], batch['gt_verts'], joints,
                                                     mesh)
  else:
    mesh_gt = hand_targets.gt_mesh(consts['layers'], batch) - batch['root_cam'][:, None]
    # The example's joints were mirrored with a left hand's crop (no rotation at test
    # time): mirror them back to the annotation's (upstream's datalist joint_cam).
    left = batch['is_left'][:, None, None] > 0
    joint_gt = jnp.where(left, batch['joint_cam'] * jnp.asarray([-1.0, 1.0, 1.0]),
                         batch['joint_cam'])
    res['metrics'] = hand_metrics.interhand_metrics(
        joint_gt, batch['joint_valid'][..., 0], mesh_gt, batch['mano_valid'], joints, mesh,
        batch['is_left'], unmirror_left)
  return res


def _local_batch(local: dict, keys) -> dict:
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


def read_freihand_ground_truth(folder: Path):
  """(xyz (N, 21, 3), verts (N, 778, 3)) float32 metres of the official evaluation set,
  indexed by db_idx, or None when the folder has no ground truth."""
  from h4w_datasets import freihand
  paths = [folder / name for name in freihand.EVAL_GT_FILES]
  if not all(p.is_file() for p in paths):
    return None
  arrays = []
  for path, shape in zip(paths, ((21, 3), (778, 3))):
    try:
      array = np.asarray(json.loads(path.read_text()), np.float32)
    except (OSError, ValueError) as e:
      raise HandEvalError(f'{path}: not a readable list of samples: {e}') from e
    if array.ndim != 3 or array.shape[1:] != shape:
      raise HandEvalError(f'{path}: holds an array of shape {array.shape}; expected '
                          f'(samples, {shape[0]}, 3)')
    arrays.append(array)
  return arrays


def run(config, checkpoint, out_dir='results') -> dict[str, Any]:
  """Evaluate a hand-only checkpoint on config.eval.dataset; returns what the JSON holds."""
  from h4w_datasets import pipeline, registry
  ev = config.eval
  dataset = ev.dataset
  if dataset not in DATASETS:
    raise HandEvalError(f'config.eval.dataset must be one of {DATASETS}, got {dataset!r}')
  is_chief = jax.process_index() == 0
  out_dir = Path(out_dir)
  started = time.perf_counter()

  # ---------------------------------------------------------------- Weights
  try:   # the backbone depth is the weights'
    variables, model_cfg, what = files.load_model(checkpoint, hand_only.HandModelConfig())
  except files.WeightsError as e:
    raise HandEvalError(str(e)) from e
  if not isinstance(model_cfg, hand_only.HandModelConfig):
    raise HandEvalError(f'{checkpoint} holds the whole-body model; {dataset} evaluates the '
                        'hand-only model of stage 2')

  # ---------------------------------------------------------------- Data
  try:
    reader = registry.make_reader(dataset, config.data_root, ev.split, task='hand')
  except (FileNotFoundError, ValueError) as e:
    raise HandEvalError(str(e)) from e
  if config.batch_size % jax.process_count() or config.batch_size % jax.device_count():
    raise HandEvalError(f'batch_size {config.batch_size} does not split over '
                        f'{jax.device_count()} devices in {jax.process_count()} processes')
  data_cfg = pipeline.PipelineConfig(
      local_batch=config.batch_size // jax.process_count(), num_epochs=1,
      num_workers=config.data.num_workers, read_threads=config.data.read_threads,
      crop_dtype=config.data.crop_dtype)
  data, source = pipeline.build([[reader]], data_cfg, train=False,
                                process_index=jax.process_index(),
                                process_count=jax.process_count())
  keys = _COMMON_KEYS + _GT_KEYS[dataset]
  truth = None
  if dataset == 'FreiHAND':
    folder = Path(config.data_root) / ev.ground_truth
    truth = read_freihand_ground_truth(folder)
    if truth is not None:
      keys += ('gt_xyz', 'gt_verts')

  # ---------------------------------------------------------------- Mesh & constants
  mesh = sharding.make_mesh(config.mesh)
  repl = sharding.replicated(mesh)
  variables = jax.device_put(variables, repl)
  consts = {'model': hand_outputs.hand_model(config.human_model_path)}
  if dataset == 'InterHand26M':
    consts['layers'] = hand_targets.mano_layers(config.human_model_path)
  consts = jax.device_put(consts, repl)
  apply = net_fn(model_cfg)
  if is_chief:
    print(f'{dataset} {ev.split}: {len(reader)} samples in {source.steps_per_epoch} batches of '
          f'{config.batch_size} on {jax.device_count()} devices; weights: {what}', flush=True)

  # ---------------------------------------------------------------- Loop
  host = []
  for step, local in enumerate(data):
    if truth is not None:   # the official ground truth of each sample, by its db_idx
      db_idx = np.asarray(local['db_idx'])
      if db_idx.max() >= len(truth[0]):
        raise HandEvalError(f'{folder}: {len(truth[0])} ground-truth samples, but the split has '
                            f'db_idx {int(db_idx.max())}')
      local = dict(local, gt_xyz=truth[0][db_idx], gt_verts=truth[1][db_idx])
    batch = sharding.global_batch(_local_batch(local, keys), mesh)
    net = apply(variables, batch['img'], batch['color_scale'])
    host.append(_to_host(finish(net, batch, consts, dataset=dataset,
                                unmirror_left=bool(ev.get('unmirror_left_hands', True)))))
    if is_chief and (step + 1) % config.log_every == 0:
      print(f'batch {step + 1}/{source.steps_per_epoch}', flush=True)
  gathered = jax.tree.map(lambda *xs: np.concatenate(xs), *host)
  real = gathered['sample_valid'] > 0
  if int(real.sum()) != len(reader):
    raise HandEvalError(f'evaluated {int(real.sum())} samples, the split has {len(reader)}')
  order = np.argsort(gathered['index'][real], kind='stable')
  take = lambda x: np.asarray(x)[real][order]
  elapsed = time.perf_counter() - started

  # ---------------------------------------------------------------- Results
  name = f'{dataset}_{ev.split}'
  result = {'dataset': dataset, 'split': ev.split, 'checkpoint': str(checkpoint),
            'weights': what, 'num_samples': int(real.sum()), 'metrics': {},
            'published': dict(ev.published.to_dict()), 'batch_size': config.batch_size,
            'devices': jax.device_count(), 'seconds': round(elapsed, 1)}
  per_sample = {}
  if dataset == 'FreiHAND':
    joints, vertices = take(gathered['joints']), take(gathered['mesh'])
    if is_chief:
      (out_dir / dataset).mkdir(parents=True, exist_ok=True)
      pred_path = out_dir / dataset / 'pred.json'
      with open(pred_path, 'w') as f:   # upstream's print_eval_result: [joints, vertices]
        json.dump([joints.tolist(), vertices.tolist()], f)
      result['pred_json'] = str(pred_path)
    if truth is not None:
      per_sample = {k: take(v) for k, v in gathered['metrics'].items()}
      result['metrics'] = hand_metrics.summarize_freihand(per_sample)
      result['ground_truth'] = str(folder)
  else:
    per_sample = {k: take(v) for k, v in gathered['metrics'].items()}
    result['metrics'] = hand_metrics.summarize_interhand(per_sample)
    result['unmirror_left_hands'] = bool(ev.get('unmirror_left_hands', True))
  if not is_chief:
    return result
  out_dir.mkdir(parents=True, exist_ok=True)
  np.savez(out_dir / f'{name}_per_sample.npz', index=take(gathered['index']),
           **{k: np.asarray(v) for k, v in per_sample.items()})
  result['per_sample'] = f'{name}_per_sample.npz'
  (out_dir / f'{name}.json').write_text(json.dumps(result, indent=1) + '\n')
  title = f'{dataset} {ev.split}, {result["num_samples"]} samples ({what})'
  print(hand_metrics.format_table(result['metrics'], title) if result['metrics'] else title)
  if dataset == 'FreiHAND':
    print(f'pred.json for the FreiHAND server: {result["pred_json"]}'
          + ('' if result['metrics'] else f' (no ground truth in {folder}: metrics skipped)'))
  if result['published']:
    print('published: ' + ', '.join(f'{hand_metrics.LABELS.get(k, k)} {v}'
                                    for k, v in result['published'].items()))
  print(f'wrote {out_dir / (name + ".json")} in {elapsed:.1f} s', flush=True)
  return result
