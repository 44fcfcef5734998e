"""Stage 2 through the same trainer and evaluator: train.py's loop with the hand task on the
synthetic hand sets, then eval.py's FreiHAND path on the workdir (pred.json and metrics).

One small run (ResNet-10, batch 4, 8 steps); multi-device, multi-process and exact
resume are the loop's and are tested once, for the whole-body task, in test_train.py.
"""

import json
import sys
from pathlib import Path

import numpy as np

from h4w_jax.common import mano
from h4w_jax.evaluation import loop as eval_loop
from h4w_jax.training import loop
from h4w_jax.weights import files

ROOT = Path(__file__).resolve().parents[1]


def _config(name, **fields):
  sys.path.insert(0, str(ROOT))
  c = loop.load_config_file(ROOT / 'configs' / f'{name}.py')
  for key, value in fields.items():
    target = c
    *parents, leaf = key.split('.')
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c


def test_stage2_trains_then_evaluates(tmp_path, hand_data_root, clean_human_model_files):
  workdir = tmp_path / 'stage2'
  config = _config('quickstart_hand', synthetic=False, data_root=str(hand_data_root),
                   human_model_path=str(clean_human_model_files), batch_size=4, lr=3e-3,
                   total_steps=8, log_every=4, image_every=8, checkpoint_every=0,
                   async_checkpoints=False, **{'model.hand_depth': 10})
  loop.run(config, workdir)
  rows = [json.loads(line) for line in (workdir / 'tb_scalars.jsonl').read_text().splitlines()]
  losses = [r['loss/total'] for r in rows]
  assert len(losses) == 2 and all(np.isfinite(losses)) and losses[1] < 0.9 * losses[0], losses
  assert {f'loss/{k}' for k in ('joint_img', 'mano_joint_img', 'mano_pose', 'mano_shape',
                                'joint_proj', 'joint_cam', 'mano_joint_cam')} <= set(rows[0])
  assert (workdir / 'images' / 'overlay_0000008.png').exists()
  assert (workdir / 'loss_curve.png').exists()
  step, state = files.load_latest_state(workdir / 'checkpoints')
  assert step == 8 and 'rotation_net' in state['params']

  out = tmp_path / 'results'
  eval_config = _config('eval_freihand', data_root=str(hand_data_root),
                        human_model_path=str(clean_human_model_files), batch_size=4,
                        **{'model.hand_depth': 10, 'data.num_workers': 0})
  result = eval_loop.run(eval_config, str(workdir), str(out))
  joints, vertices = (np.asarray(a) for a in json.loads((out / 'FreiHAND' / 'pred.json')
                                                        .read_text()))
  assert joints.shape == (4, 21, 3) and vertices.shape == (4, 778, 3)   # upstream's layout
  regressor = mano.joint_regressor(mano.mano_layer(clean_human_model_files))
  np.testing.assert_allclose(joints, np.einsum('jv,nvc->njc', regressor, vertices), atol=1e-6)
  metrics = result['metrics']
  assert {'pa_mpjpe', 'pa_mpvpe', 'f_al_5', 'f_al_15'} <= set(metrics)
  assert all(np.isfinite(v) for v in metrics.values())
  assert 0 < metrics['pa_mpjpe'] < 100 and 0 <= metrics['f_al_5'] <= metrics['f_al_15'] <= 1
  assert json.loads((out / 'FreiHAND_test.json').read_text())['num_samples'] == 4
