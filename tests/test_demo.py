"""The body-model demo (the README's main job until training exists)."""

import numpy as np
from PIL import Image

from smplx_jax import demo


def test_demo_draws_three_bodies(human_model_files, tmp_path):
  out = tmp_path / 'demo.png'
  assert demo.main(['--model-path', str(human_model_files), '--out', str(out),
                    '--size', '160']) == 0
  image = np.asarray(Image.open(out))
  assert image.shape == (160, 3 * 120, 3)
  panels = np.split(image, 3, axis=1)
  covered = [np.any(p < 250, axis=-1) for p in panels]
  for mask in covered:
    rows, cols = np.nonzero(mask)
    # A standing body: taller than wide in the posed panels, a real share of pixels.
    assert mask.mean() > 0.03
    assert rows.max() - rows.min() > 0.5 * mask.shape[0]
  # The posed body differs from the rest pose.
  assert (covered[0] != covered[1]).mean() > 0.02
