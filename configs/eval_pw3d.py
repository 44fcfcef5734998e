"""Evaluate on the 3DPW test split: MPJPE, PA-MPJPE, MPVPE, PA-MPVPE (mm).

upstream's main branch has no 3DPW metric (its PW3D.evaluate only dumps
parameters) and how the paper scored a whole-body model on 3DPW is not in the
code (SPEC_DATA §4.5, §11). We use the Pose2Pose branch's PW3D.evaluate
(`h4w_jax.evaluation.metrics.pw3d_metrics`: the 14 H36M joints regressed with
J_regressor_h36m_smpl.npy, pelvis-relative) and bring the predicted SMPL-X
mesh to SMPL topology first with the official SMPL-X -> SMPL deformation
transfer of the smplx package's transfer_model (vertex part only). The GT is
the SMPL mesh of the annotation's gender (neutral without one). This is our
protocol choice, not upstream code: expect numbers near, not equal to, the
paper's.

Run-book
  Files: data/PW3D/data/{3DPW_test.json, imageFiles/} (README "Datasets");
    data/Human36M/J_regressor_h36m_smpl.npy (from upstream's Human36M download);
    human_model_files/ with smpl/ (SMPL_NEUTRAL/MALE/FEMALE.pkl) and smplx/, and
    human_model_files/transfer_data/smplx2smpl_deftrafo_setup.pkl from the SMPL-X
    site's "model_transfer.zip" (any path: --config.eval.smplx_to_smpl=...).
  Command (from the repo root):
    python eval.py --config configs/eval_pw3d.py --checkpoint CKPT --out results/
  Hardware and time: one GPU or TPU host; 3DPW test has tens of thousands of crops; not yet
    measured.
  Expected (paper Table 6, SPEC_DATA §11): MPJPE 86.6, PA-MPJPE 54.4 mm.
  Output: results/PW3D_test.json, results/PW3D_test_per_sample.npz.
"""

import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.eval = ml_collections.ConfigDict(dict(
      dataset='PW3D', split='test',
      # relative paths: under human_model_path (transfer) and data_root (regressor);
      # '' for the regressor means data_root/Human36M/J_regressor_h36m_smpl.npy
      smplx_to_smpl='transfer_data/smplx2smpl_deftrafo_setup.pkl',
      h36m_regressor='',
      published=ml_collections.ConfigDict(dict(mpjpe=86.6, pa_mpjpe=54.4))))
  c.batch_size = 64
  c.data.crop_dtype = 'float32'
  c.data.num_workers = 4
  return c
