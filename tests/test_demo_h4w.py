"""The Hand4Whole demo (h4w_jax.demo) end to end on rendered pictures, a real photograph and
small videos, with synthetic weights.

The weights are small (ResNet-10 backbones) and random, with the heads set so that the mesh is
a standing body at about 41 m from the virtual camera (the scale of a person filling the crop).
The key check is at the pixel level: the saved meshes, projected with the saved cameras, cover
exactly the pixels that the overlay changed. The SSDLite detector does not fire on the
project's untextured renders, so the rendered pictures get their boxes from boxes files, a
detector callable (`--detector module:function`) or --bbox; the real photograph
(scikit-image's astronaut) goes through the default detector.
"""

import json

import cv2
import jax
import numpy as np
import pytest
from PIL import Image

from h4w_datasets import preprocessing
from h4w_datasets import synthetic
from h4w_jax.common import draw
from h4w_jax.inference import boxes as box_ops
from h4w_jax.inference import demo
from h4w_jax.inference import export
from h4w_jax.models import hand4whole
from h4w_jax.models import outputs
from h4w_jax.weights import files
import smplx_jax
from smplx_jax import render

NUM_VERTS, NUM_FACES = 10475, 20908
SIZES = {'root_pose': 3, 'body_pose': 63, 'lhand_pose': 45, 'rhand_pose': 45, 'jaw_pose': 3,
         'shape': 10, 'expr': 10, 'cam_trans': 3, 'focal': 2, 'princpt': 2, 'bbox': 4,
         'image_size': 2, 'crop_focal': 2, 'crop_princpt': 2, 'person_id': 1, 'detection': 5}
PERSON_FILES = ('_crop.png', '.obj', '_smplx.json', '_smplx.npz')
IDENTITY_6D = np.array([1, 0, 0, 1, 0, 0], np.float32)
ASTRONAUT_BOX = [20, 15, 345, 497]   # drawn by hand (see tests/test_detect.py)


