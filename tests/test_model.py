"""The Flax Hand4Whole network: variable layout and layer equivalences.

Numerical parity of the whole forward against upstream lives in
test_h4w_parity.py (goldens from upstream's own code).
"""

import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import torch

from h4w_jax.models import hand4whole

MANIFEST = Path(__file__).parent / 'data' / 'state_dict_manifest.json'


def _flax_name(key):
  """Upstream key -> (module path, leaf) by the naming rule of h4w_jax.model."""
  parts = []
  for segment in key.removeprefix('module.').split('.'):
    if segment.isdigit():
      parts[-1] += f'_{segment}'
    else:
      parts.append(segment)
  return '/'.join(parts[:-1]), parts[-1]


def test_variables_match_upstream_state_dict():
  with open(MANIFEST) as f:
    manifest = json.load(f)
  torch_leaf = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias',
                'mean': 'running_mean', 'var': 'running_var'}
  ours = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(hand4whole.variable_shapes())[0]:
    keys = [p.key for p in path]
    ours[('/'.join(keys[1:-1]), torch_leaf[keys[-1]])] = leaf.shape
  theirs = {_flax_name(k): tuple(v['shape']) for k, v in manifest.items()
            if not k.endswith('num_batches_tracked')}
  assert set(ours) == set(theirs)
  for name, shape in theirs.items():
    assert int(np.prod(shape)) == int(np.prod(ours[name])), name


def test_conv_transpose_matches_torch():
  """BoxNet's ConvTranspose(k4, s2, p1) with the converter's kernel layout."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 3, 7)).astype(np.float32)
  weight = rng.standard_normal((7, 4, 4, 4)).astype(np.float32)  # torch (in, out, kh, kw)
  ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x.transpose(0, 3, 1, 2)),
                                             torch.from_numpy(weight), stride=2, padding=1)
  layer = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)),
                           transpose_kernel=True, use_bias=False)
  ours = layer.apply({'params': {'kernel': weight.transpose(2, 3, 1, 0)}}, x)
  np.testing.assert_allclose(ours, ref.numpy().transpose(0, 2, 3, 1), atol=1e-5)


def _loss(net, stats, x):
  def loss(params):
    y, _ = net.apply({'params': params, 'batch_stats': stats}, x, train=True,
                     mutable=['batch_stats'])
    return jnp.mean(y ** 2)
  return loss


def _residual_bytes(net, variables, x):
  """Bytes the backward pass keeps from the forward (the vjp's residuals)."""
  residuals = jax.eval_shape(lambda v: jax.vjp(_loss(net, v['batch_stats'], x), v['params'])[1],
                             variables)
  return sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(residuals))


def test_remat_blocks_changes_memory_not_numbers():
  """remat='blocks' recomputes each ResNet block in the backward pass: the same loss and
  gradients (float64: train-mode BatchNorm over 2 samples turns float32 reordering into
  percent-level gradient noise), and the backward keeps only the blocks' inputs: ResNet-50
  at 128x128 keeps 0.50x the bytes (measured). XLA's CPU compiler schedules without regard
  to memory, so its temp bytes do not show this; GPU and TPU compilers do."""
  from h4w_jax.models.resnet import ResNetBackbone
  x = jnp.zeros((2, 128, 128, 3))
  sizes = {}
  for remat in ('none', 'blocks'):
    net = ResNetBackbone(50, remat=remat)
    sizes[remat] = _residual_bytes(net, jax.eval_shape(net.init, jax.random.key(0), x), x)
  assert sizes['blocks'] < 0.6 * sizes['none'], sizes
  with jax.enable_x64(True):
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 32, 32, 3)), jnp.float64)
    results = []
    for remat in ('none', 'blocks'):
      net = ResNetBackbone(10, dtype=jnp.float64, remat=remat)
      variables = jax.tree.map(lambda v: v.astype(jnp.float64), net.init(jax.random.key(0), x))
      loss = _loss(net, variables['batch_stats'], x)
      results.append(jax.jit(jax.value_and_grad(loss))(variables['params']))
  (loss_a, grads_a), (loss_b, grads_b) = results
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-12)
  for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12)   # measured 7e-9
