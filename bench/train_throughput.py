"""Training throughput: h4w_jax's jitted train step against upstream's PyTorch step.

    python bench/train_throughput.py --upstream PATH/TO/Hand4Whole_RELEASE \\
        [--torch-python PYTHON] [--human-model-path DIR] [--batches 2 8] \\
        [--configs default quickstart]
    python bench/train_throughput.py --device-only [--batches 2 8 24]
    python bench/train_throughput.py --upstream CHECKOUT --configs default --batches auto \\
        --dtypes float32 bfloat16 --torch-device cuda --torch-amp --peak-tflops 989   # a GPU

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


def _load_upstream(root: Path, human_model_path: str, device: str = 'cpu'):
  import torch
  if device == 'cpu':
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
  device = work.get('device', 'cpu')
  torch, upstream_model, cfg = _load_upstream(Path(work['upstream']), work['human_model_path'],
                                              device)
  sys.path.insert(0, str(REPO / 'tests'))
  import fake_h4w
  state = None
  where = (torch.cuda.get_device_name(0) if device == 'cuda' else
           f'cpu ({torch.get_num_threads()} threads)')
  results = {'label': f'torch {torch.__version__} on {where}'}
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  for case in work['cases']:
    key = case['key']
    amp = case.get('amp', False)   # bf16 autocast with channels_last, as AMP training runs
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
      net = net.to(device).train()
      if amp:
        net = net.to(memory_format=torch.channels_last)
      optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
      data = np.load(work_dir / case['file'])
      img = torch.from_numpy(data['img']).to(device)
      if amp:
        img = img.contiguous(memory_format=torch.channels_last)
      groups = {g: {k.split('/', 1)[1]: torch.from_numpy(data[k]).to(device) for k in data.files
                    if k.startswith(g + '/')} for g in ('targets', 'meta')}

      def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
          loss = net({'img': img}, {k: v.clone() for k, v in groups['targets'].items()},
                     {k: v.clone() for k, v in groups['meta'].items()}, 'train')
          loss = {k: v.float().mean() for k, v in loss.items()}
        optimizer.zero_grad()
        sum(loss[k] for k in loss).backward()
        optimizer.step()
        sync()

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


def jax_step(config_name: str, batch_size: int, human_model_path, dtype: str = 'float32'):
  """(step, state, layer, depths, weights label) for configs/<name>.py at batch_size and
  compute dtype, as training.loop.run builds it; step(state, batch, layer) -> (state, metrics)."""
  import functools
  import jax
  from h4w_jax.models import hand4whole as model_lib
  from h4w_jax.training import loop, optim, step as step_lib, tasks
  from h4w_jax.weights import keys
  if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))   # configs/*.py import `configs.default`
  config = loop.load_config_file(REPO / 'configs' / f'{config_name}.py')
  config.batch_size = batch_size
  config.compute_dtype = dtype
  task = tasks.from_config(config)
  model_cfg = task.model_config
  schedule = optim.learning_rate_schedule(config.lr, config.lr_dec_epoch, config.lr_dec_factor,
                                          1000, config.start_epoch)
  tx = optim.make_optimizer(schedule, config.grad_clip_norm)
  rng = jax.random.key(config.seed)
  depths = (model_cfg.body_depth, model_cfg.hand_depth, model_cfg.face_depth)   # whole body
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
      step_lib.train_step, task=task, tx=tx, schedule=schedule), donate_argnums=0)
  # Layers are arguments, not closures: arrays must not become constants of the program.
  return functools.partial(step, target_layer=target_layer), state, layer, depths, label


def step_flops(step, state, data, layer) -> float:
  """XLA's FLOP count of one compiled step (cost_analysis), all devices."""
  import jax
  compiled = step.func.lower(state, data, layer, **step.keywords).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', 0.0)) * jax.device_count()


