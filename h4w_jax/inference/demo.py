"""Hand4Whole on your pictures and videos: everyone found, meshes over the picture, parameters out.

    python -m h4w_jax.demo --checkpoint CKPT --image photo.jpg --out OUT
    python -m h4w_jax.demo --checkpoint CKPT --images DIR --out OUT
    python -m h4w_jax.demo --checkpoint CKPT --video clip.mp4 --out OUT [--smoothing 1]

upstream: demo/demo.py (SPEC_DATA §10), for every person instead of the best box. People are
found by a detector (`--detector`, default SSDLite; see h4w_jax.inference.detect), or given:
`--bbox X Y W H` (one person, every picture or frame) or `--boxes FILE` (COCO-style detections
from any detector, or {file name: box(es)}, or one entry per frame). Boxes below `--min-score`
or with a shorter side under `--min-box-size` pixels are dropped. Each box goes through
upstream's process_bbox (aspect 3:4, x1.25) and the 512x384 crop (from the original picture,
however large); all the people of a picture (and of several pictures or frames) go through the
network together, in batches padded to a few fixed sizes (compiled once each). The mesh
(camera frame, metres, cam_trans included) is drawn over the crop with the crop's camera
(render_cropped_img) and over the original picture with that camera mapped back to original
pixels (render_original_img), everyone in one overlay, drawn from the farthest to the nearest.

Pictures (NAME = file stem; person ids 0, 1, ... by detection score):

    NAME_overlay.png          everyone over the original picture
    NAME_p{ID}_crop.png       person ID over the network's 512x384 crop
    NAME_p{ID}.obj            the mesh (10475 vertices, camera frame, metres)
    NAME_p{ID}_smplx.json     poses, shape, expression, cam_trans, the camera in original
    NAME_p{ID}_smplx.npz      pixels (focal, princpt), the box (the same numbers in both)
    detections.json           every box used, COCO-style (reusable with --boxes)

Videos (frames decoded by OpenCV, or PyAV where OpenCV cannot): people are tracked across
frames (h4w_jax.inference.tracking; ids are track ids, kept through gaps of up to --max-gap
frames) and each track's parameters are smoothed in time (h4w_jax.inference.smoothing, One-Euro
on the rotation manifold; --smoothing 0 turns it off, 2 doubles it). Output:

    NAME_overlay.mp4                  everyone, per frame (PNG frames where OpenCV cannot write
                                      mp4v)
    NAME/frame_{N}_p{ID}.obj, NAME/frame_{N}_p{ID}_smplx.{json,npz}   per frame and person
    NAME/track_{ID}_amass.npz         per track: AMASS-style motion for the SMPL-X Blender
                                      add-on (h4w_jax.inference.export)
    NAME/tracks.json, detections.json the tracks (frames, boxes) and the boxes

Exit status: 0 done; 1 bad input (a message names the file, box or option; in a folder the
readable pictures are still done); 2 no person found anywhere.

Differences from upstream's demo, on purpose: every person, not the best box of any class;
the detector runs on the CPU from weights inside an installed package (upstream downloads
torchvision's Faster R-CNN); the mesh is drawn by the CPU rasterizer of smplx_jax.render (no
OpenGL); pictures are saved with correct colours (upstream writes RGB arrays with cv2.imwrite,
which swaps red and blue); the OBJ faces are plain `f a b c` (upstream writes `f a/a b/b c/c`,
references to texture coordinates the file does not have); the parameters also hold cam_trans
and the camera. Runs on the CPU unless --platform says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import cv2
import numpy as np

from h4w_datasets import preprocessing
from h4w_jax.common import atomic, draw
from h4w_jax.inference import boxes as box_ops
from h4w_jax.inference import detect
from h4w_jax.inference import export
from h4w_jax.inference import media
from h4w_jax.inference.media import InputError
from h4w_jax.inference.predictor import params_of

VIDEO_FOURCC = 'mp4v'
EXIT_NO_PERSON = 2


@dataclasses.dataclass
class Person:
  detection: np.ndarray                 # (5,) x, y, w, h, score (original pixels)
  bbox: np.ndarray                      # (4,) processed box (upstream process_bbox)
  crop: np.ndarray                      # (512, 384, 3) uint8
  id: int = -1
  params: Optional[dict] = None         # PARAM_KEYS + focal, princpt (after smoothing)
  vertices: Optional[np.ndarray] = None


@dataclasses.dataclass
class Item:
  """One picture or video frame and the people in it."""
  name: str
  index: int
  image: np.ndarray                     # (H, W, 3) uint8 RGB
  people: list = dataclasses.field(default_factory=list)


# ---------------------------------------------------------------------------
# People in a picture
# ---------------------------------------------------------------------------

def check_box(box, where: str) -> np.ndarray:
  """[x, y, w, h] as 4 finite numbers with w, h > 0 (pixels)."""
  try:
    arr = np.asarray(box, np.float64)
  except (TypeError, ValueError):
    arr = None
  if arr is None or arr.shape != (4,) or not np.all(np.isfinite(arr)):
    raise InputError(f'{where}: a box is 4 numbers [x, y, w, h], got {box!r}')
  if arr[2] <= 0 or arr[3] <= 0:
    raise InputError(f'{where}: degenerate box {arr.tolist()} (width and height must be > 0)')
  return arr


def people_in(image: np.ndarray, detections: np.ndarray, where: str) -> list[Person]:
  """upstream demo: process_bbox, then the 512x384 crop (scale 1, no rotation, no flip), per
  detection; boxes with no area inside the picture are left out, with a message."""
  height, width = image.shape[:2]
  people = []
  for det in detections:
    bbox = preprocessing.process_bbox(det[:4], width, height)
    if bbox is None:
      print(f'{where}: the box {np.round(det[:4], 1).tolist()} has no area inside the '
            f'{width}x{height} picture: left out', flush=True)
      continue
    crop, _, _ = preprocessing.crop(image, bbox, 1.0, 0.0, False)
    people.append(Person(np.asarray(det, np.float64), bbox, crop))
  return people


@dataclasses.dataclass
class BoxSource:
  """Where a picture's boxes come from: one fixed box, a boxes file, or a detector."""
  box: Optional[np.ndarray] = None
  table: Optional[detect.BoxTable] = None
  detector: Optional[Callable] = None
  min_score: float = 0.0
  min_size: float = 0.0
  max_people: Optional[int] = None

  def __call__(self, image: np.ndarray, name: str, index: Optional[int]) -> Optional[np.ndarray]:
    """(N, 5) boxes, or None where a boxes file has no entry for this picture."""
    if self.box is not None:
      dets = np.append(self.box, 1.0)[None]
    elif self.table is not None:
      dets = self.table.lookup(name, index)
      if dets is None:
        return None
    else:
      dets = self.detector(image)
    return box_ops.select(dets, min_score=self.min_score, min_size=self.min_size,
                          max_people=self.max_people)


