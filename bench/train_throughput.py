"""Training throughput: h4w_jax's jitted train step against upstream's PyTorch step.

    python bench/train_throughput.py --upstream PATH/TO/Hand4Whole_RELEASE \\
        [--torch-python PYTHON] [--human-model-path DIR] [--batches 2 8] \\
        [--configs default quickstart]
    python bench/train_throughput.py --device-only [--batches 2 8 24]

JAX: h4w_jax.training.step.train_step set up as h4w_jax.training.loop sets it up for a
config file (configs/<name>.py with batch_size = B: model_config, Adam with
the epoch schedule, compute dtype), jitted with the state donated, on JAX's
default device. One step = the SMPL-X targets from a batch of examples
(h4w_jax.models.targets, on the device), the model in train mode, all losses, the
gradient and the Adam update. The examples are one batch of our input
pipeline over synthetic mini datasets (Human3.6M, MSCOCO, MPII), already on
the device (the host-to-device copy is not timed).

Upstream: main/model.py's get_model('train') in train mode, torch.optim.Adam
(lr 1e-4), one step = forward with the loss dict, sum of the loss means,
backward, optimizer step, as main/train.py. Its targets are computed in its
loader workers, not in the step, so the same batch's targets (our jitted
train_batch, which matches upstream's process_human_model_output to float
rounding in the parity tests) are handed to it ready-made: the torch step
does less work than ours. It runs on this machine's CPU in a child process of
--torch-python (an interpreter with torch and torchvision: upstream needs
torchvision's roi_align); `.cuda()` is a no-op there, utils.vis (pyrender) is
stubbed and the ImageNet download of train-mode init is skipped, as in
bench/model_step.py. Upstream's code is imported, not modified (its config
creates its output folders in the checkout).

Weights: the ResNet-50 default config uses the deterministic fake weights of
tests/fake_h4w.py on both sides (realistic hand/face boxes: upstream's
roi_align cost grows with box size); other configs use the trainer's
initialisation (flax init, upstream's head init). Upstream's model cannot be
built with a ResNet-18 body (its BoxNet takes 2048 input channels); the torch
side tries and the table shows its error.

Times are medians over repeats (at least --min-time seconds); per-sample =
step time / B; ratio = torch time / JAX time (> 1: JAX is faster). JAX compile
time (first call, including one step) is reported separately. On a shared
machine the numbers move by tens of percent: rerun on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FAKE_DEPTHS = (50, 50, 18)   # the (body, hand, face) ResNets the fake weights are shaped for


def _median(fn, repeats, min_time):
  fn()
  times, start = [], time.perf_counter()
  while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 30):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


# ---------------------------------------------------------------------------
# Torch side (child process: torch, torchvision, upstream's code, tests/fake_h4w.py)


def _load_upstream(root: Path, human_model_path: str):
  import torch
  torch.Tensor.cuda = lambda self, *a, **k: self
  torch.nn.Module.cuda = lambda self, *a, **k: self
  sys.path.insert(0, str(root / 'main'))
  import config  # upstream's
  config.cfg.human_model_path = human_model_path
  sys.modules['utils.vis'] = types.ModuleType('utils.vis')
  import model as upstream_model  # upstream's main/model.py
  import nets.resnet
  nets.resnet.ResNetBackbone.init_weights = lambda self: None   # ImageNet download
  return torch, upstream_model, config.cfg


def torch_side(work_dir: Path) -> None:
  """Child process: times upstream's train step per case, writes torch_result.json."""
  work = json.loads((work_dir / 'work.json').read_text())
  torch, upstream_model, cfg = _load_upstream(Path(work['upstream']), work['human_model_path'])
  sys.path.insert(0, str(REPO / 'tests'))
  import fake_h4w
  state = None
  results = {'label': f'torch {torch.__version__} on cpu ({torch.get_num_threads()} threads)'}
  for case in work['cases']:
    key = case['key']
    try:
      cfg.resnet_type, cfg.hand_resnet_type, cfg.face_resnet_type = case['depths']
      net = upstream_model.get_model('train')
      if tuple(case['depths']) == FAKE_DEPTHS:
        if state is None:
          state = fake_h4w.fake_state_dict(fake_h4w.load_manifest())
        full = net.state_dict()
        ours = {k.removeprefix('module.'): torch.from_numpy(v) for k, v in state.items()}
        full.update(ours)
        net.load_state_dict(full, strict=True)
      net.train()
      optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
      data = np.load(work_dir / case['file'])
      img = torch.from_numpy(data['img'])
      groups = {g: {k.split('/', 1)[1]: torch.from_numpy(data[k]) for k in data.files
                    if k.startswith(g + '/')} for g in ('targets', 'meta')}

      def step():
        loss = net({'img': img}, {k: v.clone() for k, v in groups['targets'].items()},
                   {k: v.clone() for k, v in groups['meta'].items()}, 'train')
        loss = {k: v.mean() for k, v in loss.items()}
        optimizer.zero_grad()
        sum(loss[k] for k in loss).backward()
        optimizer.step()

      seconds = _median(step, work['repeats'], work['min_time'])
      results[key] = {'seconds': seconds}
      print(f'  torch {key}: {seconds / case["batch"] * 1e3:.1f} ms/sample', flush=True)
    except Exception as e:  # noqa: BLE001  (reported in the table: e.g. ResNet-18 body)
      results[key] = {'error': f'{type(e).__name__}: {e}'.splitlines()[0][:200]}
      print(f'  torch {key}: {results[key]["error"]}', flush=True)
  (work_dir / 'torch_result.json').write_text(json.dumps(results))