def _weights(seed=0):
  """Random ResNet-10 weights; output heads near constant: identity poses, the
  root turned 180 degrees about x (upright in the camera frame), t_z = k sigmoid(1)."""
  rng = np.random.default_rng(seed)
  config = hand4whole.ModelConfig(body_depth=10, hand_depth=10, face_depth=10)

  def fill(path, leaf):
    names = [p.key for p in path]
    name, layer = names[-1], names[-2]
    if name == 'kernel':
      std = np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
      if layer.endswith('_out_0'):
        std *= 1e-3  # the heads follow the picture a little
      return (rng.standard_normal(leaf.shape) * std).astype(np.float32)
    value = np.ones(leaf.shape, np.float32) if name in ('scale', 'var') else np.zeros(
        leaf.shape, np.float32)
    if name == 'bias':
      if layer == 'root_pose_out_0':
        value = np.array([1, 0, 0, -1, 0, 0], np.float32)
      elif layer in ('body_pose_out_0', 'hand_pose_out_0', 'jaw_pose_out_0'):
        value = np.tile(IDENTITY_6D, leaf.shape[0] // 6)
      elif layer == 'cam_out_0':
        value = np.array([0.0, 0.0, 1.0], np.float32)
    return value
  return jax.tree_util.tree_map_with_path(fill, hand4whole.variable_shapes(config))


def _box(scene, dx=0.0):
  """The person's xywh box from the scene's projected joints (upstream get_bbox, 1.2)."""
  joints = scene.joints_img
  box = preprocessing.get_bbox(joints, np.ones(len(joints)), 1.2)
  return [float(box[0] + dx), *map(float, box[1:])]


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
  return files.save_checkpoint(tmp_path_factory.mktemp('demo_ckpt') / 'ckpt', _weights(),
                                 epoch=3)


@pytest.fixture(scope='module')
def scenes(clean_human_model_files):
  return synthetic.render_scenes(clean_human_model_files, 3, seed=1, image_shape=(240, 320))


@pytest.fixture(scope='module')
def two(scenes):
  """Two rendered people side by side (240x640) and their boxes."""
  image = np.concatenate([scenes[0].image, scenes[1].image], axis=1)
  return image, [_box(scenes[0]), _box(scenes[1], dx=320)]


def _run(checkpoint, hmf, *args):
  return demo.main(['--checkpoint', str(checkpoint), '--human-model-path', str(hmf),
                    '--batch-size', '2', *map(str, args)])


@pytest.fixture(scope='module')
def single(checkpoint, scenes, clean_human_model_files, tmp_path_factory):
  """One picture through the command line; returns (input path, box, output folder)."""
  root = tmp_path_factory.mktemp('demo_single')
  image_path = root / 'person.png'
  Image.fromarray(scenes[0].image).save(image_path)
  out = root / 'out'
  box = _box(scenes[0])
  assert _run(checkpoint, clean_human_model_files, '--image', image_path, '--bbox', *box,
              '--out', out) == 0
  return image_path, box, out


def _read_obj(path):
  vertices, faces = [], []
  for line in path.read_text().splitlines():
    kind, *values = line.split()
    if kind == 'v':
      vertices.append([float(v) for v in values])
    elif kind == 'f':
      faces.append([int(v) for v in values])
    else:
      raise AssertionError(f'unexpected OBJ line {line!r}')
  return np.array(vertices), np.array(faces) - 1


def _silhouette(vertices, faces, focal, princpt, shape):
  """(H, W) bool: the pixels the mesh covers, seen by the camera (focal, princpt)."""
  _, face_index = render.rasterize(render.project(vertices, focal, princpt), faces, *shape)
  return face_index >= 0


def _check_overlay(overlay, background, silhouette):
  """The overlay changed (nearly) every silhouette pixel and (nearly) nothing else."""
  assert overlay.shape == background.shape and overlay.dtype == np.uint8
  changed = np.any(overlay != background, axis=-1)
  assert 0.02 < silhouette.mean() < 0.6, silhouette.mean()
  assert changed[silhouette].mean() > 0.99
  assert changed[~silhouette].mean() < 1e-3


def _person(folder, stem):
  """(params from JSON, vertices, faces) of one person's files; JSON and npz agree."""
  params = json.loads((folder / f'{stem}_smplx.json').read_text())
  assert {k: len(np.atleast_1d(v)) for k, v in params.items()} == SIZES
  with np.load(folder / f'{stem}_smplx.npz') as npz:
    assert set(npz.files) == set(SIZES)
    for key in SIZES:
      np.testing.assert_allclose(npz[key].reshape(-1), np.atleast_1d(params[key]), rtol=1e-6)
  vertices, faces = _read_obj(folder / f'{stem}.obj')
  return params, vertices, faces


def test_single_picture_writes_everything(single, scenes):
  image_path, box, out = single
  assert {p.name for p in out.iterdir()} == {'person_overlay.png', 'detections.json'} | {
      f'person_p0{s}' for s in PERSON_FILES}
  params, vertices, faces = _person(out, 'person_p0')
  assert vertices.shape == (NUM_VERTS, 3) and faces.shape == (NUM_FACES, 3)
  assert faces.min() == 0 and faces.max() == NUM_VERTS - 1
  assert np.all(np.isfinite(vertices)) and np.all(vertices[:, 2] > 0)
  assert params['person_id'] == 0 and params['detection'] == box + [1.0]
  # The heads were set to a standing body at t_z = 56.38 * sigmoid(1) = 41.2 m.
  np.testing.assert_allclose(params['cam_trans'][2], 41.2, atol=0.2)
  # The mesh includes cam_trans: its centre is about 41 m in front of the camera.
  assert 39 < vertices[:, 2].mean() < 44

  image = np.asarray(Image.open(image_path).convert('RGB'))
  bbox = preprocessing.process_bbox(np.array(box), image.shape[1], image.shape[0])
  np.testing.assert_allclose(params['bbox'], bbox, rtol=1e-6)
  assert params['image_size'] == list(image.shape[:2])

  # The camera in original pixels is the crop's camera mapped back through the
  # crop's affine (checks upstream's render_original_img formula independently).
  crop, _, bb2img = preprocessing.crop(image, bbox, 1.0, 0.0, False)
  in_crop = render.project(vertices, draw.CROP_FOCAL, draw.CROP_PRINCPT)[:, :2]
  in_image = render.project(vertices, params['focal'], params['princpt'])[:, :2]
  np.testing.assert_allclose(preprocessing.affine_points(bb2img, in_crop), in_image, atol=1e-2)

  # Pixel level: the overlay differs from the input exactly on the projected mesh,
  # and keeps the input's colours elsewhere (no red/blue swap).
  overlay = np.asarray(Image.open(out / 'person_overlay.png'))
  silhouette = _silhouette(vertices, faces, params['focal'], params['princpt'], image.shape[:2])
  _check_overlay(overlay, image, silhouette)
  crop_overlay = np.asarray(Image.open(out / 'person_p0_crop.png'))
  crop_silhouette = _silhouette(vertices, faces, params['crop_focal'], params['crop_princpt'],
                                crop.shape[:2])
  _check_overlay(crop_overlay, crop, crop_silhouette)


def _check_two(out, stem, image, single_out):
  """Both people written; person 0 as when alone; the overlay covers both silhouettes."""
  silhouettes = []
  for i in range(2):
    params, vertices, faces = _person(out, f'{stem}_p{i}')
    assert params['person_id'] == i
    silhouettes.append(_silhouette(vertices, faces, params['focal'], params['princpt'],
                                   image.shape[:2]))
  ours = json.loads((out / f'{stem}_p0_smplx.json').read_text())
  alone = json.loads((single_out / 'person_p0_smplx.json').read_text())
  for key in ('root_pose', 'body_pose', 'lhand_pose', 'shape', 'expr', 'cam_trans', 'focal',
              'princpt', 'bbox'):
    np.testing.assert_allclose(ours[key], alone[key], atol=1e-4, err_msg=key)
  overlay = np.asarray(Image.open(out / f'{stem}_overlay.png'))
  _check_overlay(overlay, image, silhouettes[0] | silhouettes[1])
  assert silhouettes[0][:, :320].any() and silhouettes[1][:, 320:].any()


def test_two_people_in_one_call_from_a_boxes_file_and_a_detector_callable(
    single, checkpoint, two, clean_human_model_files, tmp_path, monkeypatch):
  image, boxes = two
  Image.fromarray(image).save(tmp_path / 'two.png')
  # COCO-style results of some detector; a third, low-scored box is dropped by --min-score.
  (tmp_path / 'dets.json').write_text(json.dumps(
      [{'file_name': 'two.png', 'bbox': b, 'score': s, 'category_id': 1}
       for b, s in zip(boxes + [[5, 5, 60, 60]], [0.9, 0.8, 0.3])]))
  calls = []
  predict = demo.predict

  def counting(predictor, items, batch_size):
    for item, out in predict(predictor, items, batch_size):
      calls.append(len(item.people))
      yield item, out
  monkeypatch.setattr(demo, 'predict', counting)
  assert _run(checkpoint, clean_human_model_files, '--image', tmp_path / 'two.png',
              '--boxes', tmp_path / 'dets.json', '--out', tmp_path / 'a') == 0
  assert calls == [2]
  _check_two(tmp_path / 'a', 'two', image, single[2])
  written = json.loads((tmp_path / 'a' / 'detections.json').read_text())
  assert [d['score'] for d in written] == [0.9, 0.8]

  # The same boxes from a Python callable (a stand-in for any detector model).
  (tmp_path / 'my_detector.py').write_text(
      f'BOXES = {json.dumps([b + [0.9 - 0.1 * i] for i, b in enumerate(boxes)])}\n'
      'def people(image):\n  assert image.shape == (240, 640, 3)\n  return BOXES\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  assert _run(checkpoint, clean_human_model_files, '--image', tmp_path / 'two.png',
              '--detector', 'my_detector:people', '--out', tmp_path / 'b') == 0
  _check_two(tmp_path / 'b', 'two', image, single[2])


def test_people_are_drawn_back_to_front(single):
  """Two copies of one mesh, one 2 m further back: where they overlap, the nearer one's
  colour shows, whichever order they come in."""
  image_path, _, out = single
  params, vertices, faces = _person(out, 'person_p0')
  image = np.asarray(Image.open(image_path).convert('RGB'))

  def person(pid, shift):
    p = {'cam_trans': np.array(params['cam_trans']) + [0, 0, shift],
         'focal': np.array(params['focal']), 'princpt': np.array(params['princpt'])}
    return demo.Person(np.zeros(5), np.zeros(4), None, id=pid, params=p,
                       vertices=vertices + [0.3, 0, shift])

  near, far = person(0, 0.0), person(1, 2.0)
  alone_near = demo.draw_people(image, [near], faces, 1.0, 10_000)
  both = demo.draw_people(image, [near, far], faces, 1.0, 10_000)
  assert np.array_equal(both, demo.draw_people(image, [far, near], faces, 1.0, 10_000))
  covered_near = np.any(alone_near != image, axis=-1)
  assert covered_near.mean() > 0.02
  np.testing.assert_array_equal(both[covered_near], alone_near[covered_near])
  alone_far = demo.draw_people(image, [far], faces, 1.0, 10_000)
  only_far = np.any(alone_far != image, axis=-1) & ~covered_near
  assert only_far.any() and not np.array_equal(alone_far[covered_near], both[covered_near])


def test_folder_unreadable_and_unboxed_pictures_and_shrunk_overlays(
    single, checkpoint, scenes, clean_human_model_files, tmp_path, capsys):
  folder = tmp_path / 'pictures'
  folder.mkdir()
  for i, name in enumerate(('a.png', 'b.jpg', 'c.png')):
    Image.fromarray(scenes[i].image).save(folder / name, quality=95)
  (folder / 'broken.png').write_bytes(b'\x89PNG not really')
  (folder / 'notes.txt').write_text('not a picture')
  boxes = {'a.png': _box(scenes[0]), 'b.jpg': _box(scenes[1]), 'c.png': None,
           'broken.png': [1, 1, 10, 10]}
  (tmp_path / 'boxes.json').write_text(json.dumps(boxes))
  out = tmp_path / 'out'
  # The readable pictures are done; the broken one is named, and the exit status says so.
  assert _run(checkpoint, clean_human_model_files, '--images', folder, '--boxes',
              tmp_path / 'boxes.json', '--out', out, '--overlay-max-side', 160) == 1
  captured = capsys.readouterr()
  assert 'broken.png' in captured.err and '1 of 4 pictures could not be read' in captured.err
  assert 'c.png: no person found' in captured.out
  expected = {'detections.json'} | {f'{s}_overlay.png' for s in 'ab'} | {
      f'{s}_p0{suffix}' for s in 'ab' for suffix in PERSON_FILES}
  assert {p.name for p in out.iterdir()} == expected
  # a.png is the single test's picture: same result from the batch of two.
  ours = json.loads((out / 'a_p0_smplx.json').read_text())
  alone = json.loads((single[2] / 'person_p0_smplx.json').read_text())
  for key in ('body_pose', 'cam_trans', 'focal', 'princpt'):
    np.testing.assert_allclose(ours[key], alone[key], atol=1e-4, err_msg=key)
  # Overlays shrunk to 160 px wide; the camera stays in original pixels and, scaled with
  # the picture, still lands the mesh on the changed pixels.
  overlay = np.asarray(Image.open(out / 'a_overlay.png'))
  assert overlay.shape == (120, 160, 3)
  params, vertices, faces = _person(out, 'a_p0')
  s = 0.5
  small = cv2.resize(scenes[0].image, (160, 120), interpolation=cv2.INTER_AREA)
  silhouette = _silhouette(vertices, faces, np.array(params['focal']) * s,
                           (np.array(params['princpt']) + 0.5) * s - 0.5, (120, 160))
  _check_overlay(overlay, small, silhouette)


def test_real_photograph_with_the_default_detector(checkpoint, clean_human_model_files,
                                                   tmp_path, capsys):
  """skimage.data.astronaut(): the detector finds the one person; skimage.data.chelsea() (a
  cat): no person, exit status 2 and a message saying what to try."""
  import skimage.data
  Image.fromarray(skimage.data.astronaut()).save(tmp_path / 'astronaut.jpg', quality=95)
  Image.fromarray(skimage.data.chelsea()).save(tmp_path / 'chelsea.jpg', quality=95)
  assert _run(checkpoint, clean_human_model_files, '--image', tmp_path / 'astronaut.jpg',
              '--out', tmp_path / 'out') == 0
  params, vertices, faces = _person(tmp_path / 'out', 'astronaut_p0')
  assert box_ops.iou([params['detection'][:4]], [ASTRONAUT_BOX])[0, 0] > 0.85
  assert not (tmp_path / 'out' / 'astronaut_p1_smplx.json').exists()
  capsys.readouterr()
  assert _run(checkpoint, clean_human_model_files, '--image', tmp_path / 'chelsea.jpg',
              '--out', tmp_path / 'cat') == demo.EXIT_NO_PERSON
  captured = capsys.readouterr()
  assert 'chelsea.jpg: no person found' in captured.out
  assert 'no person found in any picture' in captured.err and '--bbox' in captured.err


def _write_video(path, frames, fps=10.0):
  """An MJPG AVI (OpenCV's own encoder, there in every build); returns the decoded frames."""
  height, width = frames[0].shape[:2]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, (width, height))
  assert writer.isOpened()
  for frame in frames:
    writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
  writer.release()
  capture = cv2.VideoCapture(str(path))
  decoded = []
  while True:
    ok, frame = capture.read()
    if not ok:
      break
    decoded.append(frame[:, :, ::-1])
  capture.release()
  assert len(decoded) == len(frames)
  return decoded