# ---------------------------------------------------------------------------
# Batched prediction
# ---------------------------------------------------------------------------

def predict(predictor, items: Iterator[Item], batch_size: int) -> Iterator[tuple[Item, dict]]:
  """(item, network outputs of its people) in input order; the people of consecutive items
  share network calls of about batch_size crops (the predictor pads them to its buckets)."""
  pending, count = [], 0

  def flush():
    crops = [p.crop for it in pending for p in it.people]
    out = predictor(np.stack(crops).astype(np.float32) / 255.0) if crops else {}
    start = 0
    for it in pending:
      n = len(it.people)
      yield it, {k: v[start:start + n] for k, v in out.items()}
      start += n

  for item in items:
    pending.append(item)
    count += len(item.people)
    if count >= batch_size:
      yield from flush()
      pending, count = [], 0
  if pending:
    yield from flush()


def attach(item: Item, out: dict) -> None:
  """Each person's parameters and mesh from the network outputs (camera from the box)."""
  params = params_of(out) if item.people else {}
  for i, person in enumerate(item.people):
    p = {k: v[i] for k, v in params.items()}
    p['focal'], p['princpt'] = export.original_camera(person.bbox)
    person.params = p
    person.vertices = np.asarray(out['smplx_mesh_cam'][i])


# ---------------------------------------------------------------------------
# Drawing and writing
# ---------------------------------------------------------------------------

