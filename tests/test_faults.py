"""Faults an operator meets: bad settings, killed one-time writes, weights of other shapes,
resumed logs, shared memory left to the resource tracker.

Each test provokes the fault the way it happens (an exception or a kill in the middle of a
write, a config a user would type) and checks what the user sees and that nothing is lost.
Long drills (killing the real 1.6 GB body-model writer, the dataset writer, the converter
round trip on a whole model) are under -m slow.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from h4w_jax.common import atomic, config_checks
from h4w_jax.weights import files, keys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # configs/


# ------------------------------------------------------------------ settings

@pytest.fixture
def data_root(tmp_path):
  """Folders named as the quickstart's datasets (the checks look only for them)."""
  for name in ('Human36M', 'MSCOCO', 'MPII'):
    (tmp_path / 'data' / name).mkdir(parents=True)
  return tmp_path / 'data'


def _training_config(data_root=ROOT, **overrides):
  from configs import quickstart
  c = quickstart.get_config()
  c.synthetic = False
  c.data_root, c.human_model_path = str(data_root), str(ROOT)   # nothing is read
  c.update(overrides)
  return c


def test_bad_training_settings_are_one_line_each_naming_the_field(data_root):
  from h4w_jax.training.config_checks import check_training
  config = _training_config(data_root, batch_size=7, lr=float('nan'), start_epoch=3, end_epoch=2,
                            compute_dtype='float64',
                            mesh=(('data', 3),), trainset_2d=('COCO',), batchnorm='global',
                            sharding_rules=(('.*', 'shard'),), keep_checkpoints=0)
  with pytest.raises(config_checks.ConfigError) as info:
    check_training(config, devices=2, processes=1)
  lines = str(info.value).splitlines()
  assert lines == info.value.problems and all(l.startswith('config.') for l in lines)
  expected = [
      'config.batch_size 7 does not split over 2 devices: use a multiple of 2 (e.g. 8)',
      "config.mesh (('data', 3),) needs 3 devices, 2 are present",
      "config.trainset_3d/trainset_2d names an unknown dataset 'COCO'; known: Human36M, "
      'MSCOCO, MPII, MPI_INF_3DHP, PW3D, AGORA, EHF',
      "config.batchnorm must be one of 'per_device', 'synced', got 'global'",
      "config.compute_dtype must be one of 'float32', 'bfloat16', got 'float64'",
      'config.end_epoch must be greater than config.start_epoch (3), got 2',
      'config.lr must be a positive finite number, got nan',
      'config.keep_checkpoints must be >= 1, got 0',
      "config.sharding_rules[0] tactic must be one of ('replicate', 'fsdp'), got 'shard'"]
  assert lines == expected
  with pytest.raises(config_checks.ConfigError, match=r'^config.batch_size 8 does not split over '
                                                      r'3 processes: use a multiple of 3$'):
    check_training(_training_config(data_root, batch_size=8), devices=6, processes=3)
  with pytest.raises(config_checks.ConfigError, match=r'^config.batch_size must be >= 1 \(the '
                                                      r'global batch\), got 0$'):
    check_training(_training_config(data_root, batch_size=0), devices=1, processes=1)
  check_training(_training_config(data_root, batch_size=8), devices=8, processes=2)   # fine
  (data_root / 'MPII').rmdir()
  with pytest.raises(config_checks.ConfigError, match=rf'^config.data_root {data_root} has no '
                                                      r"MPII \(upstream's data/MPII; see README"):
    check_training(_training_config(data_root), devices=1, processes=1)


def test_a_sharding_rule_that_matches_nothing_is_named(data_root):
  """Checked against the train state's names (jax.eval_shape: no arrays; ~2 s here)."""
  from h4w_jax.training.config_checks import check_training
  config = _training_config(data_root, sharding_rules=(('.*conv.*', 'fsdp'), ('params/head/.*', 'fsdp')))
  config.model.body_depth = config.model.hand_depth = config.model.face_depth = 10
  with pytest.raises(config_checks.ConfigError,
                     match=r"^config.sharding_rules\[1\] 'params/head/\.\*' matches no parameter "
                           r"or optimizer state \(names look like '\.params/backbone/"):
    check_training(config, devices=1, processes=1)


