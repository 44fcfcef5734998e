"""Hand4Whole inference and train step: h4w_jax against upstream's PyTorch model.

    python bench/model_step.py --upstream PATH/TO/Hand4Whole_RELEASE \\
        --human-model-path human_model_files [--batches 2 8] [--device cpu]

Needs an interpreter with jax/flax AND torch/torchvision (upstream imports
torchvision for roi_align). PATH is a checkout of mks0601/Hand4Whole_RELEASE
(main branch); it is imported, not modified, except that upstream's config
creates its output folders there. At run time this script makes `.cuda()` a
no-op (or maps it to the chosen device), stubs `utils.vis` (pyrender) and
skips the ImageNet download of train-mode init (all weights are overwritten),
as the harness in tests/data/README.md does. Both models get the same
deterministic weights (tests/fake_h4w.py) and the same images, float32.

Times are medians per batch; per-sample = batch time / B. Inference is
upstream's test-mode forward (SMPL-X included). The train step is forward,
all losses, backward and an Adam update, on the fake targets. JAX is jitted;
compile times are reported separately. Ratio = torch time / JAX time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))
import fake_h4w  # noqa: E402  (deterministic fakes shared with the parity tests)

from h4w_jax.weights import keys  # noqa: E402
from h4w_jax.models import hand4whole, outputs


def _median(fn, repeats=5, min_time=2.0):
  fn()
  times, start = [], time.perf_counter()
  while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 30):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def load_upstream(root: Path, human_model_path: Path, device: str):
  import torch
  torch_device = torch.device(device)
  torch.Tensor.cuda = lambda self, *a, **k: self.to(torch_device)
  torch.nn.Module.cuda = lambda self, *a, **k: self.to(torch_device)
  sys.path.insert(0, str(root / 'main'))
  import config  # upstream's
  config.cfg.human_model_path = str(human_model_path)
  sys.modules['utils.vis'] = types.ModuleType('utils.vis')
  import model as upstream_model  # upstream's main/model.py
  import nets.resnet  # train-mode init downloads ImageNet weights; ours overwrite them anyway
  nets.resnet.ResNetBackbone.init_weights = lambda self: None
  return torch, upstream_model


def load_weights(torch_model, state, torch):
  """Strict load of the fake weights; only the SMPL-X layer's buffers (never
  in snapshots) keep the model's own values."""
  full = torch_model.state_dict()
  ours = {k.removeprefix('module.'): torch.from_numpy(v) for k, v in state.items()}
  assert set(ours) <= set(full) and all(k.startswith('smplx_layer.') for k in set(full) - set(ours))
  full.update(ours)
  torch_model.load_state_dict(full, strict=True)
  return torch_model


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--upstream', type=Path, required=True)
  parser.add_argument('--human-model-path', type=Path, required=True)
  parser.add_argument('--batches', type=int, nargs='+', default=[2, 8])
  parser.add_argument('--device', default='cpu', help="torch device: 'cpu' or 'cuda'")
  args = parser.parse_args(argv)

  torch, upstream_model = load_upstream(args.upstream, args.human_model_path, args.device)
  state = fake_h4w.fake_state_dict(fake_h4w.load_manifest())
  layer = outputs.smplx_layer(args.human_model_path)
  variables = keys.torch_to_flax(state, hand4whole.variable_shapes())
  print(f'jax {jax.__version__} on {jax.devices()[0].device_kind}; torch {torch.__version__} on '
        f'{args.device} ({torch.get_num_threads()} threads)')
  print(f'{"B":>3} {"pass":>10} {"torch ms/sample":>16} {"jax ms/sample":>14} {"ratio":>6} '
        f'{"jax compile s":>14}')

  net = hand4whole.Hand4Whole()
  optimizer = optax.adam(1e-4)

  @jax.jit
  def infer(variables, images):
    return outputs.test_outputs(net.apply(variables, images, train=False), layer)

  @jax.jit
  def train_step(variables, opt_state, images, targets, meta_info):
    def loss_fn(params):
      out, updates = net.apply({'params': params, 'batch_stats': variables['batch_stats']},
                               images, train=True, mutable=['batch_stats'])
      return outputs.total_loss(outputs.train_losses(out, layer, targets, meta_info)), updates
    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables['params'])
    step, opt_state = optimizer.update(grads, opt_state, variables['params'])
    params = optax.apply_updates(variables['params'], step)
    return {'params': params, 'batch_stats': updates['batch_stats']}, opt_state, loss

  for batch in args.batches:
    images = fake_h4w.fake_images(batch)
    targets, meta_info = fake_h4w.fake_targets(batch)
    to_torch = lambda d: {k: torch.from_numpy(np.asarray(v)).to(args.device) for k, v in d.items()}
    sync = (lambda: torch.cuda.synchronize()) if args.device.startswith('cuda') else (lambda: None)

    ref = load_weights(upstream_model.get_model('test'), state, torch).to(args.device).eval()
    img = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(args.device)

    def torch_infer():
      with torch.no_grad():
        ref({'img': img}, {}, {}, 'test')
      sync()

    t = time.perf_counter()
    jax.block_until_ready(infer(variables, images))
    compile_infer = time.perf_counter() - t
    jax_s = _median(lambda: jax.block_until_ready(infer(variables, images)))
    torch_s = _median(torch_infer)
    print(f'{batch:3d} {"inference":>10} {torch_s / batch * 1e3:16.1f} {jax_s / batch * 1e3:14.1f} '
          f'{torch_s / jax_s:6.2f} {compile_infer:14.1f}', flush=True)

    train_ref = load_weights(upstream_model.get_model('train'), state, torch)
    train_ref = train_ref.to(args.device).train()
    torch_opt = torch.optim.Adam(train_ref.parameters(), lr=1e-4)
    t_targets, t_meta = to_torch(targets), to_torch(meta_info)

    def torch_train():
      losses = train_ref({'img': img}, {k: v.clone() for k, v in t_targets.items()},
                         {k: v.clone() for k, v in t_meta.items()}, 'train')
      loss = sum(v.mean() for v in losses.values())
      torch_opt.zero_grad()
      loss.backward()
      torch_opt.step()
      sync()

    opt_state = optimizer.init(variables['params'])
    jargs = (images, targets, meta_info)
    t = time.perf_counter()
    new_vars, opt_state, _ = jax.block_until_ready(train_step(variables, opt_state, *jargs))
    compile_train = time.perf_counter() - t
    jax_s = _median(lambda: jax.block_until_ready(train_step(new_vars, opt_state, *jargs)))
    torch_s = _median(torch_train)
    print(f'{batch:3d} {"train":>10} {torch_s / batch * 1e3:16.1f} {jax_s / batch * 1e3:14.1f} '
          f'{torch_s / jax_s:6.2f} {compile_train:14.1f}', flush=True)


if __name__ == '__main__':
  os.environ.setdefault('PYTHONUNBUFFERED', '1')
  main()
