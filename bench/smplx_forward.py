"""SMPL-X forward (and forward+backward): smplx_jax against the PyPI `smplx`.

    python bench/smplx_forward.py [--model-path DIR] [--batches 1 64 512]

Both run on this machine's CPU in one process, float32, the same model
settings as Hand4Whole (use_pca=False, face contour), the same random inputs.
JAX is jitted (compile time reported separately); torch runs eagerly, as smplx
is used. Times are medians over repeats; the ratio is torch time / JAX time
(> 1: JAX is faster). Backward is the gradient of a scalar loss of vertices
and joints with respect to all pose, shape and expression inputs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import smplx
import torch

import smplx_jax

WIDTHS = dict(betas=10, global_orient=3, body_pose=63, left_hand_pose=45,
              right_hand_pose=45, jaw_pose=3, expression=10)


def _median_seconds(fn, repeats: int, min_time: float = 1.0) -> float:
  fn()  # warm-up
  times = []
  start = time.perf_counter()
  while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 50):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def _torch_loss(out):
  return (out.vertices ** 2).mean() + (out.joints ** 2).mean()


def _jax_loss(model, inputs):
  out = model(**inputs)
  return (out.vertices ** 2).mean() + (out.joints ** 2).mean()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model-path', type=Path, default=None,
                      help='human_model_files folder (default: synthetic files in a temp dir)')
  parser.add_argument('--batches', type=int, nargs='+', default=[1, 64, 512])
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args(argv)

  tmp = None
  model_path = args.model_path
  if model_path is None:
    from smplx_jax import synthetic
    tmp = tempfile.TemporaryDirectory()
    model_path = synthetic.write_human_model_files(Path(tmp.name), seed=0, chumpy=False)

  settings = dict(use_pca=False, use_face_contour=True)
  model = smplx_jax.create(model_path, 'smplx', **settings)
  forward = jax.jit(lambda m, x: (lambda o: (o.vertices, o.joints))(m(**x)))
  grad = jax.jit(jax.grad(_jax_loss, argnums=1))
  torch.set_grad_enabled(True)
  print(f'jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} '
        f'({torch.get_num_threads()} threads), smplx {smplx.__version__ if hasattr(smplx, "__version__") else "0.1.28"}')
  print(f'{"batch":>5} {"pass":>9} {"torch ms":>10} {"jax ms":>9} {"ratio":>6} '
        f'{"torch samples/s":>16} {"jax samples/s":>14} {"jax compile s":>14}')
  rows = []
  for batch in args.batches:
    rng = np.random.default_rng(batch)
    inputs = {k: (0.5 * rng.standard_normal((batch, w))).astype(np.float32)
              for k, w in WIDTHS.items()}
    jax_inputs = {k: jnp.asarray(v) for k, v in inputs.items()}
    ref = smplx.create(str(model_path), 'smplx', batch_size=batch, **settings)
    torch_inputs = {k: torch.from_numpy(v) for k, v in inputs.items()}

    def torch_forward():
      with torch.no_grad():
        ref(**torch_inputs)

    def torch_backward():
      leaves = {k: v.clone().requires_grad_() for k, v in torch_inputs.items()}
      _torch_loss(ref(**leaves)).backward()

    for name, torch_fn, jax_fn, jax_args in (
        ('forward', torch_forward, forward, (model, jax_inputs)),
        ('fwd+bwd', torch_backward, grad, (model, jax_inputs))):
      t = time.perf_counter()
      jax.block_until_ready(jax_fn(*jax_args))
      compile_s = time.perf_counter() - t
      jax_s = _median_seconds(lambda: jax.block_until_ready(jax_fn(*jax_args)), args.repeats)
      torch_s = _median_seconds(torch_fn, args.repeats)
      rows.append((batch, name, torch_s, jax_s))
      print(f'{batch:5d} {name:>9} {torch_s * 1e3:10.2f} {jax_s * 1e3:9.2f} '
            f'{torch_s / jax_s:6.2f} {batch / torch_s:16.0f} {batch / jax_s:14.0f} '
            f'{compile_s:14.2f}', flush=True)
  if tmp is not None:
    tmp.cleanup()
  return rows


if __name__ == '__main__':
  main()
