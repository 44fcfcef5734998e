"""Shared defaults for every training config: upstream's main-branch settings.

Not a run-book itself: configs/stage1.py, stage3.py, agora_finetune.py and
quickstart.py import it and override a few fields. Every field can be set on
the command line: `python train.py --config configs/stage1.py --config.lr=2e-4`.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Files. human_model_path is upstream's common/utils/human_model_files.
  c.data_root = 'data'
  c.human_model_path = 'human_model_files'
  c.synthetic = False            # True: write synthetic body models and mini datasets if missing
  c.synthetic_images = 16        # images per synthetic mini dataset

  # The model family (h4w_jax.training.tasks): 'wholebody' (stages 1 and 3) or 'hand' (the
  # hand-only model of stage 2, upstream's Pose2Pose parts='hand'; configs/stage2_hand.py).
  c.task = 'wholebody'

  # Data (upstream main/config.py): the 3D group is mixed 1:1 with the 2D group per epoch.
  c.trainset_3d = ('Human36M',)
  c.trainset_2d = ('MSCOCO', 'MPII')
  c.dataset_options = ml_collections.ConfigDict()   # per dataset reader kwargs, e.g. AGORA.gendered
  c.data = ml_collections.ConfigDict(dict(
      num_workers=8,             # grain worker processes per host (augmentation, image decode)
      read_threads=4,
      crop_dtype='uint8',        # 'float32' ships upstream's exact float crops (4x bytes)
      skip_bad_samples=False,    # True: replace a bad sample, count it, report it per epoch
      prefetch_batches=2,        # global batches assembled on the devices ahead of the step
      # 'folder': upstream's files under data_root; 'tfds': the TFDS datasets that
      # `python -m h4w_datasets.tfds_build` wrote to tfds_data_dir.
      source='folder',
      tfds_data_dir=''))

  # Model.
  # hand_depth is also the hand-only model's backbone (stage 2), which stage 3 takes over.
  c.model = ml_collections.ConfigDict(dict(body_depth=50, hand_depth=50, face_depth=18,
                                           fix_lhand_flip=False,
                                           remat='none'))   # 'blocks': recompute ResNet blocks
                                                            # in the backward pass (less memory)
  # BatchNorm statistics: 'per_device' reproduces upstream's DataParallel (statistics over
  # each GPU's 24 samples); 'synced' uses the whole global batch. See README "BatchNorm".
  c.batchnorm = 'per_device'
  # 'bfloat16': every backbone and head convolution and matmul in bf16; parameters, Adam,
  # BatchNorm statistics, crops, geometric heads, SMPL-X, targets and losses stay float32.
  c.compute_dtype = 'float32'

  # Optimisation (upstream: Adam, lr 1e-4, x0.1 at epochs 4 and 6, end 7; a run resumed
  # from snapshot_0 starts at epoch 1: quirk Q18).
  c.batch_size = 96              # global: upstream's 4 GPUs x 24
  c.lr = 1e-4
  c.lr_dec_epoch = (4, 6)
  c.lr_dec_factor = 10.0
  c.start_epoch = 1
  c.end_epoch = 7
  c.total_steps = 0              # 0: (end_epoch - start_epoch) epochs
  c.grad_clip_norm = 0.0         # 0: off (upstream does not clip)
  c.detach_joints_for_projection = False   # upstream's AGORA-only mode

  # Initial weights (ignored when the workdir holds a checkpoint: the run resumes).
  c.init = ml_collections.ConfigDict(dict(
      checkpoint='',             # a converted checkpoint dir or an upstream .pth.tar (all weights)
      body_backbone='',          # SimpleBaseline pose_resnet_50 .pth(.tar) (stage 1)
      hand_backbone='',          # torchvision resnet50 ImageNet .pth (also stage 2's backbone)
      face_backbone=''))         # torchvision resnet18 ImageNet .pth

  # Devices: the batch is split over all mesh axes; fsdp also shards params (rules below).
  c.mesh = (('data', -1), ('fsdp', 1))
  c.sharding_rules = (('.*', 'fsdp'),)

  # Logs and checkpoints.
  c.log_every = 50
  c.image_every = 1000
  c.checkpoint_every = 0         # steps; 0: at every epoch end (and the last step)
  c.keep_checkpoints = 3
  c.async_checkpoints = True
  c.stop_after_steps = 0         # stop early after this many steps of this invocation (drills)

  # Faults. A non-finite loss, gradient or update is never applied: the run stops with the
  # newest checkpoint intact. Divergence (finite but exploding) is warned about.
  c.guard = ml_collections.ConfigDict(dict(
      divergence_factor=10.0,    # warn when a logged loss is this many times its running median
      divergence_logs=5,         # ... or has grown at this many logs in a row (0: off)
      host_transfers='disallow'))   # device-to-host copies between log steps are an error
  c.hang_timeout_seconds = 900   # exit with a message when the loop makes no progress this long
                                 # (a dead peer process can block collectives forever); 0: off
  return c
