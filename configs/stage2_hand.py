"""Stage 2: hand-only Pose2Pose pre-training (FreiHAND + InterHand2.6M + MSCOCO hands).

Not implemented yet: this is the place for it. Upstream trains the hand model on its
Pose2Pose branch (`train.py --gpu 0-3 --parts hand`, epochs to 13, lr 1e-4, decay at 10
and 12, batch 48 per GPU), then copies its backbone into the whole-body model with
`tool/merge_hand_to_all.py`. Until this config exists, use upstream's released hand
snapshot: `python -m h4w_jax.convert merge-hand` (README) merges it into a stage-1
checkpoint, and configs/stage3.py trains on.
"""


def get_config():
  raise NotImplementedError(
      'configs/stage2_hand.py: the hand-only stage is not implemented yet. Merge upstream\'s '
      'released hand snapshot with `python -m h4w_jax.convert merge-hand` and go on with '
      'configs/stage3.py (see the module docstring).')