def test_training_stops_before_the_workdir_exists(tmp_path):
  from h4w_jax.training import loop
  workdir = tmp_path / 'run'
  with pytest.raises(config_checks.ConfigError, match='config.batch_size must be >= 1'):
    loop.run(_training_config(batch_size=0), workdir)
  assert not workdir.exists()


def test_a_missing_config_file_is_one_line():
  """train.py and eval.py read --config through config_from_flag (absl's own error was a
  34-line traceback, after the workdir existed). A config file that raises keeps its
  traceback: it points into the user's own code."""
  from absl import flags
  from ml_collections import config_flags
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'a config file', flag_values=values)
  values(['train.py', '--config', 'configs/nope.py'])
  with pytest.raises(config_checks.ConfigError) as info:
    config_checks.config_from_flag(values['config'])
  assert str(info.value) == (
      '--config configs/nope.py: no such file (configs/ has agora_finetune.py, eval_agora.py, '
      'eval_ehf.py, eval_freihand.py, eval_interhand.py, eval_pw3d.py, quickstart.py, '
      'quickstart_hand.py, stage1.py, stage2_hand.py, stage3.py)')


def test_bad_evaluation_settings_are_named_before_anything_runs(tmp_path):
  from configs import eval_ehf
  from h4w_jax.evaluation import loop as eval_loop
  config = eval_ehf.get_config()
  config.eval.split, config.batch_size = 'train', 3
  config.data_root = config.human_model_path = str(tmp_path)
  with pytest.raises(eval_loop.EvalError) as info:
    eval_loop.run(config, tmp_path / 'ckpt', tmp_path / 'out')
  assert str(info.value).splitlines() == [
      "config.eval.split must be one of 'test', got 'train'",
      f'config.data_root {tmp_path} has no EHF/ folder (upstream\'s data/EHF; see README '
      '"Datasets")',
      f'checkpoint {tmp_path / "ckpt"} does not exist (give a converted checkpoint folder, an '
      'upstream snapshot_<N>.pth.tar or a training workdir)']
  assert not (tmp_path / 'out').exists()


# ------------------------------------------------------------------ architecture from weights

def _state_dict(depths, value=0.01):
  from h4w_jax.models import hand4whole
  shapes = files.variable_shapes(hand4whole.ModelConfig(*depths))
  return keys.flax_to_torch(jax.tree.map(lambda s: np.full(s.shape, value, s.dtype), shapes))


def test_the_depths_come_from_the_state_dict():
  """The quickstart's ResNet-18/10/10: the converter assumed 50/50/18 and listed 410 missing
  variables; the depths are now read off the keys."""
  state_dict = _state_dict((18, 10, 10))
  config = files.model_config_of_state_dict(state_dict, 'back.pth.tar')
  assert (config.body_depth, config.hand_depth, config.face_depth) == (18, 10, 10)
  variables = keys.torch_to_flax(state_dict, files.variable_shapes(config), 'back.pth.tar')
  assert files.model_config_of(variables) == config
  broken = {k: v for k, v in state_dict.items() if not k.startswith('module.backbone.layer3.1.')}
  with pytest.raises(files.WeightsError) as info:
    files.model_config_of_state_dict(broken, 'back.pth.tar')
  assert str(info.value) == ('back.pth.tar: backbone: a basic ResNet with (2, 2, 1, 2) blocks '
                             'per stage is none of depths [10, 18, 50]')
  no_hand_branch = {k: v for k, v in state_dict.items() if 'hand_roi_net' not in k}
  with pytest.raises(files.WeightsError, match=r'^back.pth.tar: no hand_roi_net/backbone weights '
                                               r'\(torch keys hand_roi_net.backbone.\*\): not a '
                                               r'Hand4Whole checkpoint \(whole-body or hand-only\)$'):
    files.model_config_of_state_dict(no_hand_branch, 'back.pth.tar')


def test_non_finite_or_non_float_tensors_are_refused():
  state_dict = dict(_state_dict((10, 10, 10)))
  config = files.model_config_of_state_dict(state_dict)
  key = 'module.backbone.layer1.0.conv1.weight'
  state_dict[key] = state_dict[key].copy()
  state_dict[key][0, 0, 0, 0] = np.nan
  state_dict['module.backbone.bn1.bias'] = state_dict['module.backbone.bn1.bias'].astype(np.int64)
  with pytest.raises(keys.ConversionError) as info:
    keys.torch_to_flax(state_dict, files.variable_shapes(config), 'snap.pth.tar')
  assert info.value.mismatched == [
      'module.backbone.bn1.bias: int64 values, the model needs floats',
      f'{key}: holds NaN or Inf values']