def colour(person_id: int) -> tuple:
  return draw.PALETTE[max(person_id, 0) % len(draw.PALETTE)]


def draw_people(image: np.ndarray, people: Sequence[Person], faces: np.ndarray, alpha: float,
                max_side: int) -> np.ndarray:
  """Everyone over the picture, farthest first (depth in a unit-focal camera, t_z / focal, as
  each person has their own camera); on a copy shrunk to max_side pixels if larger."""
  canvas, s = box_ops.downscaled(image, max_side)
  order = sorted(people, key=lambda p: -p.params['cam_trans'][2] / np.mean(p.params['focal']))
  for p in order:
    focal = np.asarray(p.params['focal']) * s
    princpt = (np.asarray(p.params['princpt']) + 0.5) * s - 0.5   # pixel centres after resize
    canvas = draw.overlay(canvas, p.vertices, faces, focal, princpt, alpha, colour(p.id))
  return canvas


def write_person(stem: Path, item: Item, person: Person, faces, *, obj: bool, crop: bool,
                 alpha: float) -> None:
  if crop:
    draw.save_png(f'{stem}_crop.png', draw.overlay(person.crop, person.vertices, faces,
                                                   alpha=alpha, color=colour(person.id)))
  if obj:
    export.save_obj(Path(f'{stem}.obj'), person.vertices, faces)
  export.save_record(stem, export.person_record(person.params, person.bbox, item.image.shape,
                                                person_id=person.id,
                                                detection=person.detection))


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
  """Prints done/total, the rate and the time left, at most every `every` seconds."""

  def __init__(self, total: Optional[int], unit: str, every: float = 2.0):
    self.total, self.unit, self.done, self.every = total, unit, 0, every
    self.start = self.last = time.perf_counter()

  def update(self, n: int = 1) -> None:
    self.done += n
    now = time.perf_counter()
    if now - self.last < self.every and self.done != self.total:
      return
    self.last = now
    rate = self.done / max(now - self.start, 1e-9)
    line = f'{self.done}' + (f'/{self.total}' if self.total else '') + f' {self.unit}'
    line += f'  {rate:.2f} {self.unit}/s'
    if self.total:
      left = max(self.total - self.done, 0) / max(rate, 1e-9)
      line += f'  ETA {time.strftime("%H:%M:%S", time.gmtime(left))}'
    print(line, flush=True)


# ---------------------------------------------------------------------------
# Pictures and folders
# ---------------------------------------------------------------------------

def run_pictures(args, predictor, source: BoxSource, files: list[Path], names: list[str]) -> int:
  faces = np.asarray(predictor.layer.faces)
  errors, skipped, no_person, found = [], [], [], 0
  records = []
  progress = Progress(len(files), 'pictures')

  def items():
    for index, (path, name) in enumerate(zip(files, names)):
      try:
        image = media.read_image(path)
      except InputError as e:
        errors.append(str(e))
        print(f'skipped: {e}', file=sys.stderr, flush=True)
        progress.update()
        continue
      dets = source(image, path.name, None)
      if dets is None:
        skipped.append(path.name)
        progress.update()
        continue
      item = Item(name, index, image, people_in(image, dets, str(path)))
      for i, p in enumerate(item.people):
        p.id = i
      yield item

  for item, out in predict(predictor, items(), args.batch_size):
    attach(item, out)
    path = files[item.index]
    records += detect.detection_records(path.name, [p.detection for p in item.people])
    if not item.people:
      no_person.append(path.name)
      print(f'{path}: no person found ({source_summary(args)})', flush=True)
    else:
      found += len(item.people)
      overlay = draw_people(item.image, item.people, faces, args.alpha, args.overlay_max_side)
      draw.save_png(args.out / f'{item.name}_overlay.png', overlay)
      for p in item.people:
        write_person(args.out / f'{item.name}_p{p.id}', item, p, faces, obj=not args.no_obj,
                     crop=True, alpha=args.alpha)
    progress.update()
  atomic.write_text(args.out / 'detections.json', json.dumps(records, indent=1) + '\n')
  if skipped:
    print(f'{len(skipped)} pictures have no entry in {args.boxes}: skipped ({skipped[:5]}...)')
  print(f'Wrote {found} people from {len(files) - len(errors) - len(skipped) - len(no_person)} '
        f'pictures to {args.out}')
  if errors:
    print(f'{parser_prog()}: error: {len(errors)} of {len(files)} pictures could not be read: '
          + '; '.join(errors[:3]), file=sys.stderr)
    return 1
  if found == 0:
    print(f'{parser_prog()}: no person found in any picture ({", ".join(no_person[:3])}'
          f'{", ..." if len(no_person) > 3 else ""}; {source_summary(args)}); give boxes with '
          '--bbox or --boxes, or lower --min-score / --min-box-size', file=sys.stderr)
    return EXIT_NO_PERSON
  return 0


