"""torchvision ResNet-18/50 backbones (no pooling head), channels-last.

Upstream: common/nets/resnet.py `ResNetBackbone`, which is torchvision's
ResNet with its attribute names (the stride sits on the 3x3 conv of the
Bottleneck, "v1.5"). Module names here follow the torchvision keys
(`conv1`, `bn1`, `layer1_0/conv1`, `layer1_0/downsample_0`, ...) so the
weight converter maps names one-to-one; tensors are NHWC, kernels HWIO.
"""

from __future__ import annotations

import functools
import flax.linen as nn

# BatchNorm2d defaults of PyTorch: eps 1e-5, momentum 0.1 (flax: 1 - 0.1).
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)

STAGES = {18: ('basic', (2, 2, 2, 2)), 50: ('bottleneck', (3, 4, 6, 3))}


def conv(features: int, kernel: int, stride: int = 1, padding: int = 0,
         use_bias: bool = False, name: str | None = None) -> nn.Conv:
  """A torch-style Conv2d: symmetric integer padding."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((padding, padding), (padding, padding)), use_bias=use_bias,
                 name=name)


class BasicBlock(nn.Module):
  planes: int
  stride: int = 1
  downsample: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    norm = functools.partial(BatchNorm, use_running_average=not train)
    out = nn.relu(norm(name='bn1')(conv(self.planes, 3, self.stride, 1, name='conv1')(x)))
    out = norm(name='bn2')(conv(self.planes, 3, 1, 1, name='conv2')(out))
    if self.downsample:
      x = norm(name='downsample_1')(conv(self.planes, 1, self.stride, name='downsample_0')(x))
    return nn.relu(out + x)


class Bottleneck(nn.Module):
  planes: int
  stride: int = 1
  downsample: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    norm = functools.partial(BatchNorm, use_running_average=not train)
    out = nn.relu(norm(name='bn1')(conv(self.planes, 1, name='conv1')(x)))
    out = nn.relu(norm(name='bn2')(conv(self.planes, 3, self.stride, 1, name='conv2')(out)))
    out = norm(name='bn3')(conv(self.planes * 4, 1, name='conv3')(out))
    if self.downsample:
      x = norm(name='downsample_1')(conv(self.planes * 4, 1, self.stride, name='downsample_0')(x))
    return nn.relu(out + x)


class ResNetBackbone(nn.Module):
  """(N, H, W, 3) in [0, 1] -> (N, H/32, W/32, 512 or 2048)."""
  depth: int = 50

  @nn.compact
  def __call__(self, x, train: bool = False):
    kind, counts = STAGES[self.depth]
    block, expansion = (Bottleneck, 4) if kind == 'bottleneck' else (BasicBlock, 1)
    x = conv(64, 7, 2, 3, name='conv1')(x)
    x = nn.relu(BatchNorm(use_running_average=not train, name='bn1')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    in_planes = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), counts), start=1):
      for index in range(count):
        stride = 2 if stage > 1 and index == 0 else 1
        downsample = index == 0 and (stride != 1 or in_planes != planes * expansion)
        x = block(planes, stride, downsample, name=f'layer{stage}_{index}')(x, train)
        in_planes = planes * expansion
    return x


__all__ = ['ResNetBackbone', 'BatchNorm', 'conv']