@pytest.mark.slow
def test_converter_eval_and_predictor_take_the_depths_from_the_file(tmp_path, capsys,
                                                                    clean_human_model_files):
  from h4w_jax.evaluation import loop as eval_loop
  from h4w_jax.inference import Predictor
  from h4w_jax.weights import cli
  snapshot = tmp_path / 'back.pth.tar'
  files.save_snapshot(snapshot, _state_dict((18, 10, 10)), epoch=2)
  assert cli.main([str(snapshot), str(tmp_path / 'ckpt')]) == 0
  assert 'epoch: 2, backbones ResNet-18/10/10' in capsys.readouterr().out
  assert cli.main(['--to-torch', str(tmp_path / 'ckpt'), str(tmp_path / 'again.pth.tar')]) == 0
  for source in (snapshot, tmp_path / 'ckpt', tmp_path / 'again.pth.tar'):
    _, config, what = files.load_model(source, eval_loop.model_config(_training_config()))
    assert (config.body_depth, config.hand_depth, config.face_depth) == (18, 10, 10), what
  predictor = Predictor.from_checkpoint(snapshot, clean_human_model_files)
  assert predictor.epoch == 2 and predictor.config.body_depth == 18


# ------------------------------------------------------------------ one-time writes

def test_an_interrupted_write_leaves_the_old_file(tmp_path):
  path = tmp_path / 'result.json'
  atomic.write_text(path, 'old')
  with pytest.raises(RuntimeError):
    with atomic.open_for_writing(path, 'w') as f:
      f.write('half of the ne')
      raise RuntimeError('killed')
  assert path.read_text() == 'old' and sorted(os.listdir(tmp_path)) == ['result.json']


def test_a_killed_writer_leaves_only_a_partial_name_that_the_next_removes(tmp_path):
  path = tmp_path / 'big.bin'
  code = ('import sys, time; from h4w_jax.common import atomic\n'
          'with atomic.open_for_writing(sys.argv[1]) as f:\n'
          '  f.write(b"x" * 1000); f.flush(); print("writing", flush=True); time.sleep(60)\n')
  proc = subprocess.Popen([sys.executable, '-c', code, str(path)], stdout=subprocess.PIPE,
                          text=True)
  assert proc.stdout.readline().strip() == 'writing'
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait(timeout=30)
  left = os.listdir(tmp_path)
  assert not path.exists() and len(left) == 1 and left[0].startswith('big.bin.partial-')
  assert atomic.remove_partials(path) and os.listdir(tmp_path) == []


def test_an_interrupted_body_model_write_is_written_again(tmp_path, monkeypatch):
  """The marker says 'incomplete' from the first file on; the quickstart's write_missing then
  writes the set again (here a stand-in writer: the real one is the slow drill below)."""
  from h4w_datasets import synthetic as data_synthetic
  from smplx_jax import synthetic
  hmf = tmp_path / 'hmf'

  def boom(seed):
    raise KeyboardInterrupt   # as a Ctrl-C before the first model file is complete
  monkeypatch.setattr(synthetic, '_make_smplx', boom)
  with pytest.raises(KeyboardInterrupt):
    synthetic.write_human_model_files(hmf, seed=0)
  assert synthetic.status(hmf) == 'incomplete'
  assert [p.name for p in hmf.rglob('*') if p.is_file()] == [synthetic.MARKER]

  calls = []
  monkeypatch.setattr(synthetic, 'write_human_model_files', lambda root, seed: calls.append(root))
  data_synthetic.write_missing(tmp_path / 'data', hmf, [])
  assert calls == [hmf]
  # Real files without the marker (the licensed set) are never written over.
  other = tmp_path / 'licensed'
  (other / 'smplx').mkdir(parents=True)
  (other / 'smplx' / 'SMPLX_NEUTRAL.npz').write_bytes(b'licensed')
  assert synthetic.status(other) == 'other'
  data_synthetic.write_missing(tmp_path / 'data', other, [])
  assert calls == [hmf]


