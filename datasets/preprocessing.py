"""Boxes, images and affine crops: upstream's common/utils/preprocessing.py in numpy/cv2.

Each function names the upstream function it matches. Quirks kept on purpose
(SPEC_DATA Q2, Q3): `sanitize_bbox` shifts a box that crosses the left or top
edge instead of clipping it and takes one pixel off its width and height, and
an all-integer box comes out of `process_bbox` truncated to integers.
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

from h4w_jax.common import spaces

_IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


class ImageError(IOError):
  """An image that cannot be read or decoded."""


def decode_image(data: bytes, where: str) -> np.ndarray:
  """Encoded image bytes -> (H, W, 3) uint8 RGB; EXIF orientation ignored (upstream load_img)."""
  img = cv2.imdecode(np.frombuffer(data, np.uint8), _IMREAD_FLAGS)
  if img is None:
    raise ImageError(f'{where}: cannot decode the image ({len(data)} bytes)')
  return np.ascontiguousarray(img[:, :, ::-1])


def load_image(path: str, where: str = '') -> np.ndarray:
  """upstream: load_img(path) without the float32 cast (see `crop` for why)."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise ImageError(f'{where or path}: cannot read the image {path}: {e}') from e
  return decode_image(data, f'{where} {path}'.strip())


def get_bbox(joint_img, joint_valid, extend_ratio: float = 1.2) -> np.ndarray:
  """upstream: get_bbox. xywh around the valid joints, scaled about its centre."""
  joint_img = np.asarray(joint_img)
  keep = np.asarray(joint_valid).reshape(-1) == 1
  x, y = joint_img[keep, 0], joint_img[keep, 1]
  xmin, xmax, ymin, ymax = x.min(), x.max(), y.min(), y.max()
  cx, cy = (xmin + xmax) / 2.0, (ymin + ymax) / 2.0
  w, h = (xmax - xmin) * extend_ratio, (ymax - ymin) * extend_ratio
  return np.array([cx - w / 2, cy - h / 2, w, h], np.float32)


def sanitize_bbox(bbox, img_width, img_height) -> Optional[np.ndarray]:
  """upstream: sanitize_bbox. None for a box with no area inside the image.

  The dtype follows the input, as upstream's np.array of the four values does.
  """
  x, y, w, h = bbox
  x1, y1 = max(0, x), max(0, y)
  x2 = min(img_width - 1, x1 + max(0, w - 1))
  y2 = min(img_height - 1, y1 + max(0, h - 1))
  if w * h > 0 and x2 > x1 and y2 > y1:
    return np.array([x1, y1, x2 - x1, y2 - y1])
  return None


def process_bbox(bbox, img_width, img_height,
                 aspect_ratio: float = spaces.INPUT_IMG_SHAPE[1] / spaces.INPUT_IMG_SHAPE[0],
                 scale: float = 1.25) -> Optional[np.ndarray]:
  """upstream: process_bbox. Sanitise, widen to the crop's aspect, scale by 1.25 (xywh f32)."""
  bbox = sanitize_bbox(bbox, img_width, img_height)
  if bbox is None:
    return None
  w, h = bbox[2], bbox[3]
  cx, cy = bbox[0] + w / 2.0, bbox[1] + h / 2.0
  if w > aspect_ratio * h:
    h = w / aspect_ratio
  elif w < aspect_ratio * h:
    w = h * aspect_ratio
  # Assigning into the sanitised array keeps its dtype: integer boxes truncate (quirk).
  bbox[2], bbox[3] = w * scale, h * scale
  bbox[0], bbox[1] = cx - bbox[2] / 2.0, cy - bbox[3] / 2.0
  return bbox.astype(np.float32)


def _rotate_2d(point, rot_rad):
  sn, cs = np.sin(rot_rad), np.cos(rot_rad)
  return np.array([point[0] * cs - point[1] * sn, point[0] * sn + point[1] * cs], np.float32)


def gen_trans(cx, cy, src_width, src_height, dst_width, dst_height, scale, rot,
              inv: bool = False) -> np.ndarray:
  """upstream: gen_trans_from_patch_cv. (2, 3) f32 affine box -> crop (or back when inv).

  Built from the same three float32 point pairs and cv2.getAffineTransform, so
  the matrices are bit-identical to upstream's.
  """
  rot_rad = np.pi * rot / 180
  center = np.array([cx, cy], np.float32)
  down = _rotate_2d(np.array([0, src_height * scale * 0.5], np.float32), rot_rad)
  right = _rotate_2d(np.array([src_width * scale * 0.5, 0], np.float32), rot_rad)
  src = np.stack([center, center + down, center + right]).astype(np.float32)
  dst_center = np.array([dst_width * 0.5, dst_height * 0.5], np.float32)
  dst = np.stack([dst_center, dst_center + np.array([0, dst_height * 0.5], np.float32),
                  dst_center + np.array([dst_width * 0.5, 0], np.float32)]).astype(np.float32)
  if inv:
    return cv2.getAffineTransform(dst, src).astype(np.float32)
  return cv2.getAffineTransform(src, dst).astype(np.float32)


def crop(img: np.ndarray, bbox, scale: float, rot: float, do_flip: bool,
         out_shape=spaces.INPUT_IMG_SHAPE):
  """upstream: generate_patch_image, with the flip folded into the warp matrix.

  upstream mirrors the whole image and warps the mirror with `trans`; warping
  the original with trans @ [x -> W-1-x] reads the same pixels with the same
  bilinear weights (OpenCV 5 samples exactly), without copying the image.
  The crop keeps the input's dtype: uint8 in, uint8 out (rounded), float32 in,
  float32 out (upstream's numbers).

  Returns (crop (out_h, out_w, 3), img2bb_trans (2, 3), bb2img_trans (2, 3)),
  where the matrices are upstream's: they act on *flipped* image coordinates.
  """
  img_height, img_width = img.shape[:2]
  cx = float(bbox[0] + 0.5 * bbox[2])
  cy = float(bbox[1] + 0.5 * bbox[3])
  width, height = float(bbox[2]), float(bbox[3])
  if do_flip:
    cx = img_width - cx - 1
  out_h, out_w = int(out_shape[0]), int(out_shape[1])
  trans = gen_trans(cx, cy, width, height, out_w, out_h, scale, rot)
  inv_trans = gen_trans(cx, cy, width, height, out_w, out_h, scale, rot, inv=True)
  warp = trans.astype(np.float64)
  if do_flip:
    mirror = np.array([[-1, 0, img_width - 1], [0, 1, 0], [0, 0, 1]], np.float64)
    warp = warp @ mirror
  patch = cv2.warpAffine(img, warp, (out_w, out_h), flags=cv2.INTER_LINEAR)
  return patch, trans, inv_trans


def affine_points(trans: np.ndarray, xy: np.ndarray) -> np.ndarray:
  """Apply a (2, 3) affine to (..., 2) points."""
  xy = np.asarray(xy, np.float32)
  return xy @ trans[:, :2].T + trans[:, 2]


def rz(rot_deg: float) -> np.ndarray:
  """upstream's rot_aug_mat: rotation by -rot about the camera z axis (f32)."""
  a = np.deg2rad(-rot_deg)
  c, s = math.cos(a), math.sin(a)
  return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float32)
