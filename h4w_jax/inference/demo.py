"""Hand4Whole on your pictures: the mesh over the photo, an OBJ and the SMPL-X parameters.

    python -m h4w_jax.demo --checkpoint CKPT --image photo.jpg --bbox X Y W H --out OUT
    python -m h4w_jax.demo --checkpoint CKPT --images DIR --bboxes boxes.json --out OUT
    python -m h4w_jax.demo --checkpoint CKPT --video clip.mp4 --bbox X Y W H --out OUT

upstream: demo/demo.py (SPEC_DATA §10). The person box is xywh in the
original image's pixels; it goes through upstream's process_bbox (aspect 3:4,
x1.25) and the 512x384 crop, and the network's mesh (camera frame, metres,
cam_trans included) is drawn twice: over the crop with the crop's virtual
camera (render_cropped_img) and over the original picture with that camera
mapped back to original pixels (render_original_img). For each input NAME the
output folder gets

    NAME_overlay.png   the mesh over the original picture
    NAME_crop.png      the mesh over the network's 512x384 crop
    NAME.obj           the mesh (10475 vertices, camera frame, metres)
    NAME_smplx.json    poses, shape, expression, cam_trans and the camera in
    NAME_smplx.npz     original pixels (the same numbers in both files)

Folders: one --bbox for every picture, or --bboxes FILE, a JSON object
{file name: [x, y, w, h]}; pictures without a box are skipped. Videos: one
--bbox for every frame, or --bboxes FILE with a list (one box or null per
frame) or an object {frame index: box}; frames without a box pass through
unchanged. The overlays become NAME_overlay.mp4 (cv2.VideoWriter, mp4v);
where OpenCV cannot write that, they are written as PNG frames instead. The
other files are written per frame in the folder NAME/ (frame_000000.obj, ...).

Differences from upstream's demo, on purpose: the box is given (upstream runs
a torchvision detector and takes its best box of any class); the mesh is drawn
by the CPU rasterizer of smplx_jax.render (no OpenGL or PyTorch3D); pictures
are saved with correct colours (upstream writes RGB arrays with cv2.imwrite,
which swaps red and blue); the OBJ faces are plain `f a b c` (upstream writes
`f a/a b/b c/c`, references to texture coordinates the file does not have);
the JSON also holds cam_trans and the camera (upstream saves neither).
Pictures are read with their EXIF orientation applied, as upstream's demo
(cv2.imread) does. Runs on the CPU unless --platform says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np

from h4w_datasets import preprocessing
from h4w_jax.common import atomic, draw, spaces

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
PARAM_KEYS = ('root_pose', 'body_pose', 'lhand_pose', 'rhand_pose', 'jaw_pose', 'shape', 'expr',
              'cam_trans')
VIDEO_FOURCC = 'mp4v'


class DemoError(ValueError):
  """Bad input (a file, a box): the message names it."""


@dataclasses.dataclass
class Item:
  """One picture or video frame. bbox: processed xywh (original pixels), None: no box."""
  name: str
  image: np.ndarray                   # (H, W, 3) uint8 RGB
  bbox: Optional[np.ndarray] = None   # (4,) float32
  crop: Optional[np.ndarray] = None   # (512, 384, 3) uint8 RGB


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

def read_image(path: Path) -> np.ndarray:
  """(H, W, 3) uint8 RGB, EXIF orientation applied (as cv2.imread in upstream's demo)."""
  try:
    data = np.fromfile(path, np.uint8)
  except OSError as e:
    raise DemoError(f'{path}: cannot read the image: {e}') from e
  image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
  if image is None:
    raise DemoError(f'{path}: not an image OpenCV can decode ({data.size} bytes)')
  return np.ascontiguousarray(image[:, :, ::-1])


def check_box(box, where: str) -> np.ndarray:
  """[x, y, w, h] as 4 finite numbers with w, h > 0 (pixels)."""
  try:
    arr = np.asarray(box, np.float64)
  except (TypeError, ValueError):
    arr = None
  if arr is None or arr.shape != (4,) or not np.all(np.isfinite(arr)):
    raise DemoError(f'{where}: a box is 4 numbers [x, y, w, h], got {box!r}')
  if arr[2] <= 0 or arr[3] <= 0:
    raise DemoError(f'{where}: degenerate box {arr.tolist()} (width and height must be > 0)')
  return arr


def prepare(item: Item, box, where: str) -> Item:
  """upstream demo: process_bbox, then the 512x384 crop (scale 1, no rotation, no flip)."""
  height, width = item.image.shape[:2]
  bbox = preprocessing.process_bbox(check_box(box, where), width, height)
  if bbox is None:
    raise DemoError(f'{where}: the box {np.asarray(box).tolist()} has no area inside the '
                    f'{width}x{height} picture')
  crop, _, _ = preprocessing.crop(item.image, bbox, 1.0, 0.0, False)
  return dataclasses.replace(item, bbox=bbox, crop=crop)


def load_boxes(path: Path):
  """The --bboxes JSON: an object {key: box or null} or a list of boxes or nulls."""
  try:
    boxes = json.loads(Path(path).read_text())
  except OSError as e:
    raise DemoError(f'{path}: cannot read the boxes: {e}') from e
  except json.JSONDecodeError as e:
    raise DemoError(f'{path}: not valid JSON: {e}') from e
  if isinstance(boxes, list):
    boxes = {str(i): box for i, box in enumerate(boxes)}
  if not isinstance(boxes, dict):
    raise DemoError(f'{path}: expected an object {{name: [x, y, w, h]}} or a list of boxes')
  return {str(k): None if v is None else check_box(v, f'{path} [{k!r}]')
          for k, v in boxes.items()}


def folder_inputs(folder: Path, box, boxes: Optional[dict], boxes_file) -> tuple[list, Iterator]:
  """(the pictures to run, an iterator of prepared Items) for --images."""
  files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
  if boxes is not None:
    missing = sorted(set(k for k, v in boxes.items() if v is not None) - {p.name for p in files})
    if missing:
      raise DemoError(f'{boxes_file}: no such pictures in {folder}: {missing[:5]}')
    skipped = [p.name for p in files if boxes.get(p.name) is None]
    if skipped:
      print(f'{len(skipped)} pictures in {folder} have no box in {boxes_file}: skipped')
    files = [p for p in files if boxes.get(p.name) is not None]
  if not files:
    raise DemoError(f'{folder}: no pictures to run ({", ".join(IMAGE_SUFFIXES)})')
  stems = [p.stem for p in files]
  names = [p.name.replace('.', '_') if stems.count(p.stem) > 1 else p.stem for p in files]

  def items():
    for path, name in zip(files, names):
      item = Item(name, read_image(path))
      yield prepare(item, box if boxes is None else boxes[path.name], str(path))
  return files, items()


def video_inputs(cap, path: Path, box, boxes: Optional[dict]) -> Iterator[Item]:
  """The frames of an opened cv2.VideoCapture as Items (unboxed where `boxes` has none)."""
  index = 0
  while True:
    ok, frame = cap.read()
    if not ok:
      break
    item = Item(f'frame_{index:06d}', np.ascontiguousarray(frame[:, :, ::-1]))
    frame_box = box if boxes is None else boxes.get(str(index))
    yield item if frame_box is None else prepare(item, frame_box, f'{path} frame {index}')
    index += 1
  if index == 0:
    raise DemoError(f'{path}: no frame could be decoded')


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------

def original_camera(bbox) -> tuple[np.ndarray, np.ndarray]:
  """upstream demo render_original_img: the virtual camera in original pixels.

  The 256x192 body input's camera (focal 5000, princpt (96, 128)) scaled to
  the processed box (bx, by, bw, bh): focal (5000/192 bw, 5000/256 bh),
  princpt (96/192 bw + bx, 128/256 bh + by). Returns (focal (2,), princpt (2,)).
  """
  bx, by, bw, bh = np.asarray(bbox, np.float64)
  body_h, body_w = spaces.INPUT_BODY_SHAPE
  focal = np.array([spaces.FOCAL[0] / body_w * bw, spaces.FOCAL[1] / body_h * bh])
  princpt = np.array([spaces.PRINCPT[0] / body_w * bw + bx, spaces.PRINCPT[1] / body_h * bh + by])
  return focal, princpt


def save_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
  """A Wavefront OBJ: `v x y z` lines, then 1-based `f a b c` triangles."""
  with atomic.open_for_writing(path, 'w') as f:
    np.savetxt(f, np.asarray(vertices, np.float64), fmt='v %.8g %.8g %.8g')
    np.savetxt(f, np.asarray(faces, np.int64) + 1, fmt='f %d %d %d')


def parameters(out: dict, i: int, item: Item) -> dict[str, np.ndarray]:
  """The SMPL-X parameters of example i (upstream's names, flat) and the camera."""
  params = {key: np.asarray(out[key if key == 'cam_trans' else f'smplx_{key}'][i],
                            np.float32).reshape(-1) for key in PARAM_KEYS}
  focal, princpt = original_camera(item.bbox)
  params.update(focal=focal, princpt=princpt, bbox=np.asarray(item.bbox, np.float64),
                image_size=np.array(item.image.shape[:2]),
                crop_focal=np.array(draw.CROP_FOCAL),
                crop_princpt=np.array(draw.CROP_PRINCPT))
  return params


def write_outputs(folder: Path, item: Item, out: dict, i: int, faces: np.ndarray, *,
                  alpha: float, obj: bool, overlay_png: bool) -> np.ndarray:
  """Writes NAME_crop.png, NAME.obj, NAME_smplx.{json,npz} (and NAME_overlay.png);
  returns the overlay on the original picture."""
  mesh = np.asarray(out['smplx_mesh_cam'][i])
  params = parameters(out, i, item)
  overlay = draw.overlay(item.image, mesh, faces, params['focal'], params['princpt'], alpha)
  if overlay_png:
    draw.save_png(folder / f'{item.name}_overlay.png', overlay)
  draw.save_png(folder / f'{item.name}_crop.png',
                     draw.overlay(item.crop, mesh, faces, alpha=alpha))
  if obj:
    save_obj(folder / f'{item.name}.obj', mesh, faces)
  atomic.write_text(folder / f'{item.name}_smplx.json',
                    json.dumps({k: v.tolist() for k, v in params.items()}) + '\n')
  with atomic.open_for_writing(folder / f'{item.name}_smplx.npz') as f:
    np.savez(f, **params)
  return overlay


class VideoSink:
  """Overlay frames into NAME_overlay.mp4, or PNG frames where OpenCV cannot write it."""

  def __init__(self, path: Path, frames_dir: Path, fps: float, size_wh: tuple[int, int]):
    self.frames_dir = frames_dir
    self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps,
                                  size_wh)
    if self.writer.isOpened():
      self.path = path
    else:
      self.writer.release()
      self.writer = None
      self.path = frames_dir
      print(f'OpenCV cannot write {path} ({VIDEO_FOURCC}): writing PNG frames '
            f'{frames_dir}/frame_*_overlay.png instead')

  def add(self, name: str, rgb: np.ndarray) -> None:
    if self.writer is None:
      draw.save_png(self.frames_dir / f'{name}_overlay.png', rgb)
    else:
      self.writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))

  def close(self) -> None:
    if self.writer is not None:
      self.writer.release()


