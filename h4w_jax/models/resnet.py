"""torchvision ResNet-18/50 backbones (no pooling head), channels-last.

Upstream: common/nets/resnet.py `ResNetBackbone`, which is torchvision's
ResNet with its attribute names (the stride sits on the 3x3 conv of the
Bottleneck, "v1.5"). Module names here follow the torchvision keys
(`conv1`, `bn1`, `layer1_0/conv1`, `layer1_0/downsample_0`, ...) so the
weight converter maps names one-to-one; tensors are NHWC, kernels HWIO.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from h4w_jax.common.sharding import constrain_batch


class BatchNorm(nn.Module):
  """torch.nn.BatchNorm2d (eps 1e-5, momentum 0.1) with a choice of statistics groups.

  Training normalises with the biased variance of each group and updates the
  running variance with the unbiased one, as torch does. `group_size` is the
  number of samples that share statistics:
    None: the whole (global) batch, i.e. statistics synced across devices;
    k: consecutive groups of k samples, i.e. per-device statistics when k is
       the per-device batch (upstream's DataParallel: 24 per GPU). The running
       statistics move by the mean of the groups' statistics (DataParallel
       keeps only GPU 0's, a detail not worth copying).
  `views`: each sample comes as `views` consecutive rows (sample-major: the
  hand backbone sees [left 0, right 0, left 1, right 1, ...]) and a sample's
  statistics group holds all its views (upstream's GPU d sees both hands of
  its samples).
  """
  use_running_average: bool
  group_size: Optional[int] = None
  views: int = 1
  momentum: float = 0.1
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (channels,))
    bias = self.param('bias', nn.initializers.zeros, (channels,))
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (channels,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (channels,), jnp.float32)
    if self.use_running_average:
      mul = jax.lax.rsqrt(ra_var.value + self.epsilon) * scale
      return ((x - ra_mean.value) * mul + bias).astype(x.dtype)

    batch = x.shape[0] // self.views
    group = batch if self.group_size is None else self.group_size
    if batch % group:
      raise ValueError(f'BatchNorm: batch {batch} is not a multiple of group_size {group}')
    # A group's samples with all their views are consecutive rows (sample-major), so
    # groups split along the batch axis as the batch splits over devices: per-device
    # statistics need no data from other devices.
    rows = group * self.views
    grouped = x.reshape((x.shape[0] // rows, rows) + x.shape[1:])
    axes = tuple(range(1, grouped.ndim - 1))
    # Statistics in at least float32 (bf16 activations), float64 under x64 tests.
    xf = grouped.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = xf.mean(axes, keepdims=True)
    var = jnp.square(xf - mean).mean(axes, keepdims=True)
    y = (xf - mean) * jnp.reciprocal(jnp.sqrt(var + self.epsilon)) * scale + bias
    if not self.is_initializing():
      count = self.views * group * math.prod(x.shape[1:-1])
      group_mean = mean.reshape(-1, channels).mean(0)
      group_var = var.reshape(-1, channels).mean(0) * (count / max(count - 1, 1))
      ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * group_mean
      ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * group_var
    return y.reshape(x.shape).astype(x.dtype)

# 10 is not a torchvision model: one BasicBlock per stage, for fast tests and demos.
STAGES = {10: ('basic', (1, 1, 1, 1)), 18: ('basic', (2, 2, 2, 2)),
          50: ('bottleneck', (3, 4, 6, 3))}


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0,
         use_bias: bool = False, name: str | None = None, dtype=None) -> nn.Conv:
  """A torch-style Conv2d: symmetric integer padding; computes in `dtype`, float32 weights."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((padding, padding), (padding, padding)), use_bias=use_bias,
                 name=name, dtype=dtype)


class BasicBlock(nn.Module):
  planes: int
  stride: int = 1
  downsample: bool = False
  bn_group_size: Optional[int] = None
  bn_views: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    bn = functools.partial(BatchNorm, use_running_average=not train,
                           group_size=self.bn_group_size, views=self.bn_views)
    norm = lambda name: lambda x: constrain_batch(bn(name=name)(constrain_batch(x)))
    cv = functools.partial(conv, dtype=self.dtype)
    out = nn.relu(norm(name='bn1')(cv(self.planes, 3, self.stride, 1, name='conv1')(x)))
    out = norm(name='bn2')(cv(self.planes, 3, 1, 1, name='conv2')(out))
    if self.downsample:
      x = norm(name='downsample_1')(cv(self.planes, 1, self.stride, name='downsample_0')(x))
    return nn.relu(out + x)


class Bottleneck(nn.Module):
  planes: int
  stride: int = 1
  downsample: bool = False
  bn_group_size: Optional[int] = None
  bn_views: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    bn = functools.partial(BatchNorm, use_running_average=not train,
                           group_size=self.bn_group_size, views=self.bn_views)
    norm = lambda name: lambda x: constrain_batch(bn(name=name)(constrain_batch(x)))
    cv = functools.partial(conv, dtype=self.dtype)
    out = nn.relu(norm(name='bn1')(cv(self.planes, 1, name='conv1')(x)))
    out = nn.relu(norm(name='bn2')(cv(self.planes, 3, self.stride, 1, name='conv2')(out)))
    out = norm(name='bn3')(cv(self.planes * 4, 1, name='conv3')(out))
    if self.downsample:
      x = norm(name='downsample_1')(cv(self.planes * 4, 1, self.stride, name='downsample_0')(x))
    return nn.relu(out + x)


REMAT_POLICIES = ('none', 'blocks')


class ResNetBackbone(nn.Module):
  """(N, H, W, 3) in [0, 1] -> (N, H/32, W/32, 512 or 2048), computed in `dtype`.

  remat: 'blocks' recomputes each residual block's activations in the backward
  pass instead of keeping them (less memory, about one more forward of the
  backbone); 'none' keeps them. Every convolution's output is pinned to the
  batch axes of the mesh (common.sharding.constrain_batch), so with fsdp the
  weights are gathered and the activations stay split by sample (left alone,
  XLA gathers the small late activations instead of their larger weights: a
  fine trade on one host, but not the data flow fsdp promises).
  """
  depth: int = 50
  bn_group_size: Optional[int] = None
  bn_views: int = 1
  dtype: Any = None
  remat: str = 'none'

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f'remat must be one of {REMAT_POLICIES}, got {self.remat!r}')
    kind, counts = STAGES[self.depth]
    block, expansion = (Bottleneck, 4) if kind == 'bottleneck' else (BasicBlock, 1)
    if self.remat == 'blocks':
      block = nn.remat(block, static_argnums=(2,))   # (self, x, train): train is static
    x = constrain_batch(x if self.dtype is None else x.astype(self.dtype))
    x = conv(64, 7, 2, 3, name='conv1', dtype=self.dtype)(x)
    x = nn.relu(BatchNorm(use_running_average=not train, group_size=self.bn_group_size,
                          views=self.bn_views, name='bn1')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    in_planes = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), counts), start=1):
      for index in range(count):
        stride = 2 if stage > 1 and index == 0 else 1
        downsample = index == 0 and (stride != 1 or in_planes != planes * expansion)
        x = block(planes, stride, downsample, self.bn_group_size, self.bn_views, self.dtype,
                  name=f'layer{stage}_{index}')(x, train)
        x = constrain_batch(x)
        in_planes = planes * expansion
    return x


__all__ = ['ResNetBackbone', 'BatchNorm', 'conv']