def test_an_interrupted_dataset_write_is_written_again(tmp_path, monkeypatch):
  from h4w_datasets import mpii, synthetic

  def half_then_fail(data_root, human_model_path, *, num, seed):
    (Path(data_root) / 'MPII' / 'data').mkdir(parents=True)
    (Path(data_root) / 'MPII' / 'data' / 'train.json').write_text('{"images": [')
    raise KeyboardInterrupt
  monkeypatch.setattr(mpii, 'write_synthetic', half_then_fail)
  with pytest.raises(KeyboardInterrupt):
    synthetic.write_mini_datasets(tmp_path, 'hmf', ['MPII'])
  assert os.listdir(tmp_path) == []   # no MPII/ for the next run to take as complete
  (tmp_path / 'MPII.partial-123-abc' / 'MPII').mkdir(parents=True)   # as a kill -9 leaves it

  def complete(data_root, human_model_path, *, num, seed):
    (Path(data_root) / 'MPII' / 'data').mkdir(parents=True)
    (Path(data_root) / 'MPII' / 'data' / 'train.json').write_text('{}')
  monkeypatch.setattr(mpii, 'write_synthetic', complete)
  monkeypatch.setattr('smplx_jax.synthetic.status', lambda root: 'complete')
  synthetic.write_missing(tmp_path, 'hmf', ['MPII'])
  assert os.listdir(tmp_path) == ['MPII']
  assert (tmp_path / 'MPII' / 'data' / 'train.json').read_text() == '{}'


def test_an_interrupted_converted_checkpoint_is_detected_and_written_again(tmp_path,
                                                                           monkeypatch):
  variables = {'params': {'dense': {'kernel': np.ones((3, 2), np.float32)}},
               'batch_stats': {'bn': {'mean': np.zeros(2, np.float32)}}}

  def killed(path, text):
    raise KeyboardInterrupt
  with monkeypatch.context() as mp:
    mp.setattr(files.atomic, 'write_text', killed)   # the checksums and meta.json come last
    with pytest.raises(KeyboardInterrupt):
      files.save_checkpoint(tmp_path / 'ckpt', variables, epoch=1)
  with pytest.raises(ValueError, match=r'ckpt: an incomplete checkpoint \(variables/ without '
                                       r'meta.json: its writer stopped before finishing\)'):
    files.load_checkpoint(tmp_path / 'ckpt')
  files.save_checkpoint(tmp_path / 'ckpt', variables, epoch=1)
  loaded, meta = files.load_checkpoint(tmp_path / 'ckpt')
  assert meta['epoch'] == 1
  np.testing.assert_array_equal(loaded['params']['dense']['kernel'], 1)
  data = tmp_path / 'ckpt' / 'variables' / 'h4w_integrity.json'
  listed = json.loads(data.read_text())['files']
  victim = tmp_path / 'ckpt' / 'variables' / max(listed, key=lambda k: listed[k]['bytes'])
  victim.write_bytes(victim.read_bytes()[:-1] + bytes([victim.read_bytes()[-1] ^ 1]))
  with pytest.raises(ValueError, match=r'ckpt/variables: damaged, .* has other bytes than were '
                                       r'written \(\d+ bytes, SHA-256 differs\) \(checksum\)'):
    files.load_checkpoint(tmp_path / 'ckpt')


@pytest.mark.slow
def test_drill_kill_the_body_model_and_dataset_writers(tmp_path):
  """The issue's drills: kill -9 while the 1.6 GB body models are written, then while a
  dataset is written; the next quickstart set-up recovers by itself."""
  from h4w_datasets import mpii
  from h4w_datasets import synthetic as data_synthetic
  from smplx_jax import synthetic
  hmf, data = tmp_path / 'hmf', tmp_path / 'data'
  proc = subprocess.Popen([sys.executable, '-m', 'smplx_jax.synthetic', str(hmf)])
  while not (hmf / 'smplx' / 'SMPLX_NEUTRAL.npz').exists() and proc.poll() is None:
    time.sleep(0.05)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait(timeout=60)
  assert synthetic.status(hmf) == 'incomplete'
  code = ('import sys; from h4w_datasets import synthetic\n'
          'synthetic.write_missing(sys.argv[1], sys.argv[2], ["MPII"], num=40)\n')
  proc = subprocess.Popen([sys.executable, '-c', code, str(data), str(hmf)])
  while not list(data.glob('MPII.partial-*/MPII/data/images/*')) and proc.poll() is None:
    time.sleep(0.05)
  assert synthetic.status(hmf) == 'complete'   # the body models were written again first
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait(timeout=60)
  assert not (data / 'MPII').exists()
  data_synthetic.write_missing(data, hmf, ['MPII'], num=3)
  assert len(mpii.MPII(data)) == 4 and [p.name for p in data.iterdir()] == ['MPII']


