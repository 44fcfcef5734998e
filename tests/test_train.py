"""train.py end to end on synthetic data: exact resume, 2 processes of 4 fake devices, no waits.

Every run here uses ResNet-10 backbones and synced BatchNorm. A step costs ~2.3 s
per sample on 2 CPU cores whatever the device count, so each run is as small as
its check allows: global batch 2 (one program, shared through JAX's persistent
cache by the resume, no-wait and export checks and the slow dead-peer drills),
and global batch 8 for one step only where 2 x 4 devices need 8 samples.
Multi-device and multi-process runs are subprocesses (the device count is fixed
when JAX starts) and compare with the single-device run of the same global
batch after step 1 (same weights, same batch, different reduction order; the
measured figures are from batch 8):
  loss: rtol 1e-5 (measured 1e-7); gradient norm: rtol 1e-3 (measured 1e-4);
  BatchNorm running statistics: max leafwise relative difference 1e-4 (1.2e-6);
  parameters: Adam's first step moves every weight by about lr * sign(grad), so
  weights whose gradient is float noise away from 0 may move the other way:
  fewer than 0.1% of weights may differ by more than 0.1 * lr (measured 0.01%).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
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


def _wait_all(procs, timeout=600):
  """_wait for every process at once: reading one pipe to its end first lets another
  process fill its own pipe (64 KiB; XLA's SPMD warnings alone are more), block on the
  write and stall its peers in the next collective: a deadlock."""
  from concurrent.futures import ThreadPoolExecutor
  with ThreadPoolExecutor(len(procs)) as pool:
    return list(pool.map(lambda p: _wait(p, timeout), procs))


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


SMALL = dict(batch_size=2)   # one compiled program for every batch-2 run (persistent cache)


@pytest.fixture(scope='module')
def single_device_run(tmp_path_factory, data_root, clean_human_model_files):
  """The reference: 2 steps of batch 2 on one device, checkpoints after each step."""
  workdir = tmp_path_factory.mktemp('single')
  loop.run(_config(data_root, clean_human_model_files, **SMALL), workdir)
  step, state = files.load_latest_state(workdir / 'checkpoints')
  assert step == STEPS
  return workdir


@pytest.fixture(scope='module')
def single_device_batch8_step(tmp_path_factory, data_root, clean_human_model_files):
  """The 2 x 4-device run's reference: its one step (batch 8) on one device."""
  workdir = tmp_path_factory.mktemp('single8')
  loop.run(_config(data_root, clean_human_model_files, batch_size=8, total_steps=1), workdir)
  return workdir


@pytest.mark.slow   # 16 steps of ~20 s on 2 CPU cores; the default suite runs short loops
def test_quickstart_loss_falls(tmp_path, data_root, clean_human_model_files):
  # Means over windows of 4 steps (one batch's loss is noisy); measured 3.2 -> 2.7.
  config = _config(data_root, clean_human_model_files, total_steps=16, log_every=4, lr=1e-3,
                   checkpoint_every=0, image_every=16)
  loop.run(config, tmp_path)   # steps between logs run under transfer_guard('disallow')
  losses = _losses(tmp_path)
  assert len(losses) == 4 and all(np.isfinite(losses))
  assert [r['window_steps'] for r in _metrics(tmp_path)] == [4, 4, 4, 4]
  assert losses[-1] < 0.9 * losses[0], losses
  assert (tmp_path / 'images' / 'overlay_0000016.png').exists()
  assert (tmp_path / 'loss_curve.png').exists()
  assert any(p.name.startswith('events.out.tfevents') for p in (tmp_path / 'tb').iterdir())


def test_resume_is_bitwise_exact(tmp_path, data_root, clean_human_model_files, single_device_run):
  # Stopped after step 1 (as a kill after the save would), then resumed to step 2.
  loop.run(_config(data_root, clean_human_model_files, stop_after_steps=1, **SMALL), tmp_path)
  assert files.load_latest_state(tmp_path / 'checkpoints')[0] == 1
  loop.run(_config(data_root, clean_human_model_files, **SMALL), tmp_path)
  _, resumed = files.load_latest_state(tmp_path / 'checkpoints')
  _, straight = files.load_latest_state(single_device_run / 'checkpoints')
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
    np.testing.assert_array_equal(a, b)


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class HostReads:
  """Records every read of a device array's value on the host (jax.device_get, float(),
  int(), bool(), .tolist(), .item()) with the number of steps the loop had fetched.

  On GPU and TPU the loop's transfer_guard_device_to_host('disallow') makes such a read
  between sync steps an error; on CPU device memory is host memory and the guard never
  fires, so the tests watch the reads themselves. (np.asarray of a CPU array reads its
  buffer directly and is not seen here; it is seen by the guard on accelerators.)"""

  def __init__(self, monkeypatch):
    import threading
    from jax._src import array
    from h4w_jax.training import feeding
    self.steps, self.reads = 0, []
    main = threading.main_thread()
    fetch = feeding.Prefetcher.__next__

    def counting_next(prefetcher):
      fed = fetch(prefetcher)
      self.steps += 1
      return fed
    monkeypatch.setattr(feeding.Prefetcher, '__next__', counting_next)
    value = array.ArrayImpl._value
    item = array.ArrayImpl.item

    def record():
      if threading.current_thread() is main:
        self.reads.append(self.steps)
    monkeypatch.setattr(array.ArrayImpl, '_value',
                        property(lambda a: (record(), value.fget(a))[1]))
    monkeypatch.setattr(array.ArrayImpl, 'item', lambda a, *k: (record(), item(a, *k))[1])

  def between_syncs(self, sync_steps) -> list[int]:
    """Steps during which the host read a device value although they were no sync step."""
    return sorted({s for s in self.reads if s and s not in set(sync_steps)})


def test_steps_between_logs_never_wait_for_the_device(tmp_path, data_root,
                                                      clean_human_model_files, monkeypatch):
  """Metrics leave the device at sync steps only (logs, checkpoints, epoch ends): steps in
  between read nothing back. And the check can fail: one stray read, injected when step 4's
  batch is fetched (between the syncs of steps 2 and 4), is caught, and it is the only one.
  The run also writes what a user looks at: windows labelled by their steps, the overlay,
  TensorBoard events and the loss curve. (Batch 2: the loop's logic, not the loss.)"""
  from h4w_jax.training import feeding
  fetch = feeding.Prefetcher.__next__
  fetched = []

  def next_and_peek(self):
    fed = fetch(self)
    fetched.append(1)
    if len(fetched) == 4:   # counted with step 3 (HostReads counts a fetch once it returns)
      float(fed.batch['color_scale'][0, 0])   # a stray host read, as a debugging print would do
    return fed
  monkeypatch.setattr(feeding.Prefetcher, '__next__', next_and_peek)
  reads = HostReads(monkeypatch)
  loop.run(_config(data_root, clean_human_model_files, total_steps=6, image_every=6,
                   **dict(SMALL, checkpoint_every=0, log_every=2)), tmp_path)
  syncs = [r['step'] for r in _metrics(tmp_path)]
  assert reads.steps == 6 and syncs == [2, 4, 6], syncs
  assert reads.between_syncs(syncs) == [3], (reads.reads, syncs)
  assert [r['window_steps'] for r in _metrics(tmp_path)] == [2, 2, 2]
  assert all(np.isfinite(_losses(tmp_path)))
  assert (tmp_path / 'images' / 'overlay_0000006.png').exists()
  assert (tmp_path / 'loss_curve.png').exists()
  assert any(p.name.startswith('events.out.tfevents') for p in (tmp_path / 'tb').iterdir())


def test_two_processes_of_four_devices_match_one(tmp_path, data_root, clean_human_model_files,
                                                 single_device_batch8_step):
  """Two processes of four fake devices each, data-parallel over 2 and fsdp over 4 at
  once (one compile covers both axes, CI time is short): the batch is split 8 ways
  across both processes, parameters and Adam state 4 ways, overlays are drawn from
  predictions on both. Every cross-process read (overlay, metrics, checkpoints) works,
  and the step is one device's."""
  port = _free_port()
  overrides = _overrides(data_root, clean_human_model_files, mesh="(('data',2),('fsdp',4))",
                         total_steps=1, image_every=1)
  procs = [_run_subprocess(tmp_path, overrides, '--coordinator_address', f'127.0.0.1:{port}',
                           '--num_processes', '2', '--process_id', str(i),
                           '--num_cpu_devices', '4') for i in range(2)]
  outs = _wait_all(procs)
  assert 'on 8 devices (2 processes)' in outs[0], outs[0][-2000:]
  _assert_same_first_step(tmp_path, single_device_batch8_step)
  assert sorted(p.name for p in (tmp_path / 'images').iterdir()) == ['overlay_0000001.png']


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


def _kill_when(procs, victim, ready, timeout=600):
  """Kills procs[victim] (SIGKILL) once ready() holds; returns the kill time."""
  deadline = time.monotonic() + timeout
  while not ready():
    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
      for p in procs:
        p.kill()
      pytest.fail('the run ended or stalled before the fault could be injected:\n'
                  + '\n'.join(p.communicate()[0][-2000:] for p in procs))
    time.sleep(0.05)
  procs[victim].send_signal(signal.SIGKILL)
  return time.monotonic()


DEAD_PEER_BOUND_S = 120   # heartbeat 10 s here; config.hang_timeout_seconds 60 catches a hang


@pytest.mark.slow
@pytest.mark.parametrize('victim,when', [(1, 'mid-step'), (0, 'mid-save')])
def test_a_dead_peer_stops_the_other_and_a_restart_resumes(tmp_path, data_root,
                                                           clean_human_model_files, victim,
                                                           when):
  """Two processes, one killed with SIGKILL (mid-step: after step 3's log; mid-save: as a
  checkpoint's temporary folder appears): the other exits non-zero within
  DEAD_PEER_BOUND_S with a message; restarting both resumes from the newest checkpoint."""
  overrides = _overrides(data_root, clean_human_model_files, total_steps=40,
                         checkpoint_every=2, keep_checkpoints=3, hang_timeout_seconds=60,
                         async_checkpoints=True, **SMALL)
  extra = lambda i, port: ('--coordinator_address', f'127.0.0.1:{port}', '--num_processes', '2',
                           '--process_id', str(i), '--heartbeat_timeout_seconds', '10')
  port = _free_port()
  procs = [_run_subprocess(tmp_path, overrides, *extra(i, port)) for i in range(2)]
  checkpoints_dir = tmp_path / 'checkpoints'
  if when == 'mid-step':
    ready = lambda: (tmp_path / 'tb_scalars.jsonl').exists() and \
        len((tmp_path / 'tb_scalars.jsonl').read_text().splitlines()) >= 3
  else:
    # A later save than the first: a finished step must exist for the restart to resume.
    ready = lambda: checkpoints_dir.is_dir() and any(
        p.name.isdigit() for p in checkpoints_dir.iterdir()) and any(
        'tmp' in p.name for p in checkpoints_dir.iterdir())
  killed = _kill_when(procs, victim, ready)
  survivor = procs[1 - victim]
  try:
    out, _ = survivor.communicate(timeout=DEAD_PEER_BOUND_S)
  except subprocess.TimeoutExpired:
    survivor.kill()
    pytest.fail(f'the surviving process did not exit within {DEAD_PEER_BOUND_S} s')
  took = time.monotonic() - killed
  procs[victim].communicate()
  assert survivor.returncode != 0, out[-3000:]
  # Ours (the loop's error or the watchdog), or JAX's coordination agent, which aborts the
  # process itself when the coordinator (process 0) dies, sometimes before gloo's error.
  assert any(m in out for m in ('another process', 'no progress', 'another task died')), \
      out[:4000]
  assert took < DEAD_PEER_BOUND_S
  # Restart both: they resume from the newest finished checkpoint and finish.
  restart = dict(overrides, total_steps=8)
  port = _free_port()
  outs = _wait_all([_run_subprocess(tmp_path, restart, *extra(i, port)) for i in range(2)])
  for text in outs:
    assert 'Resumed from' in text, text[-2000:]
  assert files.load_latest_state(checkpoints_dir)[0] == 8