class _NoCodec:
  def __init__(self, *args):
    pass

  def isOpened(self):
    return False

  def release(self):
    pass


def test_video_tracks_smooths_and_exports(checkpoint, two, clean_human_model_files, tmp_path,
                                          monkeypatch, capsys):
  """Five frames, two people; person 0 moves 3 px per frame, person 1 is missed in frames 2
  and 3 (a gap the tracker bridges). Overlays as PNG frames (the mp4 writer stubbed away) so
  that they can be checked pixel by pixel."""
  image, boxes = two
  decoded = _write_video(tmp_path / 'clip.avi', [image] * 5)
  dets = []
  for f in range(5):
    dets.append({'image_id': f, 'bbox': [boxes[0][0] + 3 * f] + boxes[0][1:], 'score': 0.9})
    if f not in (2, 3):
      dets.append({'image_id': f, 'bbox': boxes[1], 'score': 0.8})
  (tmp_path / 'dets.json').write_text(json.dumps(dets))
  monkeypatch.setattr(demo.cv2, 'VideoWriter', _NoCodec)
  assert _run(checkpoint, clean_human_model_files, '--video', tmp_path / 'clip.avi', '--boxes',
              tmp_path / 'dets.json', '--out', tmp_path / 'out') == 0
  assert 'writing PNG frames' in capsys.readouterr().out
  folder = tmp_path / 'out' / 'clip'
  tracks = json.loads((folder / 'tracks.json').read_text())
  assert tracks['fps'] == 10.0 and tracks['smoothing'] == 1.0
  assert {k: v['frames'] for k, v in tracks['tracks'].items()} == {'0': [0, 1, 2, 3, 4],
                                                                  '1': [0, 1, 4]}
  layer = outputs.smplx_layer(clean_human_model_files)
  for f in range(5):
    people = [0] if f in (2, 3) else [0, 1]
    overlay = np.asarray(Image.open(folder / f'frame_{f:06d}_overlay.png'))
    covered = np.zeros(image.shape[:2], bool)
    for pid in people:
      params, vertices, faces = _person(folder, f'frame_{f:06d}_p{pid}')
      # The mesh is the body model's for the saved (smoothed) parameters, plus cam_trans.
      body = smplx_jax.forward(layer, **{k: np.array(params[v])[None] for k, v in (
          ('betas', 'shape'), ('global_orient', 'root_pose'), ('body_pose', 'body_pose'),
          ('left_hand_pose', 'lhand_pose'), ('right_hand_pose', 'rhand_pose'),
          ('jaw_pose', 'jaw_pose'), ('expression', 'expr'))})
      np.testing.assert_allclose(np.asarray(body.vertices[0]) + params['cam_trans'], vertices,
                                 atol=2e-4)
      covered |= _silhouette(vertices, faces, params['focal'], params['princpt'],
                             image.shape[:2])
    _check_overlay(overlay, decoded[f], covered)
  # Person 0's box moved: the smoothed camera trails it (One-Euro), the raw one would not.
  first = json.loads((folder / 'frame_000000_p0_smplx.json').read_text())
  last = json.loads((folder / 'frame_000004_p0_smplx.json').read_text())
  raw_shift = 12 * 1.0   # the box moved 12 px; the processed box's centre moves as much
  assert 0 < last['princpt'][0] - first['princpt'][0] < raw_shift

  # The AMASS-style file of track 1 reads back into the same bodies.
  motion = np.load(folder / 'track_1_amass.npz')
  assert motion['poses'].shape == (5, 165) and motion['trans'].shape == (5, 3)
  assert str(motion['gender']) == 'neutral' and float(motion['mocap_framerate']) == 10.0
  assert motion['betas'].shape == (10,) and motion['observed'].tolist() == [
      True, True, False, False, True]
  np.testing.assert_array_equal(motion['frames'], np.arange(5))
  flat = smplx_jax.create(clean_human_model_files, 'smplx', gender='neutral', use_pca=False,
                          use_face_contour=True, flat_hand_mean=True)
  poses = motion['poses'][[0, 1, 4]]
  world = smplx_jax.forward(
      flat, betas=np.tile(motion['betas'], (3, 1)), global_orient=poses[:, :3],
      body_pose=poses[:, 3:66], jaw_pose=poses[:, 66:69], leye_pose=poses[:, 69:72],
      reye_pose=poses[:, 72:75], left_hand_pose=poses[:, 75:120],
      right_hand_pose=poses[:, 120:], expression=motion['expression'][[0, 1, 4]],
      transl=motion['trans'][[0, 1, 4]])
  for row, f in enumerate((0, 1, 4)):
    params, _, _ = _person(folder, f'frame_{f:06d}_p1')
    # The same body, in the video's one camera, turned into the z-up world.
    t = export.to_camera(params['cam_trans'], params['focal'], params['princpt'],
                         motion['focal'], motion['princpt'])[0]
    cam = smplx_jax.forward(layer, **{k: np.array(params[v])[None] for k, v in (
        ('global_orient', 'root_pose'), ('body_pose', 'body_pose'),
        ('left_hand_pose', 'lhand_pose'), ('right_hand_pose', 'rhand_pose'),
        ('jaw_pose', 'jaw_pose'), ('expression', 'expr'))}, betas=motion['betas'][None])
    expected = (np.asarray(cam.vertices[0]) + t) @ export.WORLD_FROM_CAMERA.T
    np.testing.assert_allclose(np.asarray(world.vertices[row]), expected, atol=1e-4)
  # The gap is filled linearly (translations) between the frames seen.
  trans = motion['trans']
  np.testing.assert_allclose(trans[2], trans[1] + (trans[4] - trans[1]) / 3, atol=1e-9)


