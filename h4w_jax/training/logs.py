"""Pictures and scalars of a run: TensorBoard, mesh overlays, the loss curve.

Overlays are drawn by h4w_jax.common.draw (CPU rasterizer, no OpenGL).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from h4w_jax.common import atomic, draw


class SummaryWriter:
  """TensorBoard scalars and images, plus a JSON-lines copy of the scalars (`tb_scalars.jsonl`
  beside the log folder).

  resume_step: the step this run starts after (0 from scratch). Rows a
  previous run logged after it (steps it trained but never checkpointed,
  which this run trains again) are dropped from the JSON-lines file when it
  is opened, and TensorBoard is told to purge them (tensorboardX's
  purge_step), so each step appears once.
  """

  def __init__(self, logdir, resume_step: int | None = None):
    from tensorboardX import SummaryWriter as TBWriter
    self.logdir = Path(logdir)
    purge = None if resume_step is None else resume_step + 1
    self._tb = TBWriter(str(self.logdir), purge_step=purge)
    path = self.logdir.parent / 'tb_scalars.jsonl'
    if resume_step is not None and path.exists():
      kept = [line for line in path.read_text().splitlines()
              if line.strip() and _row_step(line) is not None and _row_step(line) <= resume_step]
      atomic.write_text(path, ''.join(line + '\n' for line in kept))
    self._jsonl = open(path, 'a')

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


def _row_step(line: str) -> int | None:
  try:
    return int(json.loads(line)['step'])
  except (ValueError, KeyError, TypeError):   # a line cut by a kill: dropped
    return None


def read_scalars(jsonl_path) -> list[dict]:
  """The rows of tb_scalars.jsonl by step, one per step (the last written wins: files from
  before resumes were deduplicated may repeat steps); unreadable lines are skipped."""
  rows = {}
  for line in Path(jsonl_path).read_text().splitlines():
    try:
      row = json.loads(line)
      rows[int(row['step'])] = row
    except (ValueError, KeyError, TypeError):
      continue
  return [rows[k] for k in sorted(rows)]


def first_example_mesh(state, batch: dict, layer, *, predict, mesh_key: str = 'smplx_mesh_cam'):
  """The predicted mesh (V, 3) of the global batch's first example, for the overlay.

  mesh_key: the test-dict mesh (whole body: smplx_mesh_cam; hand-only: mano_mesh_cam).

  Jit it with replicated outputs and call it on every process: parameters may be
  sharded across processes, so each one takes part and each gets the result
  (only the chief draws it)."""
  img = batch['img'][:1].astype(jnp.float32) * batch['color_scale'][:1, None, None, :]
  shown = jnp.clip(img, 0, 255) / 255.0
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  return predict(variables, shown, layer)[mesh_key][0]


def overlay_first(local_batch: dict, mesh_vertices, faces, focal=draw.CROP_FOCAL,
                  princpt=draw.CROP_PRINCPT) -> np.ndarray:
  """[input crop | predicted mesh over it] for the first example of the chief's host
  batch (the global batch's first example); focal, princpt: the crop's virtual camera."""
  crop = np.asarray(local_batch['img'][0])
  scale = np.asarray(local_batch['color_scale'][0], np.float32)
  shown = np.clip(crop.astype(np.float32) * scale, 0, 255).astype(np.uint8)
  return np.concatenate([shown, draw.overlay(shown, np.asarray(mesh_vertices),
                                             np.asarray(faces), focal, princpt)], axis=1)


def _nice_ticks(lo: float, hi: float, count: int = 5) -> np.ndarray:
  """Round tick values (1, 2 or 5 x 10^k apart), about `count` of them, inside [lo, hi]."""
  if hi <= lo:
    hi = lo + (abs(lo) or 1.0)
  raw = (hi - lo) / max(count - 1, 1)
  magnitude = 10 ** np.floor(np.log10(raw))
  step = min(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw / 1.5)
  return np.arange(np.ceil(lo / step) * step, hi + step * 1e-9, step)


def _label(value: float) -> str:
  return f'{value:.4g}' if abs(value) < 1e5 else f'{value:.2g}'


def loss_curve(jsonl_path, png_path, key: str = 'loss/total') -> Path | None:
  """A PNG plot of one logged scalar over steps, with axes, ticks and labels (OpenCV text,
  no matplotlib). Each point is a logged window mean; one point per step."""
  import cv2
  path = Path(jsonl_path)
  if not path.exists():
    return None
  points = [(r['step'], r[key]) for r in read_scalars(path)
            if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])]
  if len(points) < 2:
    return None
  steps, values = (np.asarray(v, np.float64) for v in zip(*points))
  height, width = 300, 480
  left, right, top, bottom = 62, 16, 28, 44
  canvas = np.full((height, width, 3), 255, np.uint8)
  x_ticks = _nice_ticks(steps.min(), steps.max())
  y_ticks = _nice_ticks(values.min(), values.max())
  x_lo, x_hi = min(x_ticks[0], steps.min()), max(x_ticks[-1], steps.max())
  y_lo, y_hi = min(y_ticks[0], values.min()), max(y_ticks[-1], values.max())
  to_x = lambda v: left + (v - x_lo) / max(x_hi - x_lo, 1e-12) * (width - left - right - 1)
  to_y = lambda v: height - bottom - (v - y_lo) / max(y_hi - y_lo, 1e-12) * (
      height - top - bottom - 1)
  font, small, grey, black = cv2.FONT_HERSHEY_SIMPLEX, 0.35, (210, 210, 210), (0, 0, 0)
  for v in x_ticks:
    x = int(round(to_x(v)))
    cv2.line(canvas, (x, top), (x, height - bottom), grey, 1)
    (w, _), _ = cv2.getTextSize(_label(v), font, small, 1)
    cv2.putText(canvas, _label(v), (x - w // 2, height - bottom + 14), font, small, black, 1,
                cv2.LINE_AA)
  for v in y_ticks:
    y = int(round(to_y(v)))
    cv2.line(canvas, (left, y), (width - right, y), grey, 1)
    (w, h), _ = cv2.getTextSize(_label(v), font, small, 1)
    cv2.putText(canvas, _label(v), (left - w - 5, y + h // 2), font, small, black, 1,
                cv2.LINE_AA)
  cv2.line(canvas, (left, top), (left, height - bottom), black, 1)
  cv2.line(canvas, (left, height - bottom), (width - right, height - bottom), black, 1)
  line = np.stack([to_x(steps), to_y(values)], axis=1).round().astype(np.int32)
  cv2.polylines(canvas, [line], False, (200, 40, 40), 1, cv2.LINE_AA)
  cv2.putText(canvas, 'step', (width // 2 - 12, height - 10), font, 0.45, black, 1, cv2.LINE_AA)
  cv2.putText(canvas, f'{key} (mean over each log window)', (left, top - 10), font, 0.45, black,
              1, cv2.LINE_AA)
  return draw.save_png(png_path, canvas)
