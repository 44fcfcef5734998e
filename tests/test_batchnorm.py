"""resnet.BatchNorm against torch.nn.BatchNorm2d, and its statistics groups.

Reference: torch's BatchNorm2d in train mode (what upstream trains with).
Per-device groups must equal torch applied to each group on its own, as
DataParallel does on each GPU. Tolerances: float32, 1e-5 relative.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from h4w_jax.models.resnet import BatchNorm


def _torch_bn(x_nhwc, scale, bias):
  bn = torch.nn.BatchNorm2d(x_nhwc.shape[-1])
  with torch.no_grad():
    bn.weight.copy_(torch.tensor(scale))
    bn.bias.copy_(torch.tensor(bias))
  bn.train()
  y = bn(torch.tensor(x_nhwc).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).detach().numpy()
  return y, bn.running_mean.numpy(), bn.running_var.numpy()


def _ours(x, scale, bias, **kw):
  module = BatchNorm(use_running_average=False, **kw)
  variables = module.init(jax.random.key(0), jnp.asarray(x))
  variables = {'params': {'scale': jnp.asarray(scale), 'bias': jnp.asarray(bias)},
               'batch_stats': variables['batch_stats']}
  y, updates = module.apply(variables, jnp.asarray(x), mutable=['batch_stats'])
  stats = updates['batch_stats']
  return np.asarray(y), np.asarray(stats['mean']), np.asarray(stats['var'])


def _data(batch=8, channels=5, seed=0):
  rng = np.random.default_rng(seed)
  x = (rng.normal(size=(batch, 3, 4, channels)) * rng.uniform(0.5, 3, channels)
       + rng.normal(size=channels)).astype(np.float32)
  return x, rng.uniform(0.5, 1.5, channels).astype(np.float32), \
      rng.normal(size=channels).astype(np.float32)


def test_whole_batch_matches_torch():
  x, scale, bias = _data()
  ours, torch_ref = _ours(x, scale, bias), _torch_bn(x, scale, bias)
  for a, b in zip(ours, torch_ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_groups_match_torch_per_device():
  x, scale, bias = _data(batch=8)
  y, mean, var = _ours(x, scale, bias, group_size=2)
  refs = [_torch_bn(x[i:i + 2], scale, bias) for i in range(0, 8, 2)]
  np.testing.assert_allclose(y, np.concatenate([r[0] for r in refs]), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(mean, np.mean([r[1] for r in refs], 0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(var, np.mean([r[2] for r in refs], 0), rtol=1e-5, atol=1e-6)


def test_views_share_their_sample_group():
  # Sample-major [left 0, right 0, left 1, right 1, ...] of 4 samples, two samples per
  # device: device 0 normalises the left and right crops of samples 0 and 1 together.
  x, scale, bias = _data(batch=8, seed=1)
  y, _, _ = _ours(x, scale, bias, group_size=2, views=2)
  for device in range(2):
    rows = slice(4 * device, 4 * device + 4)
    ref, _, _ = _torch_bn(x[rows], scale, bias)
    np.testing.assert_allclose(y[rows], ref, rtol=1e-5, atol=1e-5)
