"""Evaluate on EHF (100 studio images, SMPL-X GT meshes): upstream's EHF.evaluate.

Run-book
  Files: data/EHF/data/{EHF.json, NN_img.jpg, NN_align.ply} (README "Datasets"),
    human_model_files/ with SMPL-X, SMPLX_to_J14.pkl, MANO_SMPLX_vertex_ids.pkl and
    SMPL-X__FLAME_vertex_ids.npy (`python -m smplx_jax.check human_model_files`).
  Command (from the repo root):
    python eval.py --config configs/eval_ehf.py --checkpoint CKPT --out results/
    CKPT: a converted checkpoint (`python -m h4w_jax.convert snapshot_6.pth.tar ckpt/`),
    upstream's snapshot_6.pth.tar itself, or a training workdir (runs/stage3).
  Hardware and time: one GPU or TPU host: a few seconds of compute plus compilation
    (about a minute); a CPU takes a few minutes. Not yet measured here.
  Expected (stage-3 model, SPEC_DATA §11, the paper's Table 4), mm:
    MPVPE all / hands / face 76.8 / 39.8 / 26.1, PA-MPVPE 50.3 / 10.8 / 5.8; the code
    also prints PA-MPJPE body / hands, which upstream never published.
  Output: results/EHF_test.json (means), results/EHF_test_per_sample.npz.
"""

import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.eval = ml_collections.ConfigDict(dict(
      dataset='EHF', split='test',
      smplx_to_smpl='', h36m_regressor='',     # 3DPW only
      published=ml_collections.ConfigDict(dict(
          pa_mpvpe_all=50.3, pa_mpvpe_hand=10.8, pa_mpvpe_face=5.8,
          mpvpe_all=76.8, mpvpe_hand=39.8, mpvpe_face=26.1))))
  c.batch_size = 64              # global; upstream tests 64 per GPU
  c.data.crop_dtype = 'float32'  # upstream's float crop, not a rounded uint8 one
  c.data.num_workers = 4
  return c
