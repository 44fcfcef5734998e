"""AGORA fine-tuning of the stage-3 model (upstream's AGORA setting).

Run-book
  Files: data/AGORA in upstream's HEAD layout (4K crops made by
    tool/AGORA/crop_and_resize_4k_images.py, README "Datasets"), the stage-3 checkpoint.
  Command:
    python -m h4w_jax.convert reset-epoch runs/stage3_export runs/stage3_epoch0
    python train.py --config configs/agora_finetune.py --workdir runs/agora \
      --config.init.checkpoint=runs/stage3_epoch0
  Schedule: upstream's AGORA config: trainset_3d ['AGORA'], no 2D sets, lr 1e-4 with x0.1
    at epochs 40 and 60, end_epoch 70 (epochs 1..69), joints detached inside the projection
    (AGORA-only mode). Upstream's 1-D AGORA masks crash its training; ours are (137, 1).
  Hardware and time: not measured here; upstream's README gives no figure.
  Expected: AGORA test leaderboard "Hand4Whole-finetuned": NMVE 144.1 / MVE 135.5 mm (FB);
    the test split is scored by the official server from eval.py's result files.
"""

from configs import default


def get_config():
  c = default.get_config()
  c.trainset_3d = ('AGORA',)
  c.trainset_2d = ()
  c.lr = 1e-4
  c.lr_dec_epoch = (40, 60)
  c.end_epoch = 70
  c.detach_joints_for_projection = True
  return c
