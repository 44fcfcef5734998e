"""eval.py end to end on synthetic EHF, AGORA and 3DPW with small random weights.

The weights are a small Hand4Whole (ResNet-10 backbones) with random values:
the predictions are meaningless, but every path from the files to the JSON,
the per-sample metrics and the AGORA result files runs as for a real model.
"""

import importlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.sparse

import smplx_jax
from h4w_datasets import agora, ehf, pw3d
from h4w_datasets import transforms as tf
from h4w_jax.weights import files
from h4w_jax.evaluation import agora_files, metrics
from h4w_jax.models import outputs
from h4w_jax.models import hand4whole as model_lib
from smplx_jax import safe_pickle

ROOT = Path(__file__).resolve().parent.parent
BATCH = 2   # every split below has an odd length: the last batch is padded


sys.path.insert(0, str(ROOT))   # configs/ (the config files import configs.default)
from h4w_jax.evaluation import loop as eval_loop  # noqa: E402


def _config(name, data_root, hmf, **eval_fields):
  config = importlib.import_module(f'configs.{name}').get_config()
  config.data_root = str(data_root)
  config.human_model_path = str(hmf)
  config.batch_size = BATCH
  config.data.num_workers = 0   # config.model's depths stay upstream's: the weights' are used
  config.eval.update(eval_fields)
  return config


