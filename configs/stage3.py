"""Stage 3: whole-body fine-tuning of the merged model (stage 1 + the hand model).

Run-book
  Files: as stage 1, plus the merged checkpoint:
    python -m h4w_jax.convert merge-hand runs/stage1_export HAND_SNAPSHOT.pth.tar runs/merged
  Command:
    python train.py --config configs/stage3.py --workdir runs/stage3 \
      --config.init.checkpoint=runs/merged
  Schedule: upstream's: epochs 1..6 at lr 1e-5 (1e-6 from epoch 4, 1e-7 from 6), same data,
    global batch 96, per-device BatchNorm. The hand heads start from upstream's init
    (merge_hand_to_all re-initialises them, quirk Q19).
  Hardware and time: as stage 1 (about 2-3 days on 4 V100-class GPUs; not measured here).
  Expected (paper, EHF): MPVPE all/hands/face 76.8/39.8/26.1 mm, PA-MPVPE 50.3/10.8/5.8 mm;
    check with `python eval.py --config configs/eval_ehf.py --checkpoint EXPORTED_DIR`.
"""

from configs import default


def get_config():
  c = default.get_config()
  c.lr = 1e-5
  return c
