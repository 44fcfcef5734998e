"""Stage 1: whole-body pre-training on Human3.6M + MSCOCO + MPII (upstream's main branch).

Run-book
  Files: data/Human36M, data/MSCOCO, data/MPII in upstream's layout (README "Datasets");
    human_model_files/ with SMPL-X (check: `python -m smplx_jax.check human_model_files`);
    SimpleBaseline's pose_resnet_50_256x192.pth.tar for the body backbone and torchvision's
    ImageNet ResNet-50 / ResNet-18 .pth files for the hand and face backbones.
  Command (one GPU box or one TPU host; on a pod every host runs the same command):
    python train.py --config configs/stage1.py --workdir runs/stage1 \
      --config.init.body_backbone=pose_resnet_50_256x192.pth.tar \
      --config.init.hand_backbone=resnet50-0676ba61.pth \
      --config.init.face_backbone=resnet18-f37072fd.pth
  Schedule: upstream's: epochs 1..6 (a run resumed from snapshot_0), lr 1e-4, 1e-5 from
    epoch 4, 1e-6 from epoch 6; global batch 96 (4 GPUs x 24), per-device BatchNorm.
  Hardware and time: upstream trained on 4 GPUs; expect about 2-3 days on 4 V100-class
    GPUs. Not yet measured here (no accelerator was available to this project so far).
  Expected: the stage-1 model is an intermediate; after stage 3 the paper reports EHF
    MPVPE 76.8 / PA-MPVPE 50.3 mm (README "Published numbers").
  Output: runs/stage1/checkpoints/<step>; export for stage 3 with
    `python -m h4w_jax.convert` (README) or start stage 3 from the exported folder.
"""

from configs import default


def get_config():
  c = default.get_config()
  return c
