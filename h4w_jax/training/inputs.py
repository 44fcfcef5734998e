"""The step's batch contract, checked on the host before the batch goes on the mesh.

`check_batch` asserts (chex) that a local batch holds every field of
`h4w_datasets.example.example_spec` (the hand-only model of stage 2:
`h4w_datasets.hand_transforms.example_spec`) with its dtype and per-sample
shape and one leading batch size, so a reader or transform that drifts fails here with
the field's name, not inside the jitted step with an XLA shape error.
"""

from __future__ import annotations

from typing import Mapping

import chex
import numpy as np

from h4w_datasets import example as ex
from h4w_datasets import hand_transforms

SPECS = {'wholebody': ex.example_spec, 'hand': hand_transforms.example_spec}


def check_batch(batch: Mapping[str, np.ndarray], batch_size: int, crop_dtype=np.uint8,
                kind: str = 'wholebody') -> None:
  """ValueError naming the field unless `batch` fits the training-example spec.

  batch_size: the leading size (the local batch). crop_dtype: the crop's dtype,
  `config.data.crop_dtype` (uint8 or float32). kind: the task's examples
  ('wholebody', or 'hand' for stage 2).
  """
  spec = SPECS[kind](crop_dtype)
  missing = sorted(set(spec) - set(batch))
  if missing:
    raise ValueError(f'train batch: missing fields {missing}')
  for key, (shape, dtype) in spec.items():
    where = f'train batch field {key}'
    chex.assert_shape(batch[key], (batch_size, *shape), exception_type=ValueError,
                      custom_message=where)
    chex.assert_type(batch[key], dtype.type, exception_type=ValueError, custom_message=where)
