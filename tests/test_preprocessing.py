"""Boxes, crops, joints and hand/face boxes against upstream's own preprocessing (goldens).

tests/data/README.md says how preprocess_goldens.npz was made (upstream main,
OpenCV 5.0 on both sides). Tolerances, with what was measured when written:
  boxes, affine matrices and joints: exact or 1 ulp (float32; measured 0 / <=4e-7)
  float32 crops: 0.02 grey levels (OpenCV 5 samples exactly, but the flip is
    folded into the warp matrix instead of mirroring the image, which moves the
    sampling positions by float rounding; measured: 0 without flip or without
    rotation, <= 0.009 with both; the per-channel sums agree to 1e-6)
  uint8 crops (the default): 0.5 grey levels before the colour gain (rounding)
"""

from pathlib import Path

import numpy as np
import pytest

from h4w_datasets import db as dbm
from h4w_datasets import preprocessing as pre
from h4w_datasets import transforms as tf

G = np.load(Path(__file__).parent / 'data' / 'preprocess_goldens.npz')


def _box(row):
  values = G['bbox_in'][row]
  return [int(v) for v in values] if G['bbox_in_is_int'][row] else [float(v) for v in values]


@pytest.mark.parametrize('row', range(len(G['bbox_in'])))
def test_sanitize_and_process_bbox(row):
  w, h = (int(v) for v in G['bbox_img_wh'][row])
  sanitized = pre.sanitize_bbox(_box(row), w, h)
  assert (sanitized is not None) == G['sanitize_valid'][row]
  if sanitized is not None:
    np.testing.assert_array_equal(sanitized, G['sanitize_out'][row])
    assert (sanitized.dtype.kind == 'i') == G['sanitize_out_is_int'][row]
  processed = pre.process_bbox(_box(row), w, h)
  assert (processed is not None) == G['process_valid'][row]
  if processed is not None:
    assert processed.dtype == np.float32
    np.testing.assert_array_equal(processed, G['process_out'][row])


@pytest.mark.parametrize('case', range(6))
def test_crop_matches_generate_patch_image(case):
  image = G['image'].astype(np.float32)
  patch, trans, inv_trans = pre.crop(image, G['gpi_bbox'][case], float(G['gpi_scale'][case]),
                                     float(G['gpi_rot'][case]), bool(G['gpi_flip'][case]))
  np.testing.assert_allclose(trans, G['gpi_trans'][case], rtol=1e-6, atol=1e-4)
  np.testing.assert_allclose(inv_trans, G['gpi_inv_trans'][case], rtol=1e-6, atol=1e-4)
  assert patch.shape == (512, 384, 3) and patch.dtype == np.float32
  np.testing.assert_allclose(patch[::4, ::4], G['gpi_crop_sub'][case], atol=0.02)
  np.testing.assert_allclose(patch.astype(np.float64).sum((0, 1)), G['gpi_crop_sum'][case],
                             rtol=1e-6)


@pytest.mark.parametrize('case', range(3))
def test_augmentation_with_fixed_parameters(case):
  aug = tf.AugParams(float(G['aug_scale'][case]), float(G['aug_rot_in'][case]),
                     tuple(G['aug_color_scale'][case]), bool(G['aug_flip_in'][case]))
  for dtype, tol in ((np.float32, 0.02 * 1.2), (np.uint8, 0.5 * 1.2 + 0.02)):
    patch, trans, _ = pre.crop(G['image'].astype(dtype), G['aug_bbox'], aug.scale, aug.rot,
                               aug.do_flip)
    np.testing.assert_allclose(trans, G['aug_trans'][case], rtol=1e-6, atol=1e-4)
    # The colour gain as the device applies it (h4w_jax.models.targets), in numpy here.
    jittered = np.clip(patch.astype(np.float32) * np.float32(aug.color_scale), 0, 255)
    np.testing.assert_allclose(jittered[::4, ::4], G['aug_crop_sub'][case], atol=tol)


def _info(prefix):
  names = tuple(str(n) for n in G[f'{prefix}_src_joints_name'])
  pairs = tuple(tuple(int(v) for v in p) for p in G[f'{prefix}_flip_pairs'])
  return dbm.DatasetInfo(name=prefix, joint_names=names, flip_pairs=pairs)


