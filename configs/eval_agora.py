"""Evaluate on AGORA: validation metrics, and result files for the official server.

upstream: AGORA.evaluate (HEAD): the validation split gives the six EHF-style
mesh errors against the neutral SMPL-X fit (upstream ignores the fits' gender;
`--config.dataset_options.AGORA.gendered=True` uses the gendered models the
fits were made with). Both splits write one pickle per person (parameters and
the 144 projected joints in 3840x2160 pixels) as the AGORA server expects.

Run-book
  Files: data/AGORA/data in upstream's HEAD layout with the 4K crops of
    tool/AGORA/crop_and_resize_4k_images.py (README "Datasets"); human_model_files/.
  Commands (from the repo root):
    python eval.py --config configs/eval_agora.py --checkpoint CKPT --out results/
    python eval.py --config configs/eval_agora.py --checkpoint CKPT --out results/ \
      --config.eval.split=test
    CKPT: the AGORA fine-tuned model (configs/agora_finetune.py's workdir, or upstream's
    released snapshot converted with `python -m h4w_jax.convert`).
  Hardware and time: one GPU or TPU host; not yet measured here.
  Expected: the test split is scored only by the server: upstream's "Hand4Whole-finetuned"
    leaderboard entry reads NMVE 144.1 / MVE 135.5 mm (full body), SPEC_DATA §11. No
    validation numbers were published.
  Output: results/AGORA_<split>.json and results/AGORA_<split>/predictions/
    <image>_personId_<k>.pkl: zip the predictions folder and upload it to the AGORA
    evaluation server. Validation ids count 0, 1, ... per image as upstream does in a
    fresh folder; test ids are the detection index.
"""

import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.eval = ml_collections.ConfigDict(dict(
      dataset='AGORA', split='validation',   # 'validation' or 'test'
      smplx_to_smpl='', h36m_regressor='',    # 3DPW only
      published=ml_collections.ConfigDict()))
  # Reader options: resolution (2160, 3840) reads the 4K crops (upstream's choice),
  # (720, 1280) the downscaled full images; gendered: the GT of the fit's gender.
  c.dataset_options = ml_collections.ConfigDict(
      {'AGORA': {'resolution': (2160, 3840), 'gendered': False}})
  c.batch_size = 64
  c.data.crop_dtype = 'float32'
  c.data.num_workers = 4
  return c