# ---------------------------------------------------------------------------
# JAX side and the orchestration (this interpreter: jax, flax, optax, h4w_jax, h4w_datasets)


def example_batch(data_root: Path, human_model_path, batch: int, num: int):
  """One local batch of our training pipeline over synthetic mini datasets."""
  from h4w_datasets import pipeline, registry, synthetic
  names = ('Human36M',), ('MSCOCO', 'MPII')
  synthetic.write_mini_datasets(data_root, human_model_path, names[0] + names[1], num=num)
  groups = registry.make_groups(data_root, *names)
  config = pipeline.PipelineConfig(seed=0, local_batch=batch, read_threads=1)
  dataset, _ = pipeline.build(groups, config)
  return next(iter(dataset))


def jax_step(config_name: str, batch_size: int, human_model_path):
  """(step_fn, state, layer, weights label) for configs/<name>.py at batch_size, as training.loop.run."""
  import functools
  import jax
  import jax.numpy as jnp
  from h4w_jax.models import hand4whole as model_lib
  from h4w_jax.training import loop, optim, step as step_lib, tasks
  from h4w_jax.weights import keys
  if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))   # configs/*.py import `configs.default`
  config = loop.load_config_file(REPO / 'configs' / f'{config_name}.py')
  config.batch_size = batch_size
  task = tasks.from_config(config)
  model_cfg = task.model_config
  schedule = optim.learning_rate_schedule(config.lr, config.lr_dec_epoch, config.lr_dec_factor,
                                          1000, config.start_epoch)
  tx = optim.make_optimizer(schedule, config.grad_clip_norm)
  rng = jax.random.key(config.seed)
  depths = (model_cfg.body_depth, model_cfg.hand_depth, model_cfg.face_depth)
  if depths == FAKE_DEPTHS:
    sys.path.insert(0, str(REPO / 'tests'))
    import fake_h4w
    state_dict = fake_h4w.fake_state_dict(fake_h4w.load_manifest())
    variables = keys.torch_to_flax(state_dict, model_lib.variable_shapes(model_cfg))
    label = 'fake (tests/fake_h4w.py)'
  else:
    variables = task.initial_variables(rng, **config.init.to_dict())
    label = 'trainer init'
  state = jax.jit(lambda v, key: step_lib.init_state(key, model_cfg, tx, lambda _: v))(
      variables, rng)
  layer, target_layer = task.body_models(human_model_path)   # as the trainer passes them
  step = jax.jit(functools.partial(
      step_lib.train_step, task=task, tx=tx, schedule=schedule,
      compute_dtype=jnp.dtype(config.compute_dtype)), donate_argnums=0)
  # Layers are arguments, not closures: arrays must not become constants of the program.
  return functools.partial(step, target_layer=target_layer), state, layer, depths, label


