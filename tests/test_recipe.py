"""The paper's whole recipe from the README's own commands: stage 1 -> stage 2 -> merge ->
stage 3 -> evaluation, on synthetic data with ResNet-10 backbones (slow: CI runs it after
the default suite).

The commands are read from the README's recipe block (the fenced block after
`<!-- recipe -->`), so the README cannot drift from what runs. Each line runs as written
(paths under a temporary folder instead of runs/ and results/), plus the overrides a
laptop-sized run needs: synthetic data roots and body models, ResNet-10, batch 4,
2 steps.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from h4w_jax.weights import files, keys

ROOT = Path(__file__).resolve().parents[1]


def readme_recipe() -> list[str]:
  text = (ROOT / 'README.md').read_text()
  block = text.split('<!-- recipe -->', 1)[1].split('```bash', 1)[1].split('```', 1)[0]
  return [line.strip() for line in block.splitlines() if line.strip().startswith('python ')]


def _overrides(command: str, body_root, hand_root, hmf) -> list[str]:
  tiny = {'synthetic': False, 'human_model_path': hmf, 'batch_size': 4,
          'model.body_depth': 10, 'model.hand_depth': 10, 'model.face_depth': 10}
  if command.startswith('python train.py'):
    tiny.update(total_steps=2, log_every=1, image_every=2, checkpoint_every=0,
                async_checkpoints=False, batchnorm='synced')
  elif command.startswith('python eval.py'):
    tiny.update({'data.num_workers': 0})
  else:
    return []
  hand = 'stage2' in command or 'freihand' in command
  tiny['data_root'] = hand_root if hand else body_root
  return [f'--config.{k}={v}' for k, v in tiny.items()]


@pytest.mark.slow
def test_the_whole_recipe_from_the_readme(tmp_path, clean_human_model_files):
  from h4w_datasets import synthetic
  commands = readme_recipe()
  assert [c.split()[1:3] for c in commands][:2] == [['train.py', '--config'],
                                                     ['train.py', '--config']]
  assert any('merge-hand' in c for c in commands) and any('stage3' in c for c in commands)
  body_root, hand_root = tmp_path / 'body_data', tmp_path / 'hand_data'
  synthetic.write_mini_datasets(body_root, clean_human_model_files,
                                ['Human36M', 'MSCOCO', 'MPII', 'EHF'], num=8)
  synthetic.write_mini_datasets(hand_root, clean_human_model_files, num=8, task='hand')
  runs, results = tmp_path / 'runs', tmp_path / 'results'
  for command in commands:
    line = command.replace('runs/', f'{runs}/').replace('results/', f'{results}/')
    argv = shlex.split(line)
    argv = [sys.executable] + argv[1:] + _overrides(command, body_root, hand_root,
                                                    clean_human_model_files)
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1500,
                          env={**os.environ, 'XLA_FLAGS': ''})
    assert proc.returncode == 0, f'{line}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'

  # stage 2 is the hand-only model; the merge took its backbone and stage 1's everything else
  _, stage1 = files.load_latest_state(runs / 'stage1' / 'checkpoints')
  _, stage2 = files.load_latest_state(runs / 'stage2' / 'checkpoints')
  assert set(stage2['params']) == {'backbone', 'position_net', 'rotation_net'}
  merged, meta = files.load_checkpoint(runs / 'merged')
  assert meta['epoch'] == 0
  for a, b in zip(jax.tree.leaves(keys.subtree(merged, ('hand_roi_net', 'backbone'))),
                  jax.tree.leaves(keys.subtree(stage2, ('backbone',)))):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(keys.subtree(merged, ('backbone',))),
                  jax.tree.leaves(keys.subtree(stage1, ('backbone',)))):
    np.testing.assert_array_equal(a, b)
  step3, _ = files.load_latest_state(runs / 'stage3' / 'checkpoints')
  assert step3 == 2
  assert (runs / 'stage2' / 'images' / 'overlay_0000002.png').exists()

  freihand = json.loads((results / 'stage2' / 'FreiHAND_test.json').read_text())
  assert np.isfinite(freihand['metrics']['pa_mpjpe'])
  pred = json.loads((results / 'stage2' / 'FreiHAND' / 'pred.json').read_text())
  assert np.shape(pred[1]) == (freihand['num_samples'], 778, 3)
  ehf = json.loads((results / 'stage3' / 'EHF_test.json').read_text())
  assert all(np.isfinite(v) for v in ehf['metrics'].values())