def auto_batch(config_name: str, dtype: str, human_model_path, examples) -> int:
  """The largest multiple of 8 whose step fits in 85% of the device's memory, from XLA's
  memory estimate of the step at batch 8 (per-sample temp bytes plus the fixed state)."""
  import jax
  step, state, layer, _, _ = jax_step(config_name, 8, human_model_path, dtype)
  data = jax.device_put({k: np.resize(v, (8,) + v.shape[1:]) for k, v in examples.items()})
  memory = step.func.lower(state, data, layer, **step.keywords).compile().memory_analysis()
  stats = jax.devices()[0].memory_stats() or {}
  limit = stats.get('bytes_limit', 0)
  if not limit:
    return 8
  per_sample = memory.temp_size_in_bytes / 8
  fixed = memory.argument_size_in_bytes + memory.output_size_in_bytes
  batch = int((0.85 * limit - fixed) / per_sample) // 8 * 8
  print(f'  auto batch {config_name} {dtype}: {per_sample / 2**20:.0f} MiB/sample, '
        f'{limit / 2**30:.0f} GiB -> B={max(batch, 8)}', flush=True)
  return max(batch, 8)


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
  parser.add_argument('--batches', nargs='+', default=['2', '8'],
                      help="batch sizes, or 'auto': the largest multiple of 8 whose step "
                           "fits in 85%% of the device's memory (XLA's estimate)")
  parser.add_argument('--dtypes', nargs='+', default=['float32'],
                      choices=('float32', 'bfloat16'), help='JAX compute dtypes to time')
  parser.add_argument('--torch-device', default='cpu', choices=('cpu', 'cuda'))
  parser.add_argument('--torch-amp', action='store_true',
                      help='also time upstream with bf16 autocast and channels_last')
  parser.add_argument('--peak-tflops', type=float, default=0.0,
                      help='the device\'s dense bf16 peak, for MFU (H100/H200 SXM: 989)')
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
  examples = example_batch(work_dir / 'data', hmf, 8, args.num)   # tiled to larger batches
  device = jax.devices()[0]
  print(f'jax {jax.__version__} on {device.device_kind} ({jax.device_count()} devices), '
        f'{os.cpu_count()} CPUs', flush=True)

  # ---------------------------------------------------------------- JAX steps
  rows = []
  for name in args.configs:
    for dtype in args.dtypes:
      for batch in [auto_batch(name, dtype, hmf, examples) if b == 'auto' else int(b)
                    for b in args.batches]:
        step, state, layer, depths, weights = jax_step(name, batch, hmf, dtype)
        host = {k: np.resize(v, (batch,) + v.shape[1:]) for k, v in examples.items()}
        data = jax.device_put(host)
        start = time.perf_counter()
        state, metrics = jax.block_until_ready(step(state, data, layer))
        compile_s = time.perf_counter() - start
        flops = step_flops(step, state, data, layer)
        holder = {'state': state}

        def run():
          holder['state'], out = step(holder['state'], data, layer)
          jax.block_until_ready(out)
          return out

        seconds = _median(run, args.repeats, args.min_time)
        finite = int(run()['bad_parts']) == 0
        key = f'{name} {dtype} B={batch}'
        rows.append(dict(key=key, config=name, dtype=dtype, batch=batch, depths=depths,
                         weights=weights, jax_s=seconds, compile_s=compile_s, finite=finite,
                         flops=flops))
        print(f'  jax {key}: {seconds / batch * 1e3:.1f} ms/sample, compile {compile_s:.1f} s'
              + ('' if finite else ' (loss NOT finite)'), flush=True)
        if not args.device_only:
          torch_inputs(layer, host, work_dir / f'{name}_{batch}.npz')
        del step, state, holder, data

  # ---------------------------------------------------------------- upstream steps
  torch_result = {}
  if not args.device_only:
    cases = {}
    for r in rows:   # upstream in float32, and with AMP: once per (config, batch)
      for amp in (False, True) if args.torch_amp else (False,):
        key = f'{r["config"]} B={r["batch"]}' + (' amp' if amp else '')
        cases[key] = {'key': key, 'depths': r['depths'], 'batch': r['batch'], 'amp': amp,
                      'file': f'{r["config"]}_{r["batch"]}.npz'}
    work = {'upstream': str(args.upstream.resolve()), 'human_model_path': str(hmf),
            'repeats': args.repeats, 'min_time': args.min_time, 'device': args.torch_device,
            'cases': list(cases.values())}
    (work_dir / 'work.json').write_text(json.dumps(work))
    print('Upstream side (child process):', flush=True)
    subprocess.run([args.torch_python, str(Path(__file__).resolve()), '--_torch-side',
                    str(work_dir)], check=True)
    torch_result = json.loads((work_dir / 'torch_result.json').read_text())

  # ---------------------------------------------------------------- report
  print(f'\nJAX: jitted training.step.train_step on {device.device_kind}; '
        + (torch_result.get('label', '') + ", upstream's model" if torch_result else
           'no torch side (--device-only)') + '. Host-to-device copy not timed. '
        'MFU: XLA\'s FLOPs of our step per second over --peak-tflops.')
  header = (f'{"config":>10} {"dtype":>9} {"ResNets":>9} {"B":>4} {"jax ms/sample":>14} '
            f'{"jax samples/s":>14} {"GFLOP/sample":>13} {"MFU":>6} {"compile s":>10}')
  if torch_result:
    header += ''.join(f' {"torch " + v + " samples/s":>24} {"ratio":>6}'
                      for v in (('f32', 'amp') if args.torch_amp else ('f32',)))
  print(header)
  for r in rows:
    rate = r['batch'] / r['jax_s']
    mfu = (r['flops'] / r['jax_s'] / (args.peak_tflops * 1e12)) if args.peak_tflops else float('nan')
    line = (f'{r["config"]:>10} {r["dtype"]:>9} {"/".join(map(str, r["depths"])):>9} '
            f'{r["batch"]:4d} {r["jax_s"] / r["batch"] * 1e3:14.1f} {rate:14.2f} '
            f'{r["flops"] / r["batch"] / 1e9:13.1f} {mfu:6.1%} {r["compile_s"]:10.1f}')
    for suffix in ('', ' amp') if args.torch_amp else ('',):
      if not torch_result:
        break
      t = torch_result.get(f'{r["config"]} B={r["batch"]}{suffix}', {})
      if 'seconds' in t:
        line += f' {r["batch"] / t["seconds"]:24.2f} {t["seconds"] / r["jax_s"]:6.2f}'
      else:
        line += f'   upstream fails: {t.get("error", "?")}'
    print(line + ('' if r['finite'] else '   (JAX loss not finite)'))
  tmp.cleanup()


if __name__ == '__main__':
  main()