class Progress:
  """Prints done/total, the rate and the time left (after each batch)."""

  def __init__(self, total: Optional[int], unit: str):
    self.total, self.unit, self.done = total, unit, 0
    self.start = time.perf_counter()

  def update(self, n: int) -> None:
    self.done += n
    elapsed = time.perf_counter() - self.start
    rate = self.done / max(elapsed, 1e-9)
    line = f'{self.done}' + (f'/{self.total}' if self.total else '') + f' {self.unit}'
    line += f'  {rate:.2f} {self.unit}/s'
    if self.total:
      left = max(self.total - self.done, 0) / max(rate, 1e-9)
      line += f'  ETA {time.strftime("%H:%M:%S", time.gmtime(left))}'
    print(line, flush=True)


def run(predictor, items: Iterator[Item], batch_size: int, emit, progress: Progress) -> int:
  """Predicts the boxed items in batches of `batch_size` (the last one padded, so
  one compilation serves all) and calls emit(item, out, i) in input order
  (out None for an item without a box). Returns the number of predictions."""
  pending, boxed, count = [], [], 0

  def flush():
    nonlocal pending, boxed, count
    out = None
    if boxed:
      crops = [it.crop for it in boxed] + [boxed[-1].crop] * (batch_size - len(boxed))
      out = predictor(np.stack(crops).astype(np.float32) / 255.0)
    index = {id(it): i for i, it in enumerate(boxed)}
    for it in pending:
      emit(it, out if id(it) in index else None, index.get(id(it)))
    progress.update(len(pending))
    count += len(boxed)
    pending, boxed = [], []

  for item in items:
    pending.append(item)
    if item.bbox is not None:
      boxed.append(item)
    if len(boxed) == batch_size:
      flush()
  if pending:
    flush()
  return count


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='python -m h4w_jax.demo',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--checkpoint', type=Path, required=True,
                      help='a checkpoint folder of `python -m h4w_jax.convert`, an upstream '
                      'snapshot .pth.tar or a training workdir (backbone depths: the weights\')')
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--image', type=Path, help='one picture')
  source.add_argument('--images', type=Path, help='a folder of pictures')
  source.add_argument('--video', type=Path, help='a video file (read by cv2.VideoCapture)')
  boxes = parser.add_mutually_exclusive_group(required=True)
  boxes.add_argument('--bbox', type=float, nargs=4, metavar=('X', 'Y', 'W', 'H'),
                     help='the person box in original pixels (for every picture or frame)')
  boxes.add_argument('--bboxes', type=Path,
                     help='JSON boxes: {file name: [x,y,w,h]} or per frame (list or object)')
  parser.add_argument('--out', type=Path, required=True, help='output folder')
  parser.add_argument('--human-model-path', type=Path, default=None,
                      help='a human_model_files folder (default: synthetic body-model files)')
  parser.add_argument('--batch-size', type=int, default=4, help='pictures per network call')
  parser.add_argument('--alpha', type=float, default=0.8, help='opacity of the drawn mesh')
  parser.add_argument('--no-obj', action='store_true', help='do not write OBJ files')
  parser.add_argument('--platform', default='cpu',
                      help="JAX platform: cpu (default), gpu, tpu, or '' for JAX's choice")
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  if args.batch_size < 1:
    parser.error('--batch-size must be at least 1')
  if not 0 <= args.alpha <= 1:
    parser.error('--alpha must be in [0, 1]')
  if args.image is not None and args.bboxes is not None:
    parser.error('--image takes --bbox, not --bboxes')
  from h4w_jax.weights.files import WeightsError
  try:
    return _main(args)
  except (DemoError, preprocessing.ImageError, WeightsError) as e:
    print(f'{parser.prog}: error: {e}', file=sys.stderr)
    return 1


