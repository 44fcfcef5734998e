"""train.py end to end on synthetic data: loss falls, exact resume, 8 fake devices, 2 processes.

Every run here uses one small configuration (ResNet-10 backbones, global batch 8,
synced BatchNorm) so that the compiled step is shared through JAX's persistent
cache. Multi-device and multi-process runs are subprocesses (the device count
is fixed when JAX starts) and compare with the single-device run after step 1
(same weights, same global batch, different reduction order):
  loss: rtol 1e-5 (measured 1e-7); gradient norm: rtol 1e-3 (measured 1e-4);
  BatchNorm running statistics: max leafwise relative difference 1e-4 (1.2e-6);
  parameters: Adam's first step moves every weight by about lr * sign(grad), so
  weights whose gradient is float noise away from 0 may move the other way:
  fewer than 0.1% of weights may differ by more than 0.1 * lr (measured 0.01%).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from h4w_jax.training import checkpoints, loop
from h4w_jax.weights import files

ROOT = Path(__file__).resolve().parents[1]
STEPS = 2


@pytest.fixture(scope='module')
def data_root(tmp_path_factory, clean_human_model_files):
  from h4w_datasets import synthetic
  root = tmp_path_factory.mktemp('train_data')
  synthetic.write_mini_datasets(root, clean_human_model_files, ['Human36M', 'MSCOCO', 'MPII'],
                                num=8, seed=0)
  return root


def _config(data_root, human_model_path, **overrides):
  sys.path.insert(0, str(ROOT))
  from configs import quickstart
  c = quickstart.get_config()
  c.synthetic = False
  c.data_root = str(data_root)
  c.human_model_path = str(human_model_path)
  c.model.body_depth = c.model.hand_depth = c.model.face_depth = 10
  c.batch_size = 8
  c.batchnorm = 'synced'
  c.lr = 1e-4
  c.total_steps = STEPS
  c.log_every = 1
  c.image_every = 0
  c.checkpoint_every = 1
  c.keep_checkpoints = STEPS
  c.async_checkpoints = False
  for key, value in overrides.items():
    target = c
    *parents, leaf = key.split('.')
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c


def _flags(config_overrides: dict) -> list[str]:
  return [f'--config.{k}={v}' for k, v in config_overrides.items()]


def _overrides(data_root, human_model_path, **extra):
  base = {'synthetic': False, 'data_root': data_root, 'human_model_path': human_model_path,
          'model.body_depth': 10, 'model.hand_depth': 10, 'model.face_depth': 10,
          'batch_size': 8, 'batchnorm': 'synced', 'lr': 1e-4, 'total_steps': STEPS,
          'log_every': 1, 'image_every': 0, 'checkpoint_every': 1, 'keep_checkpoints': STEPS,
          'async_checkpoints': False}
  base.update(extra)
  return base


def _run_subprocess(workdir, overrides, *extra_args, timeout=600):
  cmd = [sys.executable, str(ROOT / 'train.py'), '--config', str(ROOT / 'configs/quickstart.py'),
         '--workdir', str(workdir), *_flags(overrides), *extra_args]
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env={**os.environ, 'XLA_FLAGS': ''})


def _wait(proc, timeout=600):
  try:
    out, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    out, _ = proc.communicate()
    pytest.fail(f'train.py did not finish in {timeout} s:\n{out[-3000:]}')
  assert proc.returncode == 0, out[-5000:]
  return out


def _losses(workdir):
  rows = [json.loads(l) for l in (Path(workdir) / 'tb_scalars.jsonl').read_text().splitlines()]
  return [r['loss/total'] for r in rows]


def _metrics(workdir):
  return [json.loads(l) for l in (Path(workdir) / 'tb_scalars.jsonl').read_text().splitlines()]


def _assert_same_first_step(workdir, reference, lr=1e-4):
  ours, ref = _metrics(workdir)[0], _metrics(reference)[0]
  np.testing.assert_allclose(ours['loss/total'], ref['loss/total'], rtol=1e-5)
  np.testing.assert_allclose(ours['grad_norm'], ref['grad_norm'], rtol=1e-3)
  _, a = files.load_latest_state(Path(workdir) / 'checkpoints', 1)
  _, b = files.load_latest_state(Path(reference) / 'checkpoints', 1)
  for x, y in zip(jax.tree.leaves(a['batch_stats']), jax.tree.leaves(b['batch_stats'])):
    assert np.abs(x - y).max() <= 1e-4 * np.abs(y).max() + 1e-7
  diff = np.concatenate([np.abs(x - y).ravel() for x, y in zip(jax.tree.leaves(a['params']),
                                                               jax.tree.leaves(b['params']))])
  assert (diff > 0.1 * lr).mean() < 1e-3


@pytest.fixture(scope='module')
def single_device_run(tmp_path_factory, data_root, clean_human_model_files):
  """The reference: 2 steps on one device, checkpoints after each step."""
  workdir = tmp_path_factory.mktemp('single')
  loop.run(_config(data_root, clean_human_model_files), workdir)
  step, state = files.load_latest_state(workdir / 'checkpoints')
  assert step == STEPS
  return workdir


def test_quickstart_loss_falls(tmp_path, data_root, clean_human_model_files):
  # Means over windows of 4 steps (one batch's loss is noisy); measured 3.2 -> 2.7.
  config = _config(data_root, clean_human_model_files, total_steps=16, log_every=4, lr=1e-3,
                   checkpoint_every=0, image_every=16)
  loop.run(config, tmp_path)
  losses = _losses(tmp_path)
  assert len(losses) == 4 and all(np.isfinite(losses))
  assert losses[-1] < 0.9 * losses[0], losses
  assert (tmp_path / 'images' / 'overlay_0000016.png').exists()
  assert (tmp_path / 'loss_curve.png').exists()
  assert any(p.name.startswith('events.out.tfevents') for p in (tmp_path / 'tb').iterdir())


def test_resume_is_bitwise_exact(tmp_path, data_root, clean_human_model_files, single_device_run):
  # Stopped after step 1 (as a kill after the save would), then resumed to step 2.
  loop.run(_config(data_root, clean_human_model_files, stop_after_steps=1), tmp_path)
  assert files.load_latest_state(tmp_path / 'checkpoints')[0] == 1
  loop.run(_config(data_root, clean_human_model_files), tmp_path)
  _, resumed = files.load_latest_state(tmp_path / 'checkpoints')
  _, straight = files.load_latest_state(single_device_run / 'checkpoints')
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
    np.testing.assert_array_equal(a, b)


def test_eight_fake_devices_match_one(tmp_path, data_root, clean_human_model_files,
                                      single_device_run):
  # Data-parallel over 4 and fsdp over 2 at once: the batch is split 8 ways, parameters
  # and Adam state 2 ways (one compile covers both axes; CI time is short).
  overrides = _overrides(data_root, clean_human_model_files, mesh="(('data',4),('fsdp',2))")
  out = _wait(_run_subprocess(tmp_path, overrides, '--num_cpu_devices', '8'))
  assert 'on 8 devices' in out
  _assert_same_first_step(tmp_path, single_device_run)


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one(tmp_path, data_root, clean_human_model_files, single_device_run):
  port = _free_port()
  overrides = _overrides(data_root, clean_human_model_files)
  procs = [_run_subprocess(tmp_path, overrides, '--coordinator_address', f'127.0.0.1:{port}',
                           '--num_processes', '2', '--process_id', str(i)) for i in range(2)]
  outs = [_wait(p) for p in procs]
  assert '2 processes' in outs[0]
  _assert_same_first_step(tmp_path, single_device_run)


def test_overrides_and_missing_files_are_reported(tmp_path):
  workdir = tmp_path / 'run'
  overrides = {'synthetic': False, 'data_root': tmp_path / 'no_data',
               'human_model_path': tmp_path / 'no_models', 'batch_size': 6}
  proc = _run_subprocess(workdir, overrides)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 1, out
  # Checked before the run starts: one line per missing folder, and no workdir left behind.
  assert f'error: config.data_root {tmp_path / "no_data"} is not an existing folder' in out
  assert f'error: config.human_model_path {tmp_path / "no_models"} is not an existing folder' \
      in out
  assert 'Traceback' not in out and not workdir.exists()


def test_export_for_the_converter_and_predictor(tmp_path, single_device_run):
  assert checkpoints.main(['export', str(single_device_run), str(tmp_path / 'export')]) == 0
  variables, meta = files.load_checkpoint(tmp_path / 'export')
  _, state = files.load_latest_state(single_device_run / 'checkpoints')
  assert meta['train_step'] == STEPS
  for a, b in zip(jax.tree.leaves(variables['params']), jax.tree.leaves(state['params'])):
    np.testing.assert_array_equal(a, b)