# ---------------------------------------------------------------------------
# Videos
# ---------------------------------------------------------------------------

def run_video(args, predictor, source: BoxSource, reader: media.VideoReader) -> int:
  from h4w_jax.inference import smoothing
  from h4w_jax.inference import tracking
  faces = np.asarray(predictor.layer.faces)
  stem = args.video.stem
  frames_dir = args.out / stem
  frames_dir.mkdir(parents=True, exist_ok=True)
  tracker = tracking.Tracker(iou_threshold=args.track_iou, max_gap=args.max_gap)
  hand_mean = np.asarray(predictor.layer.pose_mean)[75:]
  offsets = {'lhand_pose': hand_mean[:45], 'rhand_pose': hand_mean[45:]}
  smoothers: dict[int, smoothing.ParamSmoother] = {}
  tracks: dict[int, dict] = {}
  records, sink, image_shape = [], None, None
  progress = Progress(reader.frame_count, 'frames')

  def items():
    for index, image in enumerate(reader):
      dets = source(image, f'frame_{index:06d}', index)
      yield Item(f'frame_{index:06d}', index, image,
                 [] if dets is None else people_in(image, dets, f'{args.video} frame {index}'))

  try:
    for item, out in predict(predictor, items(), args.batch_size):
      attach(item, out)
      image_shape = item.image.shape
      ids = tracker.update(item.index, np.stack([p.detection for p in item.people])
                           if item.people else np.zeros((0, 5)))
      t = item.index / reader.fps
      for person, track_id in zip(item.people, ids):
        person.id = int(track_id)
        smoother = smoothers.setdefault(person.id, smoothing.ParamSmoother(
            args.smoothing, pose_offsets=offsets))
        person.params = smoother(t, person.params)
        track = tracks.setdefault(person.id, {'frames': [], 'params': [], 'boxes': []})
        track['frames'].append(item.index)
        track['params'].append(person.params)
        track['boxes'].append(person.detection.round(2).tolist())
      if item.people and args.smoothing > 0:
        stacked = {k: np.stack([p.params[k] for p in item.people])
                   for k in export.PARAM_KEYS}
        for person, v in zip(item.people, predictor.body(stacked)['vertices']):
          person.vertices = v
      records += detect.detection_records(item.name, [p.detection for p in item.people],
                                          image_id=item.index)
      overlay = draw_people(item.image, item.people, faces, args.alpha, args.overlay_max_side)
      if sink is None:
        sink = VideoSink(args.out / f'{stem}_overlay.mp4', frames_dir, reader.fps,
                         overlay.shape[1::-1])
      sink.add(item.name, overlay)
      for p in item.people:
        write_person(frames_dir / f'{item.name}_p{p.id}', item, p, faces, obj=not args.no_obj,
                     crop=args.crops, alpha=args.alpha)
      progress.update()
  finally:
    reader.close()
    if sink is not None:
      sink.close()

  atomic.write_text(args.out / 'detections.json', json.dumps(records, indent=1) + '\n')
  summary = {}
  for track_id, track in sorted(tracks.items()):
    motion = export.amass_motion(track['frames'], track['params'], image_shape, reader.fps,
                                 predictor.layer)
    export.save_amass(frames_dir / f'track_{track_id}_amass.npz', motion)
    summary[str(track_id)] = {'frames': track['frames'], 'boxes': track['boxes']}
  atomic.write_text(frames_dir / 'tracks.json', json.dumps(
      {'fps': reader.fps, 'smoothing': args.smoothing, 'max_gap': args.max_gap,
       'tracks': summary}) + '\n')
  print(f'{len(tracks)} tracks over {progress.done} frames: per-frame results and one '
        f'AMASS-style npz per track in {frames_dir}, the overlays in {sink.path if sink else "-"}')
  if not tracks:
    print(f'{parser_prog()}: no person found in {args.video} ({source_summary(args)}); give '
          'boxes with --bbox or --boxes, or lower --min-score / --min-box-size', file=sys.stderr)
    return EXIT_NO_PERSON
  return 0


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parser_prog() -> str:
  return 'python -m h4w_jax.demo'


