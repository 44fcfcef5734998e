"""Pictures and videos in, as (H, W, 3) uint8 RGB, whatever the file holds.

Pictures: decoded by OpenCV with everything kept (IMREAD_UNCHANGED), then

* EXIF orientation applied (what a photo viewer shows, and what upstream's demo gets from
  cv2.imread; IMREAD_UNCHANGED alone would ignore it);
* greyscale repeated to three channels; RGBA composited over white (transparent parts are
  background to a viewer); 16-bit scaled to 8 (x / 257, rounded); float images taken as [0, 1];
* files OpenCV cannot decode tried with Pillow (e.g. palette GIFs), then refused with an
  InputError naming the file.

Huge pictures are kept whole: detectors shrink their own copy, the network's crop is taken from
the original, and overlays are drawn on a copy of at most `overlay_max_side` pixels (demo).

Videos: cv2.VideoCapture (FFmpeg; phone rotation metadata applied), or PyAV (`pip install av`)
where OpenCV cannot open or decode the file.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.gif')
EXIF_ORIENTATION = 0x0112


class InputError(ValueError):
  """A file that cannot be used: the message names it."""


def _exif_orientation(data: bytes) -> int:
  from PIL import Image
  try:
    with Image.open(io.BytesIO(data)) as im:
      return int(im.getexif().get(EXIF_ORIENTATION, 1))
  except Exception:  # noqa: BLE001  (no or broken EXIF: as stored)
    return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
  """The picture as EXIF orientation 1..8 says to show it (TIFF/EXIF spec, tag 0x0112)."""
  ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
         5: lambda a: a.swapaxes(0, 1), 6: lambda a: a.swapaxes(0, 1)[:, ::-1],
         7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: a.swapaxes(0, 1)[::-1]}
  op = ops.get(orientation)
  return image if op is None else np.ascontiguousarray(op(image))


def to_rgb8(image: np.ndarray, where: str) -> np.ndarray:
  """Any decoded array (grey, grey+alpha, BGR, BGRA; 8/16-bit or float) -> (H, W, 3) uint8
  RGB. Channel order is OpenCV's (BGR)."""
  a = np.asarray(image)
  if a.ndim == 2:
    a = a[:, :, None]
  if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
    raise InputError(f'{where}: unsupported picture layout {a.shape}')
  if a.dtype == np.uint8 and a.shape[2] in (1, 3):
    out = a
  else:
    if a.dtype == np.uint8:
      f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
      f = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
      f = np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0)
    else:
      raise InputError(f'{where}: unsupported pixel type {a.dtype}')
    if f.shape[2] in (2, 4):   # alpha last: composite over white
      alpha = f[:, :, -1:]
      f = f[:, :, :-1] * alpha + (1.0 - alpha)
    out = np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)
  if out.shape[2] == 1:
    out = np.repeat(out, 3, axis=2)
  return np.ascontiguousarray(out[:, :, ::-1])


def decode_image(data: bytes, where: str) -> np.ndarray:
  """Encoded picture bytes -> (H, W, 3) uint8 RGB as the module docstring says."""
  buf = np.frombuffer(data, np.uint8)
  image = None
  if buf.size:
    try:
      image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:   # e.g. over OpenCV's pixel limit
      raise InputError(f'{where}: OpenCV cannot decode this picture: {e}') from e
  if image is None and buf.size:
    image = _decode_with_pillow(data)
    if image is not None:
      return image
  if image is None:
    raise InputError(f'{where}: not a picture OpenCV or Pillow can decode ({buf.size} bytes)')
  rgb = to_rgb8(image, where)
  if rgb.shape[0] < 2 or rgb.shape[1] < 2:
    raise InputError(f'{where}: picture too small ({rgb.shape[1]}x{rgb.shape[0]} pixels)')
  return apply_orientation(rgb, _exif_orientation(data))


def _decode_with_pillow(data: bytes) -> Optional[np.ndarray]:
  from PIL import Image, ImageOps
  try:
    with Image.open(io.BytesIO(data)) as im:
      im = ImageOps.exif_transpose(im)
      if im.mode in ('RGBA', 'LA', 'PA') or (im.mode == 'P' and 'transparency' in im.info):
        im = im.convert('RGBA')
        white = Image.new('RGBA', im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
      return np.asarray(im.convert('RGB'), np.uint8).copy()
  except Exception:  # noqa: BLE001  (refused by the caller with the file's name)
    return None


def read_image(path) -> np.ndarray:
  """A picture file -> (H, W, 3) uint8 RGB; InputError naming the file otherwise."""
  path = Path(path)
  try:
    data = path.read_bytes()
  except OSError as e:
    raise InputError(f'{path}: cannot read the picture: {e.strerror or e}') from e
  return decode_image(data, str(path))


def image_files(folder: Path) -> list[Path]:
  """The pictures in a folder (by suffix), sorted by name."""
  return sorted(p for p in Path(folder).iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class VideoReader:
  """The frames of a video file as (H, W, 3) uint8 RGB, with its frame rate and frame count.

  OpenCV first; PyAV (if installed) where OpenCV cannot open the file or decode a frame of it.
  """

  def __init__(self, path, backend: str = 'auto'):
    self.path = Path(path)
    if backend not in ('auto', 'opencv', 'pyav'):
      raise ValueError(f"backend must be 'auto', 'opencv' or 'pyav', got {backend!r}")
    if not self.path.is_file():
      raise InputError(f'{self.path}: no such video file')
    self.backend, self.fps, self.frame_count = None, 30.0, None
    errors = []
    if backend in ('auto', 'opencv'):
      cap = cv2.VideoCapture(str(self.path))
      ok, first = cap.read() if cap.isOpened() else (False, None)
      if ok:
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps > 0 and math.isfinite(fps) else 30.0
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        self.backend, self._cap, self._first = 'opencv', cap, first
        return
      cap.release()
      errors.append('OpenCV cannot open it or decode a frame')
    if backend in ('auto', 'pyav'):
      try:
        import av
      except ImportError:
        errors.append('PyAV is not installed (pip install av)')
      else:
        try:
          self._container = av.open(str(self.path))
          stream = self._container.streams.video[0]
          rate = stream.average_rate or stream.guessed_rate
          self.fps = float(rate) if rate else 30.0
          self.frame_count = stream.frames or None
          self._frames = self._container.decode(stream)
          self._first = next(self._frames).to_ndarray(format='bgr24')
          self.backend = 'pyav'
          return
        except (av.FFmpegError, IndexError, StopIteration) as e:
          errors.append(f'PyAV: {e}' if str(e) else 'PyAV finds no video frame')
    raise InputError(f'{self.path}: not a video this machine can decode ({"; ".join(errors)})')

  def __iter__(self) -> Iterator[np.ndarray]:
    try:
      frame = self._first
      while frame is not None:
        yield np.ascontiguousarray(frame[:, :, ::-1])
        frame = self._next()
    finally:
      self.close()

  def _next(self):
    if self.backend == 'opencv':
      ok, frame = self._cap.read()
      return frame if ok else None
    try:
      return next(self._frames).to_ndarray(format='bgr24')
    except StopIteration:
      return None

  def close(self) -> None:
    if self.backend == 'opencv':
      self._cap.release()
    elif self.backend == 'pyav':
      self._container.close()
