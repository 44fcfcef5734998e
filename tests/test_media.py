"""Input hygiene: EXIF orientation, greyscale, alpha, 16-bit, odd formats, broken files, videos."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from h4w_jax.inference import media


def _picture(height=6, width=10):
  """A small picture with no symmetry, so any flip or turn shows."""
  rng = np.random.default_rng(0)
  return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_as_a_viewer_shows_it(tmp_path, orientation):
  """Reference: Pillow's ImageOps.exif_transpose on a lossless PNG with an eXIf chunk."""
  path = tmp_path / 'turned.png'
  exif = Image.Exif()
  exif[media.EXIF_ORIENTATION] = orientation
  Image.fromarray(_picture()).save(path, exif=exif)
  expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert('RGB'))
  got = media.read_image(path)
  assert got.shape == expected.shape and np.array_equal(got, expected)


def test_exif_orientation_of_a_jpeg_matches_cv2_imread(tmp_path):
  """upstream's demo reads with cv2.imread, which applies the JPEG's EXIF orientation."""
  path = tmp_path / 'phone.jpg'
  exif = Image.Exif()
  exif[media.EXIF_ORIENTATION] = 6
  Image.fromarray(_picture(48, 80)).save(path, exif=exif, quality=95)
  expected = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]
  got = media.read_image(path)
  assert got.shape == (80, 48, 3) and np.array_equal(got, expected)


def test_grey_alpha_and_16_bit_pictures(tmp_path):
  grey = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
  Image.fromarray(grey).save(tmp_path / 'grey.png')
  assert np.array_equal(media.read_image(tmp_path / 'grey.png'), np.repeat(grey[..., None], 3, 2))

  deep = (np.arange(60, dtype=np.uint16).reshape(6, 10) * 1000 + 17)
  rgb16 = np.stack([deep, 65535 - deep, deep // 2], -1)
  cv2.imwrite(str(tmp_path / 'deep.png'), rgb16[:, :, ::-1])
  expected = np.rint(rgb16 / 257.0).astype(np.uint8)
  assert np.array_equal(media.read_image(tmp_path / 'deep.png'), expected)

  rgba = np.zeros((2, 3, 4), np.uint8)
  rgba[..., :3] = [200, 100, 50]
  rgba[..., 3] = [[0, 255, 128], [64, 255, 0]]
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'alpha.png')
  got = media.read_image(tmp_path / 'alpha.png').astype(int)
  a = rgba[..., 3:].astype(float) / 255
  expected = np.rint(np.array([200, 100, 50]) * a + 255 * (1 - a)).astype(int)
  assert np.abs(got - expected).max() <= 1          # over white; float rounding at most 1
  assert got[0, 0].tolist() == [255, 255, 255] and got[0, 1].tolist() == [200, 100, 50]

  la = np.stack([grey, np.full_like(grey, 255)], -1)
  Image.fromarray(la, 'LA').save(tmp_path / 'grey_alpha.png')
  assert np.array_equal(media.read_image(tmp_path / 'grey_alpha.png'),
                        np.repeat(grey[..., None], 3, 2))


def test_palette_gif(tmp_path):
  Image.fromarray(_picture()).convert('P').save(tmp_path / 'anim.gif')
  expected = np.asarray(Image.open(tmp_path / 'anim.gif').convert('RGB'))
  assert np.array_equal(media.read_image(tmp_path / 'anim.gif'), expected)


@pytest.mark.parametrize('case', ['missing', 'empty', 'truncated', 'text', 'folder', 'tiny'])
def test_unreadable_pictures_are_refused_by_name(tmp_path, case):
  path = tmp_path / f'{case}.jpg'
  if case == 'empty':
    path.write_bytes(b'')
  elif case == 'truncated':
    buf = io.BytesIO()
    Image.fromarray(_picture(64, 64)).save(buf, 'JPEG')
    path.write_bytes(buf.getvalue()[:40])
  elif case == 'text':
    path.write_text('not a picture')
  elif case == 'folder':
    path.mkdir()
  elif case == 'tiny':
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(path := tmp_path / 'tiny.png')
  with pytest.raises(media.InputError, match=path.name):
    media.read_image(path)


def _write_video(path, frames, fps=10.0):
  height, width = frames[0].shape[:2]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, (width, height))
  assert writer.isOpened()
  for frame in frames:
    writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
  writer.release()


def test_video_through_opencv_and_pyav(tmp_path):
  frames = [np.full((48, 64, 3), (40 * i, 255 - 40 * i, 128), np.uint8) for i in range(4)]
  path = tmp_path / 'clip.avi'
  _write_video(path, frames)
  by_cv = media.VideoReader(path, backend='opencv')
  assert by_cv.backend == 'opencv' and by_cv.fps == pytest.approx(10.0)
  cv_frames = list(by_cv)
  by_av = media.VideoReader(path, backend='pyav')
  assert by_av.backend == 'pyav' and by_av.fps == pytest.approx(10.0)
  av_frames = list(by_av)
  assert len(cv_frames) == len(av_frames) == 4
  for a, b, f in zip(cv_frames, av_frames, frames):
    assert a.shape == b.shape == f.shape and a.dtype == b.dtype == np.uint8
    # Two FFmpeg builds decode the same MJPG: equal up to a grey level or two.
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 3
    assert np.abs(a.astype(int) - f.astype(int)).mean() < 3   # colours kept, RGB order


def test_bad_videos_are_refused_by_name(tmp_path):
  (tmp_path / 'clip.mp4').write_bytes(b'not a video')
  with pytest.raises(media.InputError, match=r'clip\.mp4: not a video.*OpenCV.*PyAV'):
    media.VideoReader(tmp_path / 'clip.mp4')
  with pytest.raises(media.InputError, match='none.mp4: no such video file'):
    media.VideoReader(tmp_path / 'none.mp4')
