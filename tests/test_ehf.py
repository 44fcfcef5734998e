"""EHF reader and PLY parser on a synthetic mini dataset; parity with upstream's EHF class.

`tests/data/pipeline_goldens_ehf.npz` holds upstream's own EHF test-split
outputs on the same mini dataset (tests/data/README.md); upstream read the GT
meshes with plyfile.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import crop_parity
from h4w_datasets import ehf
from h4w_datasets import example as ex
from h4w_datasets import synthetic
from h4w_datasets import transforms as tf
from h4w_jax.common import dataset_constants
from h4w_jax.common import joint_sets as js

GOLDENS = Path(__file__).parent / 'data' / 'pipeline_goldens_ehf.npz'


@pytest.fixture(scope='module')
def goldens():
  with np.load(GOLDENS) as g:
    return dict(g)


@pytest.fixture(scope='module')
def root(tmp_path_factory, clean_human_model_files, goldens):
  path = tmp_path_factory.mktemp('ehf_mini')
  ehf.write_synthetic(path, clean_human_model_files, num=int(goldens['num']),
                      seed=int(goldens['seed']))
  return path


@pytest.fixture(scope='module')
def reader(root):
  return ehf.EHF(root)


def test_counts_records_and_split(root, reader, goldens):
  assert len(reader) == int(goldens['datalist/len']) == 8
  assert reader.num_dropped == {'degenerate_bbox': 1}
  for i in range(len(reader)):
    record = reader[i]
    ex.check_record(record, ehf.INFO.num_joints, f'EHF {i}')
    assert record['smplx_mesh_cam'].shape == (10475, 3)
    assert record['smplx_mesh_cam'].dtype == np.float32
    assert np.all(record['joint_valid'] == 0) and record['smplx_valid'] == 0
  np.testing.assert_allclose(np.stack([reader[i]['bbox'] for i in range(len(reader))]),
                             goldens['datalist/bbox'], atol=1e-4)
  with pytest.raises(ValueError, match="only the 'test' split"):
    ehf.EHF(root, 'train')


def test_info_and_camera_rotation(reader, goldens):
  assert ehf.INFO.hand_face_box_x_scale == 1  # upstream's quirk: x scaled by hm[1] = 8
  np.testing.assert_allclose(dataset_constants.EHF_GT_ROTATION, goldens['cam_R'], atol=1e-12)
  np.testing.assert_allclose(reader[0]['cam_R'], goldens['cam_R'], atol=1e-7)


def test_mesh_and_boxes_agree_with_the_scenes(reader, clean_human_model_files, goldens):
  scenes = synthetic.render_scenes(clean_human_model_files, int(goldens['num']),
                                   seed=int(goldens['seed']))
  for k, scene in enumerate(scenes):
    record = reader[k]
    # The PLY holds the mesh in EHF's world frame; R (applied at evaluation) maps it back.
    cam = record['smplx_mesh_cam'].astype(np.float64) @ dataset_constants.EHF_GT_ROTATION.T
    np.testing.assert_allclose(cam, scene.vertices_cam, atol=2e-6)
    joints = scene.joints_img
    for part, (start, stop) in (('lhand', (25, 45)), ('rhand', (45, 65)), ('face', (65, 137))):
      uv = joints[js.JOINT_IDX[start:stop]]
      x0, y0, x1, y1 = record[f'{part}_bbox']
      assert np.all((uv >= [x0, y0]) & (uv <= [x1, y1])), (k, part)
      assert record[f'{part}_bbox_valid'] == 1


def test_pipeline_matches_upstream(reader, goldens):
  examples = [tf.test_example(reader[int(i)], ehf.INFO) for i in goldens['test/index']]
  batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
  # uint8 crop vs upstream's float crop: tests/crop_parity.py (rounding, float16, OpenCV).
  crop_parity.assert_crop_matches(batch['img'].astype(np.float64) / 255, goldens, 'test',
                                  GOLDENS.name, channels_first=True)
  np.testing.assert_allclose(batch['bb2img_trans'], goldens['test/meta/bb2img_trans'], atol=1e-5)
  # Upstream read index 1 (ascii PLY) and 0, 4 (binary) with plyfile.
  np.testing.assert_allclose(batch['smplx_mesh_cam'], goldens['test/targets/smplx_mesh_cam'],
                             rtol=1e-7, atol=1e-7)
  for part in ('lhand', 'rhand', 'face'):
    for what in ('center', 'size'):
      key = f'{part}_bbox_{what}'
      np.testing.assert_allclose(batch[key], goldens[f'test/targets/{key}'], atol=1e-5,
                                 err_msg=key)
    np.testing.assert_array_equal(batch[f'{part}_bbox_valid'],
                                  goldens[f'test/meta/{part}_bbox_valid'])


def test_corrupted_annotation_names_file_and_id(root, tmp_path):
  new = tmp_path / 'EHF' / 'data'
  shutil.copytree(Path(root) / 'EHF' / 'data', new)
  annot = json.loads((new / 'EHF.json').read_text())
  del annot['annotations'][2]['face_bbox']
  (new / 'EHF.json').write_text(json.dumps(annot))
  with pytest.raises(ValueError, match=r"EHF.json: annotation 3 \(image 3\): missing 'face_bbox'"):
    ehf.EHF(tmp_path)
  annot['annotations'][2]['face_bbox'] = [1.0, 2.0, 3.0]
  (new / 'EHF.json').write_text(json.dumps(annot))
  with pytest.raises(ValueError, match=r"annotation 3 \(image 3\): 'face_bbox' must be 4"):
    ehf.EHF(tmp_path)
  (new / '03_align.ply').unlink()
  del annot['annotations'][2]
  (new / 'EHF.json').write_text(json.dumps(annot))
  assert len(ehf.EHF(tmp_path)) == 7
  annot['annotations'].append(dict(annot['annotations'][0], id=30, image_id=3))
  (new / 'EHF.json').write_text(json.dumps(annot))
  with pytest.raises(ValueError, match=r'annotation 30 \(image 3\): GT mesh .*03_align.ply does '
                                       r'not exist'):
    ehf.EHF(tmp_path)


# ----------------------------------------------------------------------------- PLY reader

VERTS = np.array([[0.5, -1.25, 2.0], [1e-3, 3.0, -4.5], [7.0, 8.0, 9.0]], np.float32)


def _ply(path, fmt, header_lines, body: bytes) -> Path:
  header = '\n'.join(['ply', f'format {fmt} 1.0', *header_lines, 'end_header']) + '\n'
  path.write_bytes(header.encode('ascii') + body)
  return path


def test_ply_round_trip_ascii_and_binary(tmp_path):
  faces = np.array([[0, 1, 2]])
  for binary in (True, False):
    path = tmp_path / f'm{binary}.ply'
    ehf.write_ply(path, VERTS, faces, binary=binary)
    np.testing.assert_array_equal(ehf.read_ply_vertices(path), VERTS)


def test_ply_elements_before_vertex_and_extra_properties(tmp_path):
  # A face element (with a list property) before the vertices, extra double/uchar properties.
  header = ['comment x', 'element face 2', 'property list uchar int vertex_indices',
            'element vertex 3', 'property double nx', 'property float x', 'property float y',
            'property uchar red', 'property float z']
  table = np.zeros(3, np.dtype([('nx', '<f8'), ('x', '<f4'), ('y', '<f4'), ('red', 'u1'),
                                ('z', '<f4')]))
  table['x'], table['y'], table['z'] = VERTS.T
  faces = b''.join(np.uint8(n).tobytes() + np.arange(n, dtype='<i4').tobytes() for n in (3, 4))
  path = _ply(tmp_path / 'b.ply', 'binary_little_endian', header, faces + table.tobytes())
  np.testing.assert_array_equal(ehf.read_ply_vertices(path), VERTS)
  big = table.astype(table.dtype.newbyteorder('>'))
  faces_be = b''.join(np.uint8(n).tobytes() + np.arange(n, dtype='>i4').tobytes() for n in (3, 4))
  path = _ply(tmp_path / 'be.ply', 'binary_big_endian', header, faces_be + big.tobytes())
  np.testing.assert_array_equal(ehf.read_ply_vertices(path), VERTS)
  rows = '3 0 1 2\n4 0 1 2 3\n' + ''.join(f'0.0 {x!r} {y!r} 7 {z!r}\n' for x, y, z in
                                         VERTS.tolist())
  path = _ply(tmp_path / 'a.ply', 'ascii', header, rows.encode('ascii'))
  np.testing.assert_array_equal(ehf.read_ply_vertices(path), VERTS)


@pytest.mark.parametrize('case, match', [
    ('not_ply', 'not a PLY file'),
    ('no_end', "no 'end_header'"),
    ('bad_format', 'unsupported PLY format'),
    ('no_vertex', "no 'vertex' element"),
    ('no_z', "no 'z' property"),
    ('truncated', 'PLY data truncated'),
    ('short_ascii', 'vertex lines, expected 3'),
    ('bad_type', "unknown PLY property type 'float128'"),
])
def test_ply_errors_name_the_file(tmp_path, case, match):
  xyz = ['element vertex 3', 'property float x', 'property float y', 'property float z']
  data = VERTS.astype('<f4').tobytes()
  path = tmp_path / f'{case}.ply'
  if case == 'not_ply':
    path.write_bytes(b'obj\n' + data)
  elif case == 'no_end':
    path.write_bytes(b'ply\nformat ascii 1.0\nelement vertex 3\n')
  elif case == 'bad_format':
    _ply(path, 'binary_middle_endian', xyz, data)
  elif case == 'no_vertex':
    _ply(path, 'binary_little_endian', ['element point 3'] + xyz[1:], data)
  elif case == 'no_z':
    _ply(path, 'binary_little_endian', xyz[:3], data)
  elif case == 'truncated':
    _ply(path, 'binary_little_endian', xyz, data[:-4])
  elif case == 'short_ascii':
    _ply(path, 'ascii', xyz, b'1 2 3\n4 5 6\n')
  elif case == 'bad_type':
    _ply(path, 'ascii', xyz[:3] + ['property float128 z'], b'1 2 3\n')
  with pytest.raises(ValueError, match=match) as info:
    ehf.read_ply_vertices(path)
  assert str(path) in str(info.value)


def test_wrong_vertex_count_is_reported(root, tmp_path):
  new = tmp_path / 'EHF' / 'data'
  shutil.copytree(Path(root) / 'EHF' / 'data', new)
  ehf.write_ply(new / '02_align.ply', VERTS)
  reader = ehf.EHF(tmp_path)
  with pytest.raises(ValueError, match=r'02_align.ply: GT mesh has 3 vertices, expected 10475'):
    reader[1]