# ------------------------------------------------------------------ logs

def test_a_resumed_run_logs_each_step_once(tmp_path):
  from h4w_jax.training import logs
  writer = logs.SummaryWriter(tmp_path / 'tb', resume_step=0)
  for step in (10, 20, 30):
    writer.scalars(step, {'loss/total': 3.0 - step / 100, 'window_steps': 10})
  writer.close()
  with open(tmp_path / 'tb_scalars.jsonl', 'a') as f:
    f.write('{"step": 4')   # a line cut by a kill
  writer = logs.SummaryWriter(tmp_path / 'tb', resume_step=20)   # the checkpoint was step 20
  writer.scalars(30, {'loss/total': 2.5, 'window_steps': 10})
  writer.close()
  rows = [json.loads(line) for line in (tmp_path / 'tb_scalars.jsonl').read_text().splitlines()]
  assert [(r['step'], r['loss/total']) for r in rows] == [(10, 2.9), (20, 2.8), (30, 2.5)]


def test_the_loss_curve_has_axes_ticks_and_labels(tmp_path):
  from h4w_jax.training import logs
  rows = [{'step': s, 'loss/total': 3.5 * np.exp(-s / 40)} for s in range(10, 130, 10)]
  rows.insert(2, {'step': 30, 'loss/total': 9.0})   # an old file's duplicate: the later wins
  (tmp_path / 'tb_scalars.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  png = logs.loss_curve(tmp_path / 'tb_scalars.jsonl', tmp_path / 'loss.png')
  from PIL import Image
  image = np.asarray(Image.open(png).convert('RGB')).astype(int)
  dark = image.sum(-1) < 450   # text (anti-aliased) and axes, not the light grid
  assert logs._nice_ticks(10, 120).tolist() == [20, 40, 60, 80, 100, 120]
  assert logs._nice_ticks(0.1, 2.67).tolist() == [0.5, 1.0, 1.5, 2.0, 2.5]
  assert dark[:, :55].sum() > 30         # y tick labels left of the axis (68 here)
  assert dark[-40:, 60:].sum() > 100     # x tick labels and 'step' below it
  assert dark[:25].sum() > 100           # the title
  red = (image[..., 0] > 150) & (image[..., 1] < 120)
  assert red[30:-44, 62:].sum() > 200    # the curve, inside the axes
  assert max(r['loss/total'] for r in logs.read_scalars(tmp_path / 'tb_scalars.jsonl')) < 9


@pytest.mark.slow
def test_evaluation_input_leaves_no_shared_memory_behind(tmp_path):
  """grain workers hand each array over in shared memory; a run that ended right after its
  last batch printed 'There appear to be 50 leaked shared_memory objects'."""
  code = f'''
import sys
sys.path.insert(0, {str(ROOT / 'tests')!r})
from fake_datasets import FakeReader
from h4w_datasets import pipeline

def main():
  reader = FakeReader({str(tmp_path)!r}, 6)
  config = pipeline.PipelineConfig(local_batch=2, num_epochs=1, num_workers=2)
  data, _ = pipeline.build([[reader]], config, train=False)
  batches = iter(data)
  count = sum(1 for _ in batches)
  pipeline.close(batches)
  print('batches', count)

if __name__ == '__main__':
  main()
'''
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        timeout=300, cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'batches 3' in proc.stdout
  assert 'leaked shared_memory' not in proc.stderr


def test_an_empty_dataset_group_is_named(tmp_path):
  """upstream's MultipleDatasets divides by each group's size: ZeroDivisionError at step 1."""
  sys.path.insert(0, str(ROOT / 'tests'))
  from fake_datasets import FakeReader
  from h4w_datasets import pipeline
  empty, full = FakeReader(tmp_path / 'a', 0), FakeReader(tmp_path / 'b', 2)
  with pytest.raises(pipeline.DataError, match=r'^no records to train on in the group Fake2D '
                                               r'\(0 records\): every annotation was filtered'):
    pipeline.build([[empty], [full]], pipeline.PipelineConfig(local_batch=1))
