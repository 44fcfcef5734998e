"""Quickstart of stage 2: the hand-only model on synthetic hands, on a laptop CPU, in minutes.

Run-book
  Command (from the repo root, after `pip install -e .`):
    python train.py --config configs/quickstart_hand.py --workdir runs/quickstart_hand
  What happens: synthetic body-model files (~1.6 GB, shared with configs/quickstart.py)
    go to ~/.cache/h4w_jax, synthetic FreiHAND / InterHand2.6M / MSCOCO-hand mini datasets
    (rendered MANO hands in upstream's file formats) to runs/quickstart_hand_data, once.
    Then the hand-only model (ResNet-10 backbone, upstream's init) trains 154 steps (14
    epochs of the mini sets) of batch 8 with upstream's seven losses, mixing and
    augmentation (left hands mirrored into right ones).
  Hardware and time: 2 min 50 s on 2 CPU cores from a fresh machine (writing the synthetic
    files ~25 s, compiling ~15 s, 0.85 s per step); less with more cores.
  Expected: the printed loss (mean over 10 steps; noisy at batch 8) falls from about 11
    (the camera starts far off: joint_proj) to about 2.2-2.8 (measured: 11.09, 3.83, 3.23,
    2.95, ..., 2.58, 2.52, 2.23); the same numbers on every run (seeded). Outputs in the
    workdir: checkpoints/, tb/, images/overlay_*.png (hand crop | predicted MANO mesh over
    it, the crop's virtual camera), loss_curve.png. Evaluate it like stage 2:
    python eval.py --config configs/eval_freihand.py --checkpoint runs/quickstart_hand \
      --config.data_root=runs/quickstart_hand_data --config.model.hand_depth=10 \
      --config.human_model_path=$HOME/.cache/h4w_jax/synthetic_human_model_files
"""

import os

from configs import default


def get_config():
  c = default.get_config()
  c.task = 'hand'
  cache = os.environ.get('H4W_JAX_CACHE_HOME', os.path.expanduser('~/.cache/h4w_jax'))
  c.synthetic = True
  c.human_model_path = os.path.join(cache, 'synthetic_human_model_files')
  c.data_root = 'runs/quickstart_hand_data'
  c.synthetic_images = 24
  c.trainset_3d = ('FreiHAND', 'InterHand26M')
  c.trainset_2d = ('MSCOCO',)
  c.model.hand_depth = 10
  c.batch_size = 8
  c.lr = 1e-3
  c.start_epoch = 0
  c.end_epoch = 14
  c.lr_dec_epoch = (12,)
  c.data.num_workers = 0
  c.log_every = 10
  c.image_every = 77
  c.checkpoint_every = 77
  return c