def test_video_to_mp4_with_one_box_and_smoothing_off(checkpoint, scenes, clean_human_model_files,
                                                     tmp_path):
  decoded = _write_video(tmp_path / 'clip.avi', [s.image for s in scenes])
  out = tmp_path / 'out'
  assert _run(checkpoint, clean_human_model_files, '--video', tmp_path / 'clip.avi', '--bbox',
              *_box(scenes[0]), '--smoothing', 0, '--out', out) == 0
  names = {p.name for p in (out / 'clip').iterdir()}
  assert names == {'tracks.json', 'track_0_amass.npz'} | {
      f'frame_{i:06d}_p0{s}' for i in range(3) for s in PERSON_FILES[1:]}
  mp4 = out / 'clip_overlay.mp4'
  capture = cv2.VideoCapture(str(mp4))
  frames = []
  while True:
    ok, frame = capture.read()
    if not ok:
      break
    frames.append(frame)
  capture.release()
  assert len(frames) == 3 and frames[0].shape == scenes[0].image.shape
  # Lossy, but the mesh is there: the first frame differs from the input where drawn.
  assert np.abs(frames[0][:, :, ::-1].astype(int) - decoded[0]).max() > 50


@pytest.mark.parametrize('case', ['missing', 'not_image', 'truncated', 'folder_as_image',
                                  'zero_width', 'outside', 'video', 'checkpoint', 'boxes_file',
                                  'detector'])
