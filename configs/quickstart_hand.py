"""Quickstart of stage 2: the hand-only model on synthetic hands, on a laptop CPU, in minutes.

Run-book
  Command (from the repo root, after `pip install -e .`):
    python train.py --config configs/quickstart_hand.py --workdir runs/quickstart_hand
  What happens: synthetic body-model files (~1.6 GB, shared with configs/quickstart.py)
    go to ~/.cache/h4w_jax, synthetic FreiHAND / InterHand2.6M / MSCOCO-hand mini datasets
    (rendered MANO hands in upstream's file formats) to runs/quickstart_hand_data, once.
    Then the hand-only model (ResNet-10 backbone) trains MEASURED_STEPS steps of batch 8
    with upstream's seven losses, mixing and augmentation.
  Hardware and time: MEASURED_TIME.
  Expected: MEASURED_LOSS; outputs in the workdir: checkpoints/, tb/, images/overlay_*.png
    (hand crop | predicted MANO mesh over it), loss_curve.png.
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
  c.lr = 3e-4
  c.start_epoch = 0
  c.end_epoch = 8
  c.lr_dec_epoch = (6,)
  c.data.num_workers = 0
  c.log_every = 10
  c.image_every = 50
  c.checkpoint_every = 50
  return c
