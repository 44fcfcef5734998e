"""Quickstart: train on synthetic data and body models, on a laptop CPU, in a few minutes.

Run-book
  Command (from the repo root, after `pip install -e .`):
    python train.py --config configs/quickstart.py --workdir runs/quickstart
  What happens: synthetic SMPL-X files (~1.6 GB) go to ~/.cache/h4w_jax, synthetic
    Human3.6M / MSCOCO / MPII mini datasets (rendered bodies, upstream's file formats) to
    runs/quickstart_data, once. Then a small Hand4Whole (ResNet-18 backbones) trains with
    upstream's losses, mixing and augmentation.
  Hardware and time: 2-4 CPU cores, about 5 minutes (1 min of it compiling).
  Expected: the printed loss falls from ~4-6 to clearly lower within the run; outputs in
    the workdir: checkpoints/, tb/ (TensorBoard: `tensorboard --logdir runs/quickstart/tb`),
    images/overlay_*.png (input crop | predicted mesh), loss_curve.png.
"""

import os

from configs import default


def get_config():
  c = default.get_config()
  cache = os.environ.get('H4W_JAX_CACHE_HOME', os.path.expanduser('~/.cache/h4w_jax'))
  c.synthetic = True
  c.human_model_path = os.path.join(cache, 'synthetic_human_model_files')
  c.data_root = 'runs/quickstart_data'
  c.synthetic_images = 24
  c.model.body_depth = 18
  c.model.hand_depth = 18
  c.model.face_depth = 18
  c.batch_size = 4
  c.lr = 3e-4
  c.start_epoch = 0
  c.end_epoch = 4
  c.lr_dec_epoch = (3,)
  c.data.num_workers = 0
  c.log_every = 10
  c.image_every = 60
  c.checkpoint_every = 60
  return c
