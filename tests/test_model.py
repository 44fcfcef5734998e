"""The Flax Hand4Whole network: variable layout and layer equivalences.

Numerical parity of the whole forward against upstream lives in
test_h4w_parity.py (goldens from upstream's own code).
"""

import json
from pathlib import Path

import flax.linen as nn
import jax
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