def source_summary(args) -> str:
  if args.bbox is not None:
    return 'the --bbox box'
  if args.boxes is not None:
    return f'boxes from {args.boxes}, min score {args.min_score}, min box {args.min_box_size} px'
  return (f'detector {args.detector}, min score {args.min_score}, min box {args.min_box_size} '
          'px')


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog=parser_prog(), description=__doc__.split('\n\n')[0])
  parser.add_argument('--checkpoint', type=Path, required=True,
                      help='a checkpoint folder of `python -m h4w_jax.convert`, an upstream '
                      'snapshot .pth.tar or a training workdir (backbone depths: the weights\')')
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--image', type=Path, help='one picture')
  source.add_argument('--images', type=Path, help='a folder of pictures')
  source.add_argument('--video', type=Path, help='a video file (OpenCV, or PyAV if installed)')
  parser.add_argument('--out', type=Path, required=True, help='output folder')
  people = parser.add_argument_group('people')
  boxes = people.add_mutually_exclusive_group()
  boxes.add_argument('--bbox', type=float, nargs=4, metavar=('X', 'Y', 'W', 'H'),
                     help='one person box in original pixels, for every picture or frame')
  boxes.add_argument('--boxes', '--bboxes', dest='boxes', type=Path,
                     help='boxes from any detector: COCO-style results [{"image_id" (frame '
                          'index) or "file_name", "bbox": [x,y,w,h], "score"}], or {file name: '
                          'box(es)}, or a list with one box, list of boxes or null per frame')
  boxes.add_argument('--detector', default='auto',
                     help="auto (default: ssdlite, else OpenCV's HOG if this OpenCV has it), "
                          'ssdlite, hog, or MODULE:CALLABLE (image RGB uint8 -> boxes xywh[+score])')
  people.add_argument('--min-score', type=float, default=0.5,
                      help='detections below this score are dropped (default 0.5)')
  people.add_argument('--min-box-size', type=float, default=32.0,
                      help="boxes whose shorter side is below this many pixels are dropped")
  people.add_argument('--max-people', type=int, default=0,
                      help='at most this many people per picture or frame, best first (0: all)')
  video = parser.add_argument_group('video')
  video.add_argument('--smoothing', type=float, default=1.0,
                     help='temporal smoothing strength (One-Euro on the rotation manifold): '
                          '0 off, 1 default, 2 twice as smooth')
  video.add_argument('--max-gap', type=int, default=15,
                     help='a person unseen for up to this many frames keeps their track id')
  video.add_argument('--track-iou', type=float, default=0.3,
                     help='box overlap (IoU) needed to continue a track')
  video.add_argument('--crops', action='store_true',
                     help='also write the crop overlay per person and frame')
  parser.add_argument('--human-model-path', type=Path, default=None,
                      help='a human_model_files folder (default: synthetic body-model files)')
  parser.add_argument('--batch-size', type=int, default=8,
                      help='people per network call (batches padded to 1, 2, 4, ... up to it)')
  parser.add_argument('--alpha', type=float, default=0.8, help='opacity of the drawn meshes')
  parser.add_argument('--overlay-max-side', type=int, default=2560,
                      help='picture overlays larger than this are drawn shrunk to it (pixels)')
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
  if args.smoothing < 0:
    parser.error('--smoothing must be >= 0')
  if args.max_gap < 0 or args.max_people < 0 or args.overlay_max_side < 1:
    parser.error('--max-gap and --max-people must be >= 0, --overlay-max-side >= 1')
  from h4w_jax.weights.files import WeightsError
  try:
    return _main(args)
  except (InputError, ValueError, preprocessing.ImageError, detect.DetectorUnavailable,
          WeightsError) as e:
    print(f'{parser.prog}: error: {e}', file=sys.stderr)
    return 1


