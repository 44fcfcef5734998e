"""MSCOCO reader on a synthetic mini dataset: filters, joints, fits, errors, upstream parity.

The end-to-end references (`tests/data/pipeline_goldens_mscoco.npz`) are the
outputs of upstream's own MSCOCO class on the same mini dataset
(tests/data/README.md); our reader + transforms + targets must reproduce them.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import crop_parity
from h4w_datasets import example as ex
from h4w_datasets import mscoco
from h4w_datasets import synthetic
from h4w_datasets import transforms as tf
from h4w_jax.common import joint_sets as js

GOLDENS = Path(__file__).parent / 'data' / 'pipeline_goldens_mscoco.npz'


@pytest.fixture(scope='module')
def goldens():
  with np.load(GOLDENS) as g:
    return dict(g)


@pytest.fixture(scope='module')
def root(tmp_path_factory, clean_human_model_files, goldens):
  path = tmp_path_factory.mktemp('mscoco_mini')
  mscoco.write_synthetic(path, clean_human_model_files, num=int(goldens['num']),
                         seed=int(goldens['seed']))
  return path


@pytest.fixture(scope='module')
def train(root):
  return mscoco.MSCOCO(root, 'train')


@pytest.fixture(scope='module')
def scenes(clean_human_model_files, goldens):
  num = int(goldens['num'])
  return synthetic.render_scenes(clean_human_model_files, num + num // 2,
                                 seed=int(goldens['seed']))


def test_counts_after_filtering(root, train):
  assert len(train) == 8
  assert train.num_dropped == {'crowd': 1, 'no_keypoints': 1, 'degenerate_bbox': 1}
  # upstream's test mode keeps crowd and keypoint-less annotations; only the box filter applies.
  test = mscoco.MSCOCO(root, 'test')
  assert len(test) == 6
  assert test.num_dropped == {'crowd': 0, 'no_keypoints': 0, 'degenerate_bbox': 1}
  assert len(mscoco.MSCOCO(root, 'val')) == 6
  with pytest.raises(ValueError, match='split'):
    mscoco.MSCOCO(root, 'validation')


def test_every_record_is_valid(root, train):
  test = mscoco.MSCOCO(root, 'test')
  for reader in (train, test):
    for i in range(len(reader)):
      record = reader[i]
      ex.check_record(record, mscoco.INFO.num_joints, f'MSCOCO {reader.split} {i}')
      assert Path(record['img_path']).is_file()
  assert np.all(test[0]['joint_valid'] == 0) and test[0]['smplx_valid'] == 0


def test_info_joint_set():
  info = mscoco.INFO
  assert info.num_joints == 134 and not info.is_3d
  to_smplx = info.to_smplx
  missing = [js.JOINT_NAMES[i] for i in np.flatnonzero(to_smplx < 0)]
  assert missing == ['Neck', 'Face_1', 'Face_2', 'Face_3', 'Face_4']  # SPEC_DATA §4.2
  # Every flip pair mirrors names (L_/R_ swap, or the same face pairs as the 137 set).
  names = info.joint_names
  smplx_pairs = {frozenset((js.JOINT_NAMES[a], js.JOINT_NAMES[b])) for a, b in js.FLIP_PAIRS}
  for a, b in info.flip_pairs:
    pair = frozenset((names[a], names[b]))
    if names[a].startswith('Face_'):
      assert pair in smplx_pairs
    else:
      assert names[a].replace('L_', 'R_') == names[b]


def test_joints_and_fits_agree_with_the_scenes(train, scenes):
  names = mscoco.JOINT_NAMES
  for k in range(len(train)):
    record, scene = train[k], scenes[k]
    valid = record['joint_valid'][:, 0] > 0
    for j, name in enumerate(names):
      if not valid[j] or name in ('Pelvis', 'Face_18'):
        continue
      source = name.replace('_Wrist_Hand', '_Wrist')
      expected = scene.joints_img[js.JOINT_IDX[js.JOINT_NAMES.index(source)]]
      np.testing.assert_allclose(record['joint_img'][j, :2], expected, atol=0.006,
                                 err_msg=f'annotation {k} joint {name}')
    assert np.all(record['joint_img'][:, 2] == 0)
    # The body box holds every joint (process_bbox made it larger, aspect 0.75).
    x, y, w, h = record['bbox']
    uv = record['joint_img'][valid, :2]
    assert np.all((uv >= [x, y]) & (uv <= [x + w, y + h]))
    assert w / h == pytest.approx(0.75, rel=1e-5)
    if record['smplx_valid']:
      np.testing.assert_allclose(record['smplx_root_pose'], scene.params['root_pose'], atol=1e-6)
      np.testing.assert_allclose(record['smplx_trans'], scene.params['trans'], atol=1e-6)
      np.testing.assert_allclose(record['cam_focal'], scene.focal, atol=1e-4)
      np.testing.assert_allclose(record['cam_princpt'], scene.princpt, atol=1e-4)
      np.testing.assert_array_equal(record['cam_R'], np.eye(3))
      for part in ('lhand', 'rhand'):
        expected = scene.params[f'{part}_pose'] if record[f'smplx_{part}_valid'] else 0
        np.testing.assert_allclose(record[f'smplx_{part}_pose'], expected, atol=1e-6)


def test_flags_fills_and_boxes(train):
  names = mscoco.JOINT_NAMES
  for k in range(len(train)):
    r = train[k]
    assert r['smplx_valid'] == (k % 4 != 2), k
    assert r['smplx_lhand_valid'] == (k % 4 not in (1, 2)), k
    assert r['smplx_rhand_valid'] == r['smplx_face_valid'] == (k % 4 not in (2, 3)), k
    if not r['smplx_face_valid']:
      assert np.all(r['smplx_jaw_pose'] == 0) and np.all(r['smplx_expr'] == 0)
    assert r['lhand_bbox_valid'] == (k % 4 != 1) and r['rhand_bbox_valid'] == 1
    if not r['lhand_bbox_valid']:
      assert np.all(r['lhand_bbox'] == 0)
      assert np.all(r['joint_valid'][names.index('L_Thumb_1'):names.index('L_Pinky_4') + 1] == 0)
    # The Face_18 fill: an unlabelled nose tip takes the body nose.
    nose, tip = names.index('Nose'), names.index('Face_18')
    if k % 3 == 0:
      np.testing.assert_array_equal(r['joint_img'][tip], r['joint_img'][nose])
    assert r['joint_valid'][tip, 0] == 1
    # Pelvis = mid-hips, valid only with both hips.
    lhip, rhip, pelvis = names.index('L_Hip'), names.index('R_Hip'), names.index('Pelvis')
    np.testing.assert_allclose(r['joint_img'][pelvis],
                               (r['joint_img'][lhip] + r['joint_img'][rhip]) / 2, atol=1e-4)
    assert r['joint_valid'][pelvis, 0] == (k != 5)
    # Part boxes (xyxy) hold the part's valid joints.
    for part, first, last in (('rhand', 'R_Thumb_1', 'R_Pinky_4'), ('face', 'Face_56', 'Face_55')):
      sl = slice(names.index(first), names.index(last) + 1)
      uv = r['joint_img'][sl][r['joint_valid'][sl, 0] > 0, :2]
      x0, y0, x1, y1 = r[f'{part}_bbox']
      assert np.all((uv >= [x0, y0]) & (uv <= [x1, y1])), (k, part)


def test_reader_matches_upstream_datalist(train, goldens):
  assert len(train) == int(goldens['train_datalist/len'])
  records = [train[i] for i in range(len(train))]
  stack = lambda key: np.stack([r[key] for r in records])
  np.testing.assert_allclose(stack('bbox'), goldens['train_datalist/bbox'], atol=1e-4)
  np.testing.assert_allclose(stack('joint_img'), goldens['train_datalist/joint_img'], atol=1e-4)
  np.testing.assert_array_equal(stack('joint_valid'), goldens['train_datalist/joint_valid'])
  np.testing.assert_array_equal(stack('smplx_valid') > 0, goldens['train_datalist/has_fit'])
  for part in ('lhand', 'rhand', 'face'):
    np.testing.assert_array_equal(stack(f'{part}_bbox_valid') > 0,
                                  goldens[f'train_datalist/{part}_bbox_valid'])
    np.testing.assert_allclose(stack(f'{part}_bbox'), goldens[f'train_datalist/{part}_bbox'],
                               atol=1e-4)


def _img_checks(img_nhwc, goldens, prefix):
  """Our crop (uint8, colour gain applied, /255) against upstream's float crop
  (tests/crop_parity.py: rounding, float16 storage, OpenCV releases)."""
  crop_parity.assert_crop_matches(img_nhwc, goldens, prefix, GOLDENS.name, channels_first=True)

def test_train_pipeline_matches_upstream(train, goldens, clean_human_model_files):
  import jax
  from h4w_jax.models import outputs
  from h4w_jax.models import targets as tg
  examples = []
  for n, i in enumerate(goldens['train/index']):
    aug = tf.AugParams(float(goldens['train/aug_scale'][n]), float(goldens['train/aug_rot'][n]),
                       tuple(float(c) for c in goldens['train/aug_color_scale'][n]),
                       bool(goldens['train/aug_do_flip'][n]))
    examples.append(tf.train_example(train[int(i)], mscoco.INFO, aug))
  batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
  layer = tg.smplx_joints(outputs.smplx_layer(clean_human_model_files))
  inputs, targets, meta = jax.jit(tg.train_batch)(layer, batch)  # eager would take ~20 s
  _img_checks(inputs['img'], goldens, 'train')
  # Tolerances: float32 rounding of the two implementations (measured: masks and
  # joint_img/joint_cam exact, boxes 1e-6, smplx_joint_img 2.6e-5 hm, joint_cam 1e-6 m,
  # pose 2.4e-7 rad).
  atol = {'smplx_joint_img': 2e-4, 'smplx_joint_cam': 2e-5, 'smplx_pose': 2e-5}
  checked = 0
  for key, ref in goldens.items():
    if not key.startswith(('train/targets/', 'train/meta/')):
      continue
    name = key.split('/')[-1]
    ours = np.asarray(targets[name] if '/targets/' in key else meta[name], np.float64)
    np.testing.assert_allclose(ours.reshape(ref.shape), ref, atol=atol.get(name, 1e-5),
                               err_msg=key)
    checked += 1
  assert checked == 24


def test_test_pipeline_matches_upstream(root, goldens):
  test = mscoco.MSCOCO(root, 'test')
  assert len(test) == int(goldens['test_datalist/len'])
  np.testing.assert_allclose(np.stack([test[i]['bbox'] for i in range(len(test))]),
                             goldens['test_datalist/bbox'], atol=1e-4)
  np.testing.assert_array_equal([test[i]['ann_id'] for i in range(len(test))],
                                goldens['test_datalist/ann_id'])
  examples = [tf.test_example(test[int(i)], mscoco.INFO) for i in goldens['test/index']]
  img = np.stack([e['img'] for e in examples]).astype(np.float64) / 255
  _img_checks(img, goldens, 'test')
  np.testing.assert_allclose(np.stack([e['bb2img_trans'] for e in examples]),
                             goldens['test/meta/bb2img_trans'], atol=1e-5)


def _corrupt(root, tmp_path, edit, fits=False) -> Path:
  """A copy of the mini dataset's annotations with `edit` applied to one JSON file."""
  new = tmp_path / 'corrupt'
  shutil.copytree(Path(root) / 'MSCOCO' / 'annotations', new / 'MSCOCO' / 'annotations')
  name = mscoco.FIT_FILE if fits else mscoco.ANNOT_FILES['train']
  path = new / 'MSCOCO' / 'annotations' / name
  data = json.loads(path.read_text())
  edit(data)
  path.write_text(json.dumps(data))
  return new


