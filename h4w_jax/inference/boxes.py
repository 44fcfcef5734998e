"""Person boxes: [x, y, w, h, score] rows in original-image pixels, and what the detectors share.

A detection array is (N, 5) float64 [x, y, w, h, score], best first.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np


def as_rgb(image) -> np.ndarray:
  """(H, W, 3) uint8 RGB, or a ValueError naming what came instead."""
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
    raise ValueError(f'expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}')
  if image.shape[0] < 2 or image.shape[1] < 2:
    raise ValueError(f'image too small: {image.shape}')
  return np.ascontiguousarray(image)


def downscaled(image: np.ndarray, max_side: Optional[int]) -> tuple[np.ndarray, float]:
  """(the image shrunk so that its longer side is at most max_side, the factor applied)."""
  h, w = image.shape[:2]
  if not max_side or max(h, w) <= max_side:
    return image, 1.0
  s = max_side / max(h, w)
  size = (max(1, round(w * s)), max(1, round(h * s)))
  return cv2.resize(image, size, interpolation=cv2.INTER_AREA), s


def iou(a, b) -> np.ndarray:
  """IoU matrix (len(a), len(b)) of xywh boxes (columns after the 4th ignored)."""
  a = np.asarray(a, np.float64).reshape(-1, np.shape(a)[-1] if np.size(a) else 4)[:, :4]
  b = np.asarray(b, np.float64).reshape(-1, np.shape(b)[-1] if np.size(b) else 4)[:, :4]
  ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
  bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
  iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]),
               0, None)
  ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]),
               0, None)
  inter = iw * ih
  union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
  return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes_xywh, scores, iou_threshold: float) -> np.ndarray:
  """Greedy non-maximum suppression: the indices kept, best score first."""
  boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
  order = np.argsort(-np.asarray(scores, np.float64).reshape(-1), kind='stable')
  keep = []
  while order.size:
    i = order[0]
    keep.append(i)
    overlap = iou(boxes[i:i + 1], boxes[order[1:]])[0]
    order = order[1:][overlap <= iou_threshold]
  return np.asarray(keep, np.int64)


def finish(boxes_xywh, scores, width: int, height: int, min_score: float = 0.0) -> np.ndarray:
  """Clipped to the picture, empty and low-scored boxes dropped, best first: (N, 5)."""
  b = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
  s = np.asarray(scores, np.float64).reshape(-1)
  x1 = np.clip(b[:, 0], 0, width)
  y1 = np.clip(b[:, 1], 0, height)
  x2 = np.clip(b[:, 0] + b[:, 2], 0, width)
  y2 = np.clip(b[:, 1] + b[:, 3], 0, height)
  out = np.stack([x1, y1, x2 - x1, y2 - y1, s], -1)
  out = out[(out[:, 2] >= 1) & (out[:, 3] >= 1) & (s >= min_score)]
  return out[np.argsort(-out[:, 4], kind='stable')]


def select(detections: np.ndarray, *, min_score: float = 0.0, min_size: float = 0.0,
           max_people: Optional[int] = None) -> np.ndarray:
  """The detections the demo runs the network on: score >= min_score, the box's shorter side
  >= min_size pixels, at most max_people (best first)."""
  d = np.asarray(detections, np.float64).reshape(-1, 5)
  d = d[(d[:, 4] >= min_score) & (np.minimum(d[:, 2], d[:, 3]) >= min_size)]
  d = d[np.argsort(-d[:, 4], kind='stable')]
  return d[:max_people] if max_people else d
