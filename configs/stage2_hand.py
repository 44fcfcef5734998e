"""Stage 2: hand-only Pose2Pose training on FreiHAND + InterHand2.6M + MSCOCO hands.

upstream: the Pose2Pose branch, `main/config.py` with parts='hand' (SPEC_STAGE2 §1):
ResNet-50 on the 256x256 hand crop, the hand PositionNet and RotationNet, MANO
through the right layer; datasets FreiHAND + InterHand2.6M (3D group) mixed 1:1 with
MSCOCO-WholeBody hands (2D group), as its README says the released hand model was
trained (the committed config still lists the body sets: an edit upstream's users
make by hand, B4). Left hands are mirrored into right ones; no random flip.

Run-book
  Files: data/FreiHAND, data/InterHand26M, data/MSCOCO in upstream's layout (README
    "Datasets"; MSCOCO needs annotations/MSCOCO_train_MANO_NeuralAnnot.json next to
    the COCO-WholeBody files); human_model_files/mano/MANO_{LEFT,RIGHT}.pkl
    (`python -m smplx_jax.check human_model_files --need all`); torchvision's ImageNet
    ResNet-50 (IMAGENET1K_V2, resnet50-11ad3fa6.pth, as upstream's init) for the backbone.
  Command (one GPU box or TPU host; on a pod every host runs the same command):
    python train.py --config configs/stage2_hand.py --workdir runs/stage2 \
      --config.init.hand_backbone=resnet50-11ad3fa6.pth
  Schedule: upstream's: epochs 0..12 (end_epoch 13), lr 1e-4, 1e-5 from epoch 10,
    1e-6 from epoch 12; Adam; global batch 192 = upstream's 4 GPUs x 48 (train.py --gpu
    0-3), per-device BatchNorm (48 per group on 4 devices).
  Hardware and time: upstream trained on 4 GPUs; not measured here (no accelerator was
    available to this project).
  Expected: FreiHAND (paper, R-50): PA-MPJPE 7.7 mm, PA-MPVPE 7.7 mm, F@5 0.664, F@15
    0.971: `python eval.py --config configs/eval_freihand.py --checkpoint runs/stage2`
    (metrics with data/FreiHAND/FreiHAND_pub_v2_eval; pred.json for the server always).
  Next: stage 3 starts from stage 1 + this run's backbone:
    python -m h4w_jax.convert merge-hand runs/stage1 runs/stage2 runs/merged
    (a workdir or an exported folder; upstream's snapshot_12_hand.pth.tar works as well).
"""

from configs import default


def get_config():
  c = default.get_config()
  c.task = 'hand'
  c.trainset_3d = ('FreiHAND', 'InterHand26M')
  c.trainset_2d = ('MSCOCO',)
  gpus, per_gpu = 4, 48
  c.batch_size = gpus * per_gpu
  c.lr = 1e-4
  c.lr_dec_epoch = (10, 12)
  c.lr_dec_factor = 10.0
  c.start_epoch = 0
  c.end_epoch = 13
  c.model.hand_depth = 50
  return c