def _main(args) -> int:
  import jax
  if args.platform:
    jax.config.update('jax_platforms', args.platform)

  # Inputs are checked before the (slow) model load.
  if not args.checkpoint.exists():
    raise DemoError(f'{args.checkpoint}: no such checkpoint (a folder of '
                    '`python -m h4w_jax.convert`, an upstream .pth.tar or a training workdir)')
  source = args.image or args.images or args.video
  box = None if args.bbox is None else check_box(args.bbox, f'{source}: --bbox')
  boxes = None if args.bboxes is None else load_boxes(args.bboxes)
  if not source.exists():
    raise DemoError(f'{source}: no such file or folder')
  if args.images is not None and not source.is_dir():
    raise DemoError(f'{source}: --images needs a folder')
  if args.images is None and not source.is_file():
    raise DemoError(f'{source}: not a file')
  cap = None
  if args.image is not None:
    item = Item(source.stem, read_image(source))
    items, total, unit = iter([prepare(item, box, str(source))]), 1, 'pictures'
  elif args.images is not None:
    files, items = folder_inputs(source, box, boxes, args.bboxes)
    total, unit = len(files), 'pictures'
  else:
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
      raise DemoError(f'{source}: OpenCV cannot open this video')
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    items, unit = video_inputs(cap, source, box, boxes), 'frames'
  args.out.mkdir(parents=True, exist_ok=True)

  from h4w_jax.inference import Predictor
  from smplx_jax import demo as body_demo
  model_path = args.human_model_path
  if model_path is None:
    model_path = body_demo.default_model_path()
    print(f'No --human-model-path: synthetic body models from {model_path} (not the real '
          'SMPL-X body: for the pipeline, not for the shapes)')
  predictor = Predictor.from_checkpoint(args.checkpoint, human_model_path=model_path)
  faces = np.asarray(predictor.layer.faces)
  batch_size = 1 if args.image is not None else args.batch_size
  print(f'{args.checkpoint}: epoch {predictor.epoch}, backbones {predictor.config.body_depth}/'
        f'{predictor.config.hand_depth}/{predictor.config.face_depth}, on '
        f'{jax.devices()[0].platform}, batches of {batch_size}', flush=True)
  progress = Progress(total, unit)
  write = dict(alpha=args.alpha, obj=not args.no_obj)

  if cap is None:
    def emit(item, out, i):
      write_outputs(args.out, item, out, i, faces, overlay_png=True, **write)
    count = run(predictor, items, batch_size, emit, progress)
    print(f'Wrote {count} results to {args.out}')
    return 0

  frames_dir = args.out / source.stem
  frames_dir.mkdir(exist_ok=True)
  fps = cap.get(cv2.CAP_PROP_FPS)
  fps = fps if fps > 0 and math.isfinite(fps) else 30.0
  sink = None

  def emit(item, out, i):
    nonlocal sink
    if sink is None:
      height, width = item.image.shape[:2]
      sink = VideoSink(args.out / f'{source.stem}_overlay.mp4', frames_dir, fps, (width, height))
    overlay = item.image if out is None else write_outputs(
        frames_dir, item, out, i, faces, overlay_png=False, **write)
    sink.add(item.name, overlay)

  try:
    count = run(predictor, items, batch_size, emit, progress)
  finally:
    cap.release()
    if sink is not None:
      sink.close()
  print(f'Wrote {count} results to {frames_dir} and the overlays to {sink.path}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