def _random_variables(model_cfg, seed=0):
  """Fan-in-scaled normal kernels, unit BatchNorm: finite, input-dependent outputs
  (flax's own init runs op by op and takes ~15 s on CPU)."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      return rng.normal(0, 1 / np.sqrt(np.prod(leaf.shape[:-1])), leaf.shape).astype(leaf.dtype)
    if name in ('scale', 'var'):
      return np.ones(leaf.shape, leaf.dtype)
    return np.zeros(leaf.shape, leaf.dtype)
  return jax.tree_util.tree_map_with_path(draw, model_lib.variable_shapes(model_cfg))


@pytest.fixture(scope='module')
def data_root(tmp_path_factory, clean_human_model_files):
  root = tmp_path_factory.mktemp('eval_data')
  ehf.write_synthetic(root, clean_human_model_files, num=5)
  agora.write_synthetic(root, clean_human_model_files, num=3)
  pw3d.write_synthetic(root, clean_human_model_files, num=3)
  return root


@pytest.fixture(scope='module')
def model_cfg():
  return model_lib.ModelConfig(body_depth=10, hand_depth=10, face_depth=10)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory, model_cfg):
  path = tmp_path_factory.mktemp('eval_ckpt') / 'ckpt'
  return files.save_checkpoint(path, _random_variables(model_cfg), epoch=6)


@pytest.fixture(scope='module')
def ehf_run(data_root, clean_human_model_files, checkpoint, tmp_path_factory):
  out = tmp_path_factory.mktemp('eval_out')
  config = _config('eval_ehf', data_root, clean_human_model_files)
  return eval_loop.run(config, checkpoint, out), out, config


def test_ehf_writes_every_metric_for_every_sample(ehf_run, data_root):
  result, out, _ = ehf_run
  written = json.loads((out / 'EHF_test.json').read_text())
  assert written == json.loads(json.dumps(result))
  assert set(written['metrics']) == set(metrics.EHF_KEYS)
  assert all(np.isfinite(v) and v > 0 for v in written['metrics'].values())
  n = len(ehf.EHF(data_root))
  assert written['num_samples'] == n == 5
  with np.load(out / written['per_sample']) as per_sample:
    assert sorted(per_sample['index']) == list(range(n))
    for key in metrics.EHF_KEYS:
      assert per_sample[key].shape == (n,)
      np.testing.assert_allclose(per_sample[key].mean(), written['metrics'][key], rtol=1e-6)


def test_ehf_metric_equals_metrics_on_the_same_prediction(ehf_run, data_root,
                                                          clean_human_model_files, checkpoint,
                                                          model_cfg):
  """Samples 3 and 4 rebuilt from the reader (4 shares a batch with padding in eval)."""
  _, out, _ = ehf_run
  reader = ehf.EHF(data_root)
  records = [reader[i] for i in (3, 4)]
  examples = [tf.test_example(r, reader.info, crop_dtype=np.float32) for r in records]
  img = np.stack([e['img'] for e in examples])
  scale = np.stack([e['color_scale'] for e in examples])
  variables, _ = files.load_checkpoint(checkpoint)
  net = eval_loop.net_fn(model_cfg)(variables, img, scale)
  layer = outputs.smplx_layer(clean_human_model_files)
  pred = jax.jit(outputs.test_outputs)(net, layer)['smplx_mesh_cam']
  gt_world = np.stack([r['smplx_mesh_cam'] for r in records])
  direct = metrics.ehf_metrics(pred, gt_world,
                               metrics.load_eval_model(clean_human_model_files, layer=layer))
  with np.load(out / 'EHF_test_per_sample.npz') as per_sample:
    rows = [int(np.flatnonzero(per_sample['index'] == i)[0]) for i in (3, 4)]
    for key in metrics.EHF_KEYS:
      np.testing.assert_allclose(per_sample[key][rows], np.asarray(direct[key]), rtol=1e-4,
                                 atol=1e-3, err_msg=key)


def _expected_agora_names(data_root, split):
  """<image>_personId_<k>.pkl from the annotation file, for people whose crop exists."""
  data = Path(data_root) / 'AGORA' / 'data'
  content = json.loads((data / f'AGORA_{split}_SMPLX.json').read_text())
  images = {img['id']: img['file_name_3840x2160'] for img in content['images']}
  names, per_image = set(), {}
  for ann in content['annotations']:
    folder, file_name = images[ann['image_id']].split('/')[-2:]
    crop = (data / 'images_3840x2160' / f'{folder}_crop' /
            f'{file_name[:-4]}_person_id_{ann["person_id"]}.png')
    if ann['is_valid'] and crop.exists():
      k = per_image.get(file_name, 0)
      per_image[file_name] = k + 1
      names.add(f'{file_name[:-4]}_personId_{k}.pkl')
  return names


def test_agora_validation_metrics_and_result_files(data_root, clean_human_model_files,
                                                   checkpoint, tmp_path):
  config = _config('eval_agora', data_root, clean_human_model_files)
  result = eval_loop.run(config, checkpoint, tmp_path)
  written = json.loads((tmp_path / 'AGORA_validation.json').read_text())
  assert set(written['metrics']) == set(metrics.AGORA_KEYS)
  assert all(np.isfinite(v) for v in written['metrics'].values())
  n = len(agora.AGORA(data_root, 'validation'))
  assert written['num_samples'] == result['num_samples'] == n == 3
  folder = tmp_path / 'AGORA_validation' / 'predictions'
  assert {p.name for p in folder.iterdir()} == _expected_agora_names(data_root, 'validation')
  for path in folder.iterdir():
    record = safe_pickle.load_pickle(path)   # plain numpy only
    assert {k: v.shape for k, v in record['params'].items()} == {
        k: (1, n) for k, n in agora_files.AGORA_PARAM_SIZES.items()}
    assert record['joints'].shape == (1, 144, 2) and np.isfinite(record['joints']).all()


def test_agora_test_split_writes_only_result_files(data_root, clean_human_model_files,
                                                   checkpoint, tmp_path):
  config = _config('eval_agora', data_root, clean_human_model_files, split='test')
  result = eval_loop.run(config, checkpoint, tmp_path)
  assert result['metrics'] == {} and result['num_samples'] == len(agora.AGORA(data_root, 'test'))
  detections = json.loads((data_root / 'AGORA' / 'data' / 'AGORA_test_bbox.json').read_text())
  crops = data_root / 'AGORA' / 'data' / 'images_3840x2160' / 'test_crop'
  expected = {f'{name[:-4]}_personId_{k}.pkl' for name, people in detections.items()
              for k in range(len(people)) if (crops / f'{name[:-4]}_person_id_{k}.png').exists()}
  assert {p.name for p in (tmp_path / 'AGORA_test' / 'predictions').iterdir()} == expected


def _write_transfer(path, hmf):
  """A stand-in for smplx2smpl_deftrafo_setup.pkl: each SMPL vertex the mean of its
  3 nearest SMPL-X template vertices, in transfer_model's (6890, 2 x 10475) layout."""
  smpl = np.asarray(smplx_jax.create(hmf, 'smpl', gender='neutral').v_template)
  smplx = np.asarray(smplx_jax.create(hmf, 'smplx', gender='neutral').v_template)
  d = ((smpl[:, None, :] - smplx[None, ::7, :]) ** 2).sum(-1)   # coarse grid keeps it small
  nearest = np.argsort(d, axis=1)[:, :3] * 7
  rows = np.repeat(np.arange(len(smpl)), 3)
  mtx = scipy.sparse.csr_matrix((np.full(rows.size, 1 / 3), (rows, nearest.ravel())),
                                shape=(len(smpl), 2 * len(smplx)))
  with open(path, 'wb') as f:
    pickle.dump({'mtx': mtx}, f)
  return mtx