def test_errors_name_the_file_and_annotation(root, tmp_path):
  def short_keypoints(data):
    data['annotations'][0]['face_kpts'] = data['annotations'][0]['face_kpts'][:-3]
  bad = _corrupt(root, tmp_path / 'a', short_keypoints)
  aid = json.loads((Path(root) / 'MSCOCO' / 'annotations' / mscoco.ANNOT_FILES['train'])
                   .read_text())['annotations'][0]['id']
  with pytest.raises(ValueError, match=rf"coco_wholebody_train_v1.0.json: annotation {aid} "
                                       rf"\(image \d+\): 'face_kpts' has 201 values, expected 204"):
    mscoco.MSCOCO(bad, 'train')

  def no_box(data):
    del data['annotations'][5]['righthand_box']  # the third person (image 3)
  with pytest.raises(ValueError, match=r"annotation \d+ \(image 3\): missing 'righthand_box'"):
    mscoco.MSCOCO(_corrupt(root, tmp_path / 'b', no_box), 'train')

  def bad_image(data):
    data['annotations'][0]['image_id'] = 999
  with pytest.raises(ValueError, match='image_id not in the images list'):
    mscoco.MSCOCO(_corrupt(root, tmp_path / 'c', bad_image), 'train')

  def bad_fit(data):
    key = sorted(data)[0]
    data[key]['smplx_param']['body_pose'] = [0.0] * 60
  with pytest.raises(ValueError, match=r"NeuralAnnot.json: annotation \d+: 'smplx_param.body_pose'"
                                       r" has 60 values, expected 63"):
    mscoco.MSCOCO(_corrupt(root, tmp_path / 'd', bad_fit, fits=True), 'train')