def _box_source(args) -> BoxSource:
  common = dict(min_score=args.min_score, min_size=args.min_box_size,
                max_people=args.max_people or None)
  if args.bbox is not None:
    return BoxSource(box=check_box(args.bbox, f'{args.image or args.images or args.video}: '
                                   '--bbox'), max_people=args.max_people or None)
  if args.boxes is not None:
    return BoxSource(table=detect.load_boxes(args.boxes), **common)
  return BoxSource(detector=detect.get_detector(args.detector, min_score=args.min_score),
                   **common)


def _main(args) -> int:
  import jax
  if args.platform:
    jax.config.update('jax_platforms', args.platform)

  # Inputs are checked before the (slow) model load.
  if not args.checkpoint.exists():
    raise InputError(f'{args.checkpoint}: no such checkpoint (a folder of '
                     '`python -m h4w_jax.convert`, an upstream .pth.tar or a training workdir)')
  path = args.image or args.images or args.video
  if not path.exists():
    raise InputError(f'{path}: no such file or folder')
  if args.images is not None and not path.is_dir():
    raise InputError(f'{path}: --images needs a folder')
  if args.images is None and not path.is_file():
    raise InputError(f'{path}: not a file')
  source = _box_source(args)
  reader = files = names = None
  if args.image is not None:
    media.read_image(path)   # a bad picture fails here, before the model load
    files, names = [path], [path.stem]
  elif args.images is not None:
    files = media.image_files(path)
    if source.table is not None:
      skipped = [p.name for p in files if source.table.lookup(p.name) is None]
      missing = sorted(set(k for k in source.table if not k.isdigit())
                       - {n for p in files for n in (p.name, p.stem)})
      if len(skipped) == len(files):
        raise InputError(f'{args.boxes}: no boxes for any picture in {path} (keys such as '
                         f'{missing[:3]})')
    if not files:
      raise InputError(f'{path}: no pictures to run ({", ".join(media.IMAGE_SUFFIXES)})')
    stems = [p.stem for p in files]
    names = [p.name.replace('.', '_') if stems.count(p.stem) > 1 else p.stem for p in files]
  else:
    reader = media.VideoReader(path)
  args.out.mkdir(parents=True, exist_ok=True)

  from h4w_jax.inference import Predictor
  from smplx_jax import demo as body_demo
  model_path = args.human_model_path
  if model_path is None:
    model_path = body_demo.default_model_path()
    print(f'No --human-model-path: synthetic body models from {model_path} (not the real '
          'SMPL-X body: for the pipeline, not for the shapes)')
  predictor = Predictor.from_checkpoint(args.checkpoint, human_model_path=model_path,
                                        max_batch=args.batch_size)
  detector = source.detector if source.detector is not None else (
      'boxes file' if source.table is not None else '--bbox')
  print(f'{args.checkpoint}: epoch {predictor.epoch}, backbones {predictor.config.body_depth}/'
        f'{predictor.config.hand_depth}/{predictor.config.face_depth}, on '
        f'{jax.devices()[0].platform}, batches of up to {args.batch_size}; people from '
        f'{detector}', flush=True)
  if reader is not None:
    return run_video(args, predictor, source, reader)
  return run_pictures(args, predictor, source, files, names)


if __name__ == '__main__':
  raise SystemExit(main())
