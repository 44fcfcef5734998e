"""The Hand4Whole demo (h4w_jax.demo) end to end on synthetic pictures and weights.

The weights are small (ResNet-10 backbones) and random, with the heads set so
that the mesh is a standing body at about 41 m from the virtual camera (the
scale of a person filling the crop). The key check is at the pixel level: the
saved mesh, projected with the saved camera, covers exactly the pixels that
the overlay changed.
"""

import json

import cv2
import jax
import numpy as np
import pytest
from PIL import Image

from h4w_datasets import preprocessing
from h4w_datasets import synthetic
from h4w_jax.weights import files
from h4w_jax.inference import demo
from h4w_jax.models import hand4whole
from h4w_jax.common import draw
from smplx_jax import render

NUM_VERTS, NUM_FACES = 10475, 20908
SIZES = {'root_pose': 3, 'body_pose': 63, 'lhand_pose': 45, 'rhand_pose': 45, 'jaw_pose': 3,
         'shape': 10, 'expr': 10, 'cam_trans': 3, 'focal': 2, 'princpt': 2, 'bbox': 4,
         'image_size': 2, 'crop_focal': 2, 'crop_princpt': 2}
IDENTITY_6D = np.array([1, 0, 0, 1, 0, 0], np.float32)


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


def _box(scene):
  """The person's xywh box from the scene's projected joints (upstream get_bbox, 1.2)."""
  joints = scene.joints_img
  return preprocessing.get_bbox(joints, np.ones(len(joints)), 1.2).tolist()


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
  return files.save_checkpoint(tmp_path_factory.mktemp('demo_ckpt') / 'ckpt', _weights(),
                                 epoch=3)


@pytest.fixture(scope='module')
def scenes(clean_human_model_files):
  return synthetic.render_scenes(clean_human_model_files, 3, seed=1, image_shape=(240, 320))


@pytest.fixture(scope='module')
def single(checkpoint, scenes, clean_human_model_files, tmp_path_factory):
  """One picture through the command line; returns (input path, box, output folder)."""
  root = tmp_path_factory.mktemp('demo_single')
  image_path = root / 'person.png'
  Image.fromarray(scenes[0].image).save(image_path)
  out = root / 'out'
  box = _box(scenes[0])
  assert demo.main(['--checkpoint', str(checkpoint), '--image', str(image_path),
                    '--bbox', *map(str, box), '--out', str(out),
                    '--human-model-path', str(clean_human_model_files)]) == 0
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


def test_single_picture_writes_everything(single, scenes):
  image_path, box, out = single
  files = {p.name for p in out.iterdir()}
  assert files == {'person_overlay.png', 'person_crop.png', 'person.obj', 'person_smplx.json',
                   'person_smplx.npz'}

  vertices, faces = _read_obj(out / 'person.obj')
  assert vertices.shape == (NUM_VERTS, 3) and faces.shape == (NUM_FACES, 3)
  assert faces.min() == 0 and faces.max() == NUM_VERTS - 1
  assert np.all(np.isfinite(vertices)) and np.all(vertices[:, 2] > 0)

  params = json.loads((out / 'person_smplx.json').read_text())
  assert set(params) == set(SIZES)
  assert {k: len(v) for k, v in params.items()} == SIZES
  with np.load(out / 'person_smplx.npz') as npz:
    assert set(npz.files) == set(SIZES)
    for key in SIZES:
      np.testing.assert_allclose(npz[key].reshape(-1), params[key], rtol=1e-6)
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
  crop_overlay = np.asarray(Image.open(out / 'person_crop.png'))
  crop_silhouette = _silhouette(vertices, faces, params['crop_focal'], params['crop_princpt'],
                                crop.shape[:2])
  _check_overlay(crop_overlay, crop, crop_silhouette)


def test_folder_batches_and_skips_unboxed(single, checkpoint, scenes, clean_human_model_files,
                                          tmp_path):
  folder = tmp_path / 'pictures'
  folder.mkdir()
  for i, name in enumerate(('a.png', 'b.jpg', 'c.png')):
    Image.fromarray(scenes[i].image).save(folder / name, quality=95)
  (folder / 'notes.txt').write_text('not a picture')
  boxes = {'a.png': _box(scenes[0]), 'b.jpg': _box(scenes[1]), 'c.png': None}
  (tmp_path / 'boxes.json').write_text(json.dumps(boxes))
  out = tmp_path / 'out'
  assert demo.main(['--checkpoint', str(checkpoint), '--images', str(folder),
                    '--bboxes', str(tmp_path / 'boxes.json'), '--out', str(out),
                    '--batch-size', '2', '--human-model-path', str(clean_human_model_files)]) == 0
  expected = {f'{stem}{suffix}' for stem in ('a', 'b') for suffix in (
      '_overlay.png', '_crop.png', '.obj', '_smplx.json', '_smplx.npz')}
  assert {p.name for p in out.iterdir()} == expected
  # a.png is the single test's picture: batched with another picture, same result.
  ours = json.loads((out / 'a_smplx.json').read_text())
  alone = json.loads((single[2] / 'person_smplx.json').read_text())
  for key in SIZES:
    np.testing.assert_allclose(ours[key], alone[key], atol=1e-4, err_msg=key)
  # Each picture got its own camera.
  assert json.loads((out / 'b_smplx.json').read_text())['bbox'] != ours['bbox']


