"""Pictures and scalars of a run: TensorBoard, mesh overlays, the loss curve.

Overlays are drawn by h4w_jax.common.draw (CPU rasterizer, no OpenGL).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from h4w_jax.common import draw


class SummaryWriter:
  """TensorBoard scalars and images, plus a JSON-lines copy of the scalars."""

  def __init__(self, logdir):
    from tensorboardX import SummaryWriter as TBWriter
    self.logdir = Path(logdir)
    self._tb = TBWriter(str(self.logdir))
    self._jsonl = open(self.logdir.parent / 'tb_scalars.jsonl', 'a')

  def scalars(self, step: int, values: dict) -> None:
    for key, value in values.items():
      self._tb.add_scalar(key, float(value), step)
    self._jsonl.write(json.dumps({'step': step, **{k: float(v) for k, v in values.items()}})
                      + '\n')
    self._jsonl.flush()

  def image(self, step: int, tag: str, image: np.ndarray) -> None:
    self._tb.add_image(tag, image, step, dataformats='HWC')

  def close(self) -> None:
    self._tb.close()
    self._jsonl.close()


def overlay_first(predict_fn, state, local_batch: dict, layer, mesh_key: str = 'smplx_mesh_cam',
                  focal=draw.CROP_FOCAL, princpt=draw.CROP_PRINCPT) -> np.ndarray:
  """[input crop | predicted mesh over it] for the first example of a host batch.

  mesh_key: the test-dict mesh (whole body: smplx_mesh_cam; hand-only: mano_mesh_cam);
  focal, princpt: the crop's virtual camera."""
  crop = np.asarray(local_batch['img'][0])
  scale = np.asarray(local_batch['color_scale'][0], np.float32)
  shown = np.clip(crop.astype(np.float32) * scale, 0, 255)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  out = predict_fn(variables, jnp.asarray(shown[None] / 255.0, jnp.float32), layer)
  mesh = np.asarray(jax.device_get(out[mesh_key]))[0]
  faces = np.asarray(layer.faces)
  shown = shown.astype(np.uint8)
  return np.concatenate([shown, draw.overlay(shown, mesh, faces, focal, princpt)], axis=1)


def loss_curve(jsonl_path, png_path, key: str = 'loss/total') -> Path | None:
  """A small PNG plot of one logged scalar over steps (no matplotlib needed)."""
  path = Path(jsonl_path)
  if not path.exists():
    return None
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  points = [(r['step'], r[key]) for r in rows if key in r and np.isfinite(r[key])]
  if len(points) < 2:
    return None
  steps, values = map(np.asarray, zip(*points))
  height, width, pad = 240, 420, 24
  canvas = np.full((height, width, 3), 255, np.uint8)
  canvas[pad:height - pad, pad] = 0
  canvas[height - pad, pad:width - pad] = 0
  x = pad + (steps - steps.min()) / max(np.ptp(steps), 1) * (width - 2 * pad - 1)
  lo, hi = values.min(), values.max()
  y = height - pad - (values - lo) / max(hi - lo, 1e-12) * (height - 2 * pad - 1)
  for (x0, y0), (x1, y1) in zip(zip(x[:-1], y[:-1]), zip(x[1:], y[1:])):
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.linspace(x0, x1, n).round().astype(int)
    ys = np.linspace(y0, y1, n).round().astype(int)
    canvas[ys, xs] = (200, 40, 40)
  return draw.save_png(png_path, canvas)