def torch_inputs(layer, batch, path: Path) -> None:
  """Upstream's step inputs from our examples: NCHW image, targets and meta_info (npz)."""
  import jax
  from h4w_jax.models import targets
  inputs, target, meta = jax.device_get(jax.jit(targets.train_batch)(layer, batch))
  arrays = {'img': np.ascontiguousarray(np.asarray(inputs['img']).transpose(0, 3, 1, 2))}
  arrays.update({f'targets/{k}': np.asarray(v) for k, v in target.items()})
  arrays.update({f'meta/{k}': np.asarray(v) for k, v in meta.items()})
  np.savez(path, **arrays)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--upstream', type=Path, default=None,
                      help='a Hand4Whole_RELEASE checkout (main branch)')
  parser.add_argument('--torch-python', default=sys.executable,
                      help='interpreter with torch + torchvision for the upstream side')
  parser.add_argument('--device-only', action='store_true',
                      help='JAX numbers only (e.g. on a GPU/TPU machine)')
  parser.add_argument('--human-model-path', type=Path, default=None,
                      help='human_model_files (default: synthetic files)')
  parser.add_argument('--batches', type=int, nargs='+', default=[2, 8])
  parser.add_argument('--configs', nargs='+', default=['default', 'quickstart'],
                      help='configs/<name>.py to time (default: ResNet-50, quickstart: ResNet-18)')
  parser.add_argument('--num', type=int, default=8, help='images per synthetic dataset')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--min-time', type=float, default=2.0, help='seconds of timed steps at least')
  parser.add_argument('--_torch-side', dest='torch_side', type=Path, default=None,
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.torch_side is not None:
    return torch_side(args.torch_side)
  if not args.device_only and args.upstream is None:
    parser.error('--upstream CHECKOUT is required unless --device-only')

  import jax
  warnings.filterwarnings('ignore', message='Some donated buffers were not usable')
  tmp = tempfile.TemporaryDirectory(prefix='h4w_bench_')
  work_dir = Path(tmp.name)
  hmf = args.human_model_path
  if hmf is None and not args.device_only:
    # upstream unpickles SMPL and MANO with plain pickle: no chumpy objects allowed
    from smplx_jax import synthetic as body_synthetic
    print(f'Writing chumpy-free synthetic body models to {work_dir / "hmf"} ...', flush=True)
    hmf = body_synthetic.write_human_model_files(work_dir / 'hmf', seed=0, chumpy=False)
  elif hmf is None:
    from smplx_jax.demo import default_model_path
    hmf = default_model_path()
  print('Writing synthetic mini datasets and reading one batch ...', flush=True)
  examples = example_batch(work_dir / 'data', hmf, max(args.batches), args.num)
  device = jax.devices()[0]
  print(f'jax {jax.__version__} on {device.device_kind} ({jax.device_count()} devices), '
        f'{os.cpu_count()} CPUs', flush=True)

  # ---------------------------------------------------------------- JAX steps
  rows = []
  for name in args.configs:
    for batch in args.batches:
      step, state, layer, depths, weights = jax_step(name, batch, hmf)
      host = {k: v[:batch] for k, v in examples.items()}
      data = jax.device_put(host)
      start = time.perf_counter()
      state, metrics = jax.block_until_ready(step(state, data, layer))
      compile_s = time.perf_counter() - start
      holder = {'state': state}

      def run():
        holder['state'], out = step(holder['state'], data, layer)
        jax.block_until_ready(out)
        return out

      seconds = _median(run, args.repeats, args.min_time)
      finite = bool(run()['finite'])
      key = f'{name} B={batch}'
      rows.append(dict(key=key, config=name, batch=batch, depths=depths, weights=weights,
                       jax_s=seconds, compile_s=compile_s, finite=finite))
      print(f'  jax {key}: {seconds / batch * 1e3:.1f} ms/sample, compile {compile_s:.1f} s'
            + ('' if finite else ' (loss NOT finite)'), flush=True)
      if not args.device_only:
        torch_inputs(layer, host, work_dir / f'{name}_{batch}.npz')
      del step, state, holder, data

  # ---------------------------------------------------------------- upstream steps
  torch_result = {}
  if not args.device_only:
    work = {'upstream': str(args.upstream.resolve()), 'human_model_path': str(hmf),
            'repeats': args.repeats, 'min_time': args.min_time,
            'cases': [{'key': r['key'], 'depths': r['depths'], 'batch': r['batch'],
                       'file': f'{r["config"]}_{r["batch"]}.npz'} for r in rows]}
    (work_dir / 'work.json').write_text(json.dumps(work))
    print('Upstream side (child process):', flush=True)
    subprocess.run([args.torch_python, str(Path(__file__).resolve()), '--_torch-side',
                    str(work_dir)], check=True)
    torch_result = json.loads((work_dir / 'torch_result.json').read_text())

  # ---------------------------------------------------------------- report
  print(f'\nJAX: jitted training.train_step on {device.device_kind}; '
        + (torch_result.get('label', '') + ", upstream's model" if torch_result else
           'no torch side (--device-only)') + '. Host-to-device copy not timed.')
  header = (f'{"config":>10} {"ResNets":>9} {"B":>3} {"weights":>24} {"jax ms/sample":>14} '
            f'{"jax samples/s":>14} {"jax compile s":>14}')
  if torch_result:
    header += f' {"torch ms/sample":>16} {"torch samples/s":>16} {"ratio":>6}'
  print(header)
  for r in rows:
    line = (f'{r["config"]:>10} {"/".join(map(str, r["depths"])):>9} {r["batch"]:3d} '
            f'{r["weights"]:>24} {r["jax_s"] / r["batch"] * 1e3:14.1f} '
            f'{r["batch"] / r["jax_s"]:14.2f} {r["compile_s"]:14.1f}')
    if torch_result:
      t = torch_result[r['key']]
      if 'seconds' in t:
        line += (f' {t["seconds"] / r["batch"] * 1e3:16.1f} {r["batch"] / t["seconds"]:16.2f} '
                 f'{t["seconds"] / r["jax_s"]:6.2f}')
      else:
        line += f'   upstream fails: {t["error"]}'
    print(line + ('' if r['finite'] else '   (JAX loss not finite)'))
  tmp.cleanup()


if __name__ == '__main__':
  main()
