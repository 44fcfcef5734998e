"""Quickstart: train on synthetic data and body models, on a laptop CPU, in a few minutes.

Run-book
  Command (from the repo root, after `pip install -e .`):
    python train.py --config configs/quickstart.py --workdir runs/quickstart
  What happens: synthetic SMPL-X files (~1.6 GB) go to ~/.cache/h4w_jax, synthetic
    Human3.6M / MSCOCO / MPII mini datasets (rendered bodies, upstream's file formats) to
    runs/quickstart_data, once. Then a small Hand4Whole (ResNet-18 body, ResNet-10 hand and
    face backbones) trains 72 steps of batch 4 with upstream's losses, mixing and augmentation.
  Hardware and time: 6 minutes on 2 CPU cores from a fresh machine (writing the synthetic
    files ~15 s, compiling ~1 min, 4.2 s per step); less with more cores.
  Expected: the printed loss (mean over 10 steps; noisy at batch 4) falls from about 3.5 to
    about 2.2-2.7 (measured: 3.52, 3.18, 2.39, ..., 2.18, 2.60); outputs in
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
  c.model.hand_depth = 10      # the hand backbone sees 2 x 256x256 crops per sample: the
  c.model.face_depth = 10      # largest cost on a CPU; ResNet-10 keeps the run short
  c.batch_size = 4
  c.lr = 3e-4
  c.start_epoch = 0
  c.end_epoch = 3
  c.lr_dec_epoch = (2,)
  c.data.num_workers = 0
  c.log_every = 10
  c.image_every = 60
  c.checkpoint_every = 60
  return c