def _write_video(path, frames):
  """A 3-frame MJPG AVI: OpenCV's own encoder, there in every build."""
  height, width = frames[0].shape[:2]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10.0, (width, height))
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


def _frame_files(folder, index):
  return {f'frame_{index:06d}{s}' for s in ('_crop.png', '.obj', '_smplx.json', '_smplx.npz')}


def test_video(checkpoint, scenes, clean_human_model_files, tmp_path):
  video = tmp_path / 'clip.avi'
  decoded = _write_video(video, [s.image for s in scenes])
  out = tmp_path / 'out'
  assert demo.main(['--checkpoint', str(checkpoint), '--video', str(video),
                    '--bbox', *map(str, _box(scenes[0])), '--out', str(out),
                    '--batch-size', '2', '--human-model-path', str(clean_human_model_files)]) == 0
  frames_dir = out / 'clip'
  names = {p.name for p in frames_dir.iterdir()}
  per_frame = set().union(*(_frame_files(frames_dir, i) for i in range(3)))
  mp4 = out / 'clip_overlay.mp4'
  if mp4.exists():  # this OpenCV writes mp4v
    assert names == per_frame
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
  else:  # the fallback: PNG frames
    assert names == per_frame | {f'frame_{i:06d}_overlay.png' for i in range(3)}


def test_video_falls_back_to_png_frames(checkpoint, scenes, clean_human_model_files, tmp_path,
                                        monkeypatch, capsys):
  video = tmp_path / 'clip.avi'
  decoded = _write_video(video, [s.image for s in scenes])

  class NoCodec:
    def __init__(self, *args):
      pass

    def isOpened(self):
      return False

    def release(self):
      pass

  monkeypatch.setattr(demo.cv2, 'VideoWriter', NoCodec)
  # Per-frame boxes: frame 1 has none and passes through unchanged.
  boxes = [_box(scenes[0]), None, _box(scenes[2])]
  (tmp_path / 'boxes.json').write_text(json.dumps(boxes))
  out = tmp_path / 'out'
  assert demo.main(['--checkpoint', str(checkpoint), '--video', str(video),
                    '--bboxes', str(tmp_path / 'boxes.json'), '--out', str(out),
                    '--batch-size', '2', '--human-model-path', str(clean_human_model_files)]) == 0
  assert 'writing PNG frames' in capsys.readouterr().out
  frames_dir = out / 'clip'
  assert not (out / 'clip_overlay.mp4').exists()
  assert {p.name for p in frames_dir.iterdir()} == (
      _frame_files(frames_dir, 0) | _frame_files(frames_dir, 2)
      | {f'frame_{i:06d}_overlay.png' for i in range(3)})
  overlays = [np.asarray(Image.open(frames_dir / f'frame_{i:06d}_overlay.png')) for i in range(3)]
  assert np.array_equal(overlays[1], decoded[1])
  for i in (0, 2):
    params = json.loads((frames_dir / f'frame_{i:06d}_smplx.json').read_text())
    vertices, faces = _read_obj(frames_dir / f'frame_{i:06d}.obj')
    silhouette = _silhouette(vertices, faces, params['focal'], params['princpt'],
                             decoded[i].shape[:2])
    _check_overlay(overlays[i], decoded[i], silhouette)


@pytest.mark.parametrize('case', ['missing', 'not_image', 'zero_width', 'outside', 'video',
                                  'checkpoint'])
def test_bad_input_names_the_file(case, checkpoint, scenes, tmp_path, capsys):
  picture = tmp_path / 'person.png'
  Image.fromarray(scenes[0].image).save(picture)
  box = ['10', '10', '50', '80']
  if case == 'checkpoint':
    source, named, checkpoint = ['--image', str(picture)], 'no_ckpt', tmp_path / 'no_ckpt'
  elif case == 'missing':
    source, named = ['--image', str(tmp_path / 'nobody.png')], 'nobody.png'
  elif case == 'not_image':
    (tmp_path / 'fake.png').write_bytes(b'not a png')
    source, named = ['--image', str(tmp_path / 'fake.png')], 'fake.png'
  elif case == 'zero_width':
    source, named, box = ['--image', str(picture)], 'degenerate box', ['10', '10', '0', '80']
  elif case == 'outside':
    source, named, box = ['--image', str(picture)], 'person.png', ['400', '300', '50', '80']
  else:
    (tmp_path / 'clip.mp4').write_bytes(b'not a video')
    source, named = ['--video', str(tmp_path / 'clip.mp4')], 'clip.mp4'
  assert demo.main(['--checkpoint', str(checkpoint), *source, '--bbox', *box,
                    '--out', str(tmp_path / 'out')]) == 1
  error = capsys.readouterr().err
  assert 'error:' in error and named in error, error
