"""Key functions with and without `jit` (chex.variants), each against a reference no one here wrote.

XLA may fuse multiply-adds under jit, so a function can agree with upstream
eagerly and drift under jit (or the reverse); each variant must stay within the
tolerance its parity test states: geometry and roi_align against the PyTorch
goldens of tests/data/geometry_goldens.npz, the SMPL-X forward against PyPI
`smplx`, the similarity alignment of the metrics against a known transform.
"""

import functools
from pathlib import Path

import chex
import numpy as np
import pytest
import smplx
import torch

import smplx_jax
from h4w_jax.evaluation import metrics
from h4w_jax.models import geometry, roi_align as ra

GOLD = dict(np.load(Path(__file__).parent / 'data' / 'geometry_goldens.npz'))
NEAR_180, PARALLEL_ROW = 3, 6   # as in test_geometry.py


@functools.cache
def _smplx_case(model_files, clean_model_files):
  """(smplx_jax model, inputs, smplx's (vertices, joints)), made once for both variants."""
  kwargs = dict(use_pca=False, use_face_contour=True)
  rng = np.random.default_rng(3)
  inputs = {k: (rng.standard_normal((2, w)) * s).astype(np.float32) for k, w, s in (
      ('betas', 10, 1.0), ('global_orient', 3, 0.5), ('body_pose', 63, 0.5),
      ('left_hand_pose', 45, 0.5), ('jaw_pose', 3, 0.3), ('expression', 10, 1.0),
      ('transl', 3, 0.5))}
  ref = smplx.create(str(clean_model_files), 'smplx', batch_size=2, **kwargs)
  with torch.no_grad():
    theirs = ref(**{k: torch.from_numpy(v) for k, v in inputs.items()})
  return (smplx_jax.create(model_files, 'smplx', **kwargs), inputs,
          (theirs.vertices.numpy(), theirs.joints.numpy()))


class JitVariantsTest(chex.TestCase):

  @pytest.fixture(autouse=True)
  def _model_files(self, human_model_files, clean_human_model_files):
    self.model_files, self.clean_model_files = human_model_files, clean_human_model_files

  @chex.variants(with_jit=True, without_jit=True)
  def test_rot6d_to_axis_angle(self):
    x, kind = GOLD['rot6d_in'], GOLD['rot6d_kind']
    regular = (kind != NEAR_180) & (np.arange(len(x)) != PARALLEL_ROW)
    out = np.asarray(self.variant(geometry.rot6d_to_axis_angle)(x))
    # measured 5e-7 (test_geometry.py); the 180-degree rows' sign is compared there
    np.testing.assert_allclose(out[regular], GOLD['rot6d_aa'][regular], atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_restore_bbox_and_projection(self):
    box = self.variant(geometry.restore_bbox, static_argnums=(2, 3))(
        GOLD['bbox_center'], GOLD['bbox_size'], 0.75, 1.25)
    # 0 eagerly, 1.5e-5 px under jit (test_geometry.py)
    np.testing.assert_allclose(box, GOLD['bbox_out_ar0.75_ext1.25'], atol=1e-4)
    proj = self.variant(geometry.project_joints)(GOLD['proj_joints'], GOLD['cam_trans'])
    np.testing.assert_allclose(proj, GOLD['proj_out'], rtol=1e-6, atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_roi_align_matches_torchvision(self):
    boxes = GOLD['roi_boxes']
    bound = ra.required_sampling_grid(boxes, (8, 8))
    # torchvision crops image roi_bidx[k] with box k: one box per image of ours
    images = GOLD['roi_img_nhwc'][GOLD['roi_bidx']]
    out = self.variant(ra.roi_align, static_argnums=(2, 3))(
        images, boxes[:, None], (8, 8), bound)[:, 0]
    np.testing.assert_allclose(out, GOLD['roi_out_8x8'], rtol=1e-5, atol=1e-5)   # measured 5e-7

  @chex.variants(with_jit=True, without_jit=True)
  def test_smplx_forward_matches_smplx(self):
    model, inputs, theirs = _smplx_case(self.model_files, self.clean_model_files)
    out = self.variant(lambda m, x: m(**x))(model, inputs)
    # 1e-5 m, as test_smplx_parity.py (measured ~3e-7 m)
    chex.assert_trees_all_close((out.vertices, out.joints), theirs, atol=1e-5, rtol=0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_similarity_alignment_recovers_a_known_transform(self):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 500, 3)) * 0.3 + [0, 0, 4]).astype(np.float32)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    rot = q * np.sign(np.linalg.det(q))
    y = (1.3 * x @ rot.T + [0.1, -0.2, 0.5]).astype(np.float32)
    err = self.variant(lambda a, b: metrics.mean_point_error(metrics.similarity_align(a, b), b))(
        x, y)
    assert np.all(np.asarray(err) < 1e-3), err   # mm; float32 rounding at 5 m is ~5e-4 mm
