"""3DPW reader on a synthetic mini dataset: filters, SMPL ground truth, errors, upstream parity.

The references (`tests/data/pipeline_goldens_pw3d.npz`) are the outputs of
upstream's own PW3D class (branch main, test split) on the same mini dataset
(tests/data/README.md): the crop and the gendered SMPL ground-truth mesh.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import crop_parity
import smplx_jax
from h4w_datasets import example as ex
from h4w_datasets import preprocessing as pre
from h4w_datasets import pw3d
from h4w_datasets import transforms as tf

GOLDENS = Path(__file__).parent / 'data' / 'pipeline_goldens_pw3d.npz'


@pytest.fixture(scope='module')
def goldens():
  with np.load(GOLDENS) as g:
    return dict(g)


@pytest.fixture(scope='module')
def root(tmp_path_factory, clean_human_model_files, goldens):
  path = tmp_path_factory.mktemp('pw3d_mini')
  pw3d.write_synthetic(path, clean_human_model_files, num=int(goldens['num']),
                       seed=int(goldens['seed']))
  return path


@pytest.fixture(scope='module')
def test_set(root):
  return pw3d.PW3D(root, 'test')


@pytest.fixture(scope='module')
def layers(clean_human_model_files):
  return tuple(smplx_jax.create(clean_human_model_files, 'smpl', gender=g) for g in ex.GENDERS)


def test_counts_and_records(root):
  for split in pw3d.SPLITS:
    reader = pw3d.PW3D(root, split)
    assert len(reader) == 8
    assert reader.num_dropped == {'bbox': 1}
    for i in range(len(reader)):
      record = reader[i]
      ex.check_record(record, pw3d.INFO.num_joints, f'PW3D {split} {i}')
      assert Path(record['img_path']).is_file()
      assert record['smplx_valid'] == 0 and record['joint_valid'].sum() == 0
      assert record['smpl_pose'].shape == (72,) and record['smpl_gender'].dtype == np.int32
    # Genders as annotated; the last annotation has none: neutral (upstream's default).
    assert [int(reader[i]['smpl_gender']) for i in range(8)] == [1, 2, 1, 2, 1, 2, 1, 0]
  with pytest.raises(ValueError, match='split'):
    pw3d.PW3D(root, 'val')
  assert np.load(Path(root) / pw3d.H36M_REGRESSOR).shape == (17, 6890)


def test_info():
  assert pw3d.INFO.num_joints == 24
  names = [pw3d.INFO.joint_names[i] for i in pw3d.INFO.to_smplx if i >= 0]
  assert len(names) == 14 and 'Pelvis' in names and 'Neck' in names


def test_fits_project_onto_the_annotated_boxes(test_set, layers):
  """SMPL joints of the record's fit, through its camera, give back its box (<= 0.05 px)."""
  for i in range(len(test_set)):
    r = test_set[i]
    layer = layers[int(r['smpl_gender'])]
    out = smplx_jax.forward(layer, betas=r['smpl_shape'][None],
                            global_orient=r['smpl_pose'][None, :3],
                            body_pose=r['smpl_pose'][None, 3:], transl=r['smpl_trans'][None])
    joints = np.asarray(layer.J_regressor, np.float64) @ np.asarray(out.vertices[0], np.float64)
    xy = joints[:, :2] / joints[:, 2:] * r['cam_focal'] + r['cam_princpt']
    box = pre.process_bbox(pre.get_bbox(xy, np.ones(len(xy))), r['img_shape'][1],
                           r['img_shape'][0])
    np.testing.assert_allclose(box, r['bbox'], atol=0.05)


def test_test_split_matches_upstream(test_set, goldens, layers):
  import jax
  from h4w_jax.models import targets as tg
  records = [test_set[i] for i in range(len(test_set))]
  np.testing.assert_allclose(np.stack([r['bbox'] for r in records]),
                             goldens['datalist/test/bbox'], atol=1e-4)
  np.testing.assert_array_equal([r['ann_id'] for r in records], goldens['datalist/test/ann_id'])
  chosen = [records[int(i)] for i in goldens['test/index']]
  # Crops: uint8 rounding (tests/crop_parity.py); means to 1e-4.
  img = np.stack([tf.test_example(r, pw3d.INFO)['img'] for r in chosen]).astype(np.float64) / 255
  crop_parity.assert_crop_matches(img, goldens, 'test', GOLDENS.name, channels_first=False)
  # Gendered GT mesh (upstream's SMPL layer of the annotation's gender; neutral without one).
  params = {k: np.stack([r[k] for r in chosen]) for k in ('smpl_pose', 'smpl_shape', 'smpl_trans',
                                                           'smpl_gender')}
  mesh = np.asarray(jax.jit(tg.gt_mesh)(layers, params), np.float64)
  np.testing.assert_allclose(mesh[:, ::3], goldens['test/targets/smpl_mesh_cam_sub'], atol=2e-5)
  np.testing.assert_allclose(mesh.mean(1), goldens['test/targets/smpl_mesh_cam_sum'] / 6890,
                             atol=2e-6)
  # The gender matters: the neutral layer is far off for the gendered people.
  neutral = np.asarray(jax.jit(tg.gt_mesh)(layers[0], params), np.float64)
  assert np.abs(neutral[:2, ::3] - goldens['test/targets/smpl_mesh_cam_sub'][:2]).max() > 1e-3


def _corrupt(root, tmp_path, edit) -> Path:
  new = tmp_path / 'corrupt'
  path = new / 'PW3D' / 'data' / '3DPW_test.json'
  path.parent.mkdir(parents=True)
  data = json.loads((Path(root) / 'PW3D' / 'data' / '3DPW_test.json').read_text())
  edit(data)
  path.write_text(json.dumps(data))
  return new


def test_errors_name_the_file_and_annotation(root, tmp_path):
  def short_pose(data):
    data['annotations'][2]['smpl_param']['pose'] = data['annotations'][2]['smpl_param']['pose'][:71]
  with pytest.raises(ValueError, match=r"3DPW_test.json annotation id \d+: 'smpl_param.pose' must "
                                       r"be 72 finite numbers, got shape \(71,\)"):
    pw3d.PW3D(_corrupt(root, tmp_path / 'a', short_pose), 'test')

  def bad_gender(data):
    data['annotations'][0]['smpl_param']['gender'] = 'm'
  with pytest.raises(ValueError, match=r"annotation id \d+: smpl_param.gender must be one of"):
    pw3d.PW3D(_corrupt(root, tmp_path / 'b', bad_gender), 'test')

  def no_camera(data):
    del data['images'][1]['cam_param']
  with pytest.raises(ValueError, match=r"3DPW_test.json image id \d+: missing key 'cam_param'"):
    pw3d.PW3D(_corrupt(root, tmp_path / 'c', no_camera), 'test')