@pytest.mark.parametrize('prefix', ['pdc_h36m', 'pdc_coco'])
def test_process_db_coord(prefix):
  info = _info(prefix)
  assert tuple(str(n) for n in G['smplx_joints_name']) == dbm.js.JOINT_NAMES
  for case in range(4):
    aug = tf.AugParams(rot=float(G[f'{prefix}_rot'][case]), do_flip=bool(G[f'{prefix}_do_flip'][case]))
    out = tf.process_db_coord(G[f'{prefix}_joint_img'][case], G[f'{prefix}_joint_cam'][case],
                              G[f'{prefix}_joint_valid'][case], aug, G[f'{prefix}_img_shape'],
                              G[f'{prefix}_img2bb_trans'][case], info)
    for name, value in zip(('joint_img', 'joint_cam', 'joint_valid', 'joint_trunc'), out):
      want = G[f'{prefix}_out_{name}'][case]
      assert value.dtype == np.float32 and value.shape == want.shape
      np.testing.assert_allclose(value, want, rtol=1e-6, atol=1e-6, err_msg=f'{name} {case}')


@pytest.mark.parametrize('prefix,x_scale,dummy', [('hf_coco', 2, ((0, 0), (1, 1))),
                                                  ('hf_ehf', 1, ((0, 0), (0, 0)))])
def test_hand_face_boxes(prefix, x_scale, dummy):
  for case in range(9):
    box = G[f'{prefix}_bbox_in'][case].copy()
    aug = tf.AugParams(scale=float(G[f'{prefix}_scale'][case]), rot=float(G[f'{prefix}_rot'][case]),
                       do_flip=bool(G[f'{prefix}_do_flip'][case]))
    valid = not G[f'{prefix}_is_none'][case]
    corners = tf.process_hand_face_bbox(box, valid, aug, G[f'{prefix}_img_shape'][case],
                                        G[f'{prefix}_img2bb_trans'][case], x_scale, dummy)
    np.testing.assert_allclose(corners, G[f'{prefix}_out'][case], rtol=1e-6, atol=1e-5)
    assert float(valid) == G[f'{prefix}_valid'][case]
    if valid:  # never flipped in place (upstream's view-mutation quirk is not kept)
      np.testing.assert_array_equal(box, G[f'{prefix}_bbox_in'][case])


E = np.load(Path(__file__).parent / 'data' / 'bbox_edge_goldens.npz')


def _edge_box(row):
  values, kind = E['box_in'][row], str(E['box_kind'][row])
  if kind == 'f32':
    return np.asarray(values, np.float32)
  if kind == 'int':
    return [int(v) for v in values]
  if kind == 'mixed':   # Python ints where the value is whole, as JSON gives them
    return [int(v) if float(v).is_integer() else float(v) for v in values]
  return [float(v) for v in values]


@pytest.mark.parametrize('row', range(len(E['box_in'])))
def test_box_edges_match_upstream(row):
  """Float boxes that cross the left/top edge and are clipped at both far edges stay float
  (Python's max(0, -20.0) is the int 0, which made `[-20, -30, 700, 600]` in 640x480 come out
  as [-79, -293, 798, 1065]; upstream: [-79.875, -293, 798.75, 1065]). Exact equality: both
  sides do the same float64 arithmetic and the same float32 cast."""
  w, h = (int(v) for v in E['img_wh'][row])
  sanitized = pre.sanitize_bbox(_edge_box(row), w, h)
  assert (sanitized is not None) == E['sanitize_valid'][row]
  if sanitized is not None:
    np.testing.assert_array_equal(sanitized, E['sanitize_out'][row])
    assert (sanitized.dtype.kind == 'i') == E['sanitize_is_int'][row]
  processed = pre.process_bbox(_edge_box(row), w, h)
  assert (processed is not None) == E['process_valid'][row]
  if processed is not None:
    np.testing.assert_array_equal(processed, E['process_out'][row])


@pytest.mark.parametrize('bad', [None, [1, 2, 3], [1, 2, 3, 'x'], [[1, 2], [3, 4]],
                                 [True, False, True, True], {'x': 1}])
def test_a_box_that_is_not_four_numbers_is_named(bad):
  with pytest.raises(pre.BoxError, match=r'^train\.json annotation 7 bbox: a box must be 4'):
    pre.process_bbox(bad, 640, 480, where='train.json annotation 7 bbox')