def test_bad_input_names_the_file(case, checkpoint, scenes, clean_human_model_files, tmp_path,
                                  capsys):
  picture = tmp_path / 'person.png'
  Image.fromarray(scenes[0].image).save(picture)
  source, people = ['--image', str(picture)], ['--bbox', '10', '10', '50', '80']
  named = 'person.png'
  if case == 'checkpoint':
    named, checkpoint = 'no_ckpt', tmp_path / 'no_ckpt'
  elif case == 'missing':
    source, named = ['--image', str(tmp_path / 'nobody.png')], 'nobody.png'
  elif case == 'not_image':
    (tmp_path / 'fake.png').write_bytes(b'not a png')
    source, named = ['--image', str(tmp_path / 'fake.png')], 'fake.png'
  elif case == 'truncated':
    (tmp_path / 'cut.png').write_bytes(picture.read_bytes()[:100])
    source, named = ['--image', str(tmp_path / 'cut.png')], 'cut.png'
  elif case == 'folder_as_image':
    source, named = ['--image', str(tmp_path)], 'not a file'
  elif case == 'zero_width':
    people, named = ['--bbox', '10', '10', '0', '80'], 'degenerate box'
  elif case == 'outside':   # no area inside the picture: no person, exit status 2
    people = ['--bbox', '400', '300', '50', '80']
  elif case == 'video':
    (tmp_path / 'clip.mp4').write_bytes(b'not a video')
    source, named = ['--video', str(tmp_path / 'clip.mp4')], 'clip.mp4'
  elif case == 'boxes_file':
    (tmp_path / 'boxes.json').write_text('[{"file_name": "person.png", "bbox": [1, 2]}]')
    people, named = ['--boxes', str(tmp_path / 'boxes.json')], 'boxes.json'
  else:
    people, named = ['--detector', 'no_such_module:find'], 'no_such_module'
  status = demo.main(['--checkpoint', str(checkpoint), *source, *people,
                      '--out', str(tmp_path / 'out'),
                      '--human-model-path', str(clean_human_model_files)])
  assert status == (demo.EXIT_NO_PERSON if case == 'outside' else 1)
  error = capsys.readouterr().err
  assert named in error and ('error:' in error or 'no person' in error), error


def test_batches_are_padded_to_a_few_shapes_and_cut_back():
  """The network sees only bucket sizes (1, 2, 4, 8 for max_batch 8; 1, 2, 4, 6 for 6), each
  example's result comes back in its place, and padding is never returned."""
  from h4w_jax.inference import predictor as predictor_lib
  assert predictor_lib.buckets(8) == (1, 2, 4, 8) and predictor_lib.buckets(6) == (1, 2, 4, 6)
  assert [predictor_lib.bucket(n, 6) for n in range(1, 7)] == [1, 2, 4, 4, 6, 6]
  seen = []

  def double(x):
    seen.append(len(x['a']))
    return {'b': x['a'] * 2}

  p = predictor_lib.Predictor(variables=None, layer=None, max_batch=8)
  for n, shapes in ((1, [1]), (3, [4]), (8, [8]), (13, [8, 8]), (17, [8, 8, 1])):
    seen.clear()
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2) + 1
    out = p._chunked(double, {'a': x})
    assert seen == shapes and np.array_equal(out['b'], x * 2)