def test_pw3d_with_a_transfer_matrix(data_root, clean_human_model_files, checkpoint, tmp_path):
  mtx = _write_transfer(tmp_path / 'smplx2smpl.pkl', clean_human_model_files)
  ids, weights = eval_loop.load_smplx_to_smpl(tmp_path / 'smplx2smpl.pkl')
  dense = np.zeros((6890, 10475))
  np.add.at(dense, (np.repeat(np.arange(6890), ids.shape[1]), ids.ravel()), weights.ravel())
  np.testing.assert_allclose(dense, mtx.toarray()[:, :10475], atol=1e-7)

  config = _config('eval_pw3d', data_root, clean_human_model_files,
                   smplx_to_smpl=str(tmp_path / 'smplx2smpl.pkl'))
  eval_loop.run(config, checkpoint, tmp_path)
  written = json.loads((tmp_path / 'PW3D_test.json').read_text())
  assert set(written['metrics']) == set(metrics.PW3D_KEYS)
  assert all(np.isfinite(v) for v in written['metrics'].values())
  assert written['num_samples'] == len(pw3d.PW3D(data_root, 'test')) == 3


def test_missing_or_unusable_checkpoint_is_a_clear_error(ehf_run, tmp_path, model_cfg):
  _, _, config = ehf_run
  with pytest.raises(eval_loop.EvalError, match='does not exist'):
    eval_loop.run(config, tmp_path / 'nope', tmp_path)
  with pytest.raises(files.WeightsError, match='meta.json'):
    files.load_variables(tmp_path, model_cfg)
  wrong = model_lib.ModelConfig(body_depth=18, hand_depth=10, face_depth=10)
  ckpt = files.save_checkpoint(tmp_path / 'small', _random_variables(model_cfg), epoch=0)
  with pytest.raises(files.WeightsError, match=r'ResNet-18/10/10 backbones; the weights have '
                                               r'ResNet-10/10/10 backbones'):
    files.load_variables(ckpt, wrong)


def test_training_workdir_checkpoint_loads(tmp_path, model_cfg, checkpoint):
  import grain
  from h4w_jax.training import checkpoints
  variables, _ = files.load_checkpoint(checkpoint)
  manager = checkpoints.Manager(tmp_path / 'checkpoints', async_save=False)
  manager.save(7, dict(variables, step=np.int32(7)),
               iter(grain.MapDataset.range(4).to_iter_dataset()))
  manager.close()
  loaded, what = files.load_variables(tmp_path, model_cfg)
  assert what.endswith('checkpoints/7')
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)


def test_command_line_reports_a_missing_checkpoint(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, str(ROOT / 'eval.py'), '--config',
                         str(ROOT / 'configs' / 'eval_ehf.py'), '--checkpoint',
                         str(tmp_path / 'missing'), '--out', str(tmp_path)],
                        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
  assert proc.returncode == 1
  assert f'error: checkpoint {tmp_path / "missing"} does not exist' in proc.stderr
