"""Stage 2's training step: the hand-only model in JAX against upstream's PyTorch hand step.

    python bench/hand_step.py --upstream PATH/TO/Hand4Whole_RELEASE@Pose2Pose \\
        --torch-python PYTHON [--human-model-path DIR] [--batches 8 16]
    python bench/hand_step.py --device-only [--batches 8 48]

JAX: h4w_jax.training.step.train_step with the hand task (h4w_jax.training.tasks.hand,
ResNet-50 as upstream), jitted with the state donated, on JAX's default device. One
step = the MANO targets from a batch of hand examples (h4w_jax.models.hand_targets, on
the device, both MANO layers), the model in train mode, the seven losses, the gradient
and the Adam update. The examples are one batch of our hand pipeline over the synthetic
FreiHAND / InterHand2.6M / MSCOCO-hand sets, already on the device.

Upstream: the Pose2Pose branch's main/model.py get_model('train') with cfg.set_args(
..., 'hand'), in train mode, torch.optim.Adam (lr 1e-4) over its trainable modules; one
step = the forward with the loss dict, the sum of the loss means, backward, the
optimizer step, as main/train.py. Its MANO targets are computed per sample in its
loader workers, not in the step, so the same batch's targets (our jitted
hand_train_batch, equal to upstream's process_human_model_output to float rounding in
tests/test_hand_datasets.py) are handed to it ready-made: the torch step does less work
than ours. It runs on this machine's CPU in a child process of --torch-python (torch,
torchvision and a torchgeometry with upstream's README patch); `.cuda()` is made a no-op
and the ImageNet download of the train-mode init is skipped; upstream's code is imported,
not modified (its config creates output folders in the checkout). Pose2Pose builds SMPL,
SMPL-X, MANO and FLAME at import: --human-model-path needs all four, as plain (chumpy-free)
pickles; the default writes synthetic ones.

Both sides use the deterministic fake weights of tests/fake_hand.py (realistic poses and
camera).

Measured (quiet 2-core CPU, jax 0.10.2 against torch 2.14.1 with 2 threads): B=8 607 vs
212 ms/sample (ratio 0.35), B=16 684 vs 212 (0.31); JAX compile 22-29 s. The gap is the
XLA:CPU weight-gradient convolutions: a ResNet-50 forward at 256x256 takes 84 ms/sample
in JAX and 89 in torch, the gradient w.r.t. the inputs 186 ms, w.r.t. the weights 548 ms
(torch's whole fwd+bwd: 226); --xla_cpu_use_onednn / _xnnpack do not change it. The
MANO targets and losses are a small part of the step. Accelerators were not measured. Times are medians (at least --min-time seconds); ratio = torch time / JAX time
(> 1: JAX is faster). JAX compile time is reported apart. On a shared machine the
numbers move by tens of percent: rerun on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import _median  # noqa: E402  (a sibling script)


# ---------------------------------------------------------------------------
# Torch side (child process: torch, upstream's Pose2Pose code, tests/fake_hand.py)


def torch_side(work_dir: Path) -> None:
  work = json.loads((work_dir / 'work.json').read_text())
  import torch
  torch.Tensor.cuda = lambda self, *a, **k: self
  torch.nn.Module.cuda = lambda self, *a, **k: self
  root = Path(work['upstream'])
  sys.path.insert(0, str(root / 'main'))
  import config  # upstream's
  config.cfg.set_args('0', 'hand')
  config.cfg.human_model_path = work['human_model_path']
  sys.modules['utils.vis'] = types.ModuleType('utils.vis')
  import model as upstream_model
  import nets.resnet
  nets.resnet.ResNetBackbone.init_weights = lambda self: None   # ImageNet download
  sys.path.insert(0, str(REPO / 'tests'))
  import fake_hand
  fake = fake_hand.fake_state_dict(fake_hand.load_manifest())
  results = {'label': f'torch {torch.__version__} on cpu ({torch.get_num_threads()} threads)'}
  net = upstream_model.get_model('train')
  full = net.state_dict()
  full.update({k.removeprefix('module.'): torch.from_numpy(v) for k, v in fake.items()})
  net.load_state_dict(full, strict=True)
  net.train()
  params = [p for m in net.trainable_modules for p in m.parameters()]
  optimizer = torch.optim.Adam(params, lr=1e-4)
  for case in work['cases']:
    data = np.load(work_dir / case['file'])
    img = torch.from_numpy(data['img'])
    groups = {g: {k.split('/', 1)[1]: torch.from_numpy(data[k]) for k in data.files
                  if k.startswith(g + '/')} for g in ('targets', 'meta')}

    def step():
      loss = net({'img': img}, groups['targets'], groups['meta'], 'train')
      optimizer.zero_grad()
      sum(v.mean() for v in loss.values()).backward()
      optimizer.step()

    seconds = _median(step, work['repeats'], work['min_time'])
    results[case['key']] = {'seconds': seconds}
    print(f'  torch B={case["batch"]}: {seconds / case["batch"] * 1e3:.1f} ms/sample', flush=True)
  (work_dir / 'torch_result.json').write_text(json.dumps(results))


# ---------------------------------------------------------------------------
# JAX side and the report


def hand_batch(data_root: Path, human_model_path, batch: int, num: int):
  """One local batch of the stage-2 pipeline over the synthetic hand sets."""
  from h4w_datasets import pipeline, registry, synthetic
  synthetic.write_mini_datasets(data_root, human_model_path, num=num, task='hand')
  groups = registry.make_groups(data_root, ('FreiHAND', 'InterHand26M'), ('MSCOCO',),
                                task='hand')
  dataset, _ = pipeline.build(groups, pipeline.PipelineConfig(local_batch=batch, read_threads=1))
  return next(iter(dataset))


def jax_step(human_model_path):
  """(step, fresh_state) of the hand task at ResNet-50 with the fake weights, as the loop."""
  import functools
  import jax
  from h4w_jax.models import hand_only
  from h4w_jax.training import optim, step as step_lib, tasks
  from h4w_jax.weights import keys
  sys.path.insert(0, str(REPO / 'tests'))
  import fake_hand
  task = tasks.hand(hand_only.HandModelConfig(depth=50))
  variables = keys.torch_to_flax(fake_hand.fake_state_dict(fake_hand.load_manifest()),
                                 hand_only.variable_shapes(task.model_config))
  schedule = optim.learning_rate_schedule(1e-4, (), 10.0, 1000)
  tx = optim.make_optimizer(schedule)
  rng = jax.random.key(0)
  fresh = lambda: jax.jit(lambda v, key: step_lib.init_state(key, task.model_config, tx,
                                                               lambda _: v))(variables, rng)
  layer, target_layer = task.body_models(human_model_path)
  step = jax.jit(functools.partial(step_lib.train_step, task=task, tx=tx, schedule=schedule),
                 donate_argnums=0)
  return functools.partial(step, layer=layer, target_layer=target_layer), fresh, target_layer


def torch_inputs(target_layer, batch, path: Path) -> None:
  import jax
  from h4w_jax.models import hand_targets
  inputs, target, meta = jax.device_get(jax.jit(hand_targets.hand_train_batch)(target_layer,
                                                                                batch))
  arrays = {'img': np.ascontiguousarray(np.asarray(inputs['img']).transpose(0, 3, 1, 2))}
  arrays.update({f'targets/{k}': np.asarray(v) for k, v in target.items()})
  arrays.update({f'meta/{k}': np.asarray(v) for k, v in meta.items()})
  np.savez(path, **arrays)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--upstream', type=Path, default=None,
                      help='a Hand4Whole_RELEASE checkout of the Pose2Pose branch')
  parser.add_argument('--torch-python', default=sys.executable,
                      help='interpreter with torch, torchvision and patched torchgeometry')
  parser.add_argument('--device-only', action='store_true', help='JAX numbers only')
  parser.add_argument('--human-model-path', type=Path, default=None,
                      help='human_model_files with SMPL, SMPL-X, MANO, FLAME (default: synthetic)')
  parser.add_argument('--batches', type=int, nargs='+', default=[8, 16])
  parser.add_argument('--num', type=int, default=8, help='images per synthetic dataset')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--min-time', type=float, default=2.0)
  parser.add_argument('--_torch-side', dest='torch_side', type=Path, default=None,
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.torch_side is not None:
    return torch_side(args.torch_side)
  if not args.device_only and args.upstream is None:
    parser.error('--upstream CHECKOUT (branch Pose2Pose) is required unless --device-only')

  import jax
  warnings.filterwarnings('ignore', message='Some donated buffers were not usable')
  tmp = tempfile.TemporaryDirectory(prefix='h4w_hand_bench_')
  work_dir = Path(tmp.name)
  hmf = args.human_model_path
  if hmf is None:
    from smplx_jax import synthetic as body_synthetic
    print(f'Writing chumpy-free synthetic body models to {work_dir / "hmf"} ...', flush=True)
    hmf = body_synthetic.write_human_model_files(work_dir / 'hmf', seed=0, chumpy=False)
  print('Writing the synthetic hand sets and reading one batch ...', flush=True)
  examples = hand_batch(work_dir / 'data', hmf, max(args.batches), args.num)
  device = jax.devices()[0]
  print(f'jax {jax.__version__} on {device.device_kind} ({jax.device_count()} devices), '
        f'{os.cpu_count()} CPUs', flush=True)

  step, fresh, target_layer = jax_step(hmf)
  rows = []
  for batch in args.batches:
    host = {k: v[:batch] for k, v in examples.items()}
    data = jax.device_put(host)
    holder = {'state': fresh()}
    start = time.perf_counter()
    holder['state'], metrics = jax.block_until_ready(step(holder['state'], data))
    compile_s = time.perf_counter() - start

    def run():
      holder['state'], out = step(holder['state'], data)
      return jax.block_until_ready(out)

    seconds = _median(run, args.repeats, args.min_time)
    rows.append(dict(key=f'B={batch}', batch=batch, jax_s=seconds, compile_s=compile_s,
                     finite=bool(run()['finite'])))
    print(f'  jax B={batch}: {seconds / batch * 1e3:.1f} ms/sample, compile {compile_s:.1f} s',
          flush=True)
    if not args.device_only:
      torch_inputs(target_layer, host, work_dir / f'hand_{batch}.npz')

  torch_result = {}
  if not args.device_only:
    work = {'upstream': str(args.upstream.resolve()), 'human_model_path': str(hmf),
            'repeats': args.repeats, 'min_time': args.min_time,
            'cases': [{'key': r['key'], 'batch': r['batch'], 'file': f'hand_{r["batch"]}.npz'}
                      for r in rows]}
    (work_dir / 'work.json').write_text(json.dumps(work))
    print('Upstream side (child process):', flush=True)
    subprocess.run([args.torch_python, str(Path(__file__).resolve()), '--_torch-side',
                    str(work_dir)], check=True)
    torch_result = json.loads((work_dir / 'torch_result.json').read_text())

  print(f'\nJAX: jitted training.train_step (hand task, ResNet-50) on {device.device_kind}; '
        + (torch_result.get('label', '') + ", upstream's Pose2Pose hand model" if torch_result
           else 'no torch side (--device-only)') + '. Host-to-device copy not timed.')
  header = f'{"B":>3} {"jax ms/sample":>14} {"jax samples/s":>14} {"jax compile s":>14}'
  if torch_result:
    header += f' {"torch ms/sample":>16} {"torch samples/s":>16} {"ratio":>6}'
  print(header)
  for r in rows:
    line = (f'{r["batch"]:3d} {r["jax_s"] / r["batch"] * 1e3:14.1f} '
            f'{r["batch"] / r["jax_s"]:14.2f} {r["compile_s"]:14.1f}')
    if torch_result:
      t = torch_result[r['key']]['seconds']
      line += f' {t / r["batch"] * 1e3:16.1f} {r["batch"] / t:16.2f} {t / r["jax_s"]:6.2f}'
    print(line + ('' if r['finite'] else '   (JAX loss not finite)'))
  tmp.cleanup()


if __name__ == '__main__':
  main()
