"""Evaluate the hand-only model (stage 2) on the FreiHAND evaluation set.

upstream: Pose2Pose FreiHAND.evaluate + print_eval_result write `pred.json`
([joints, vertices], metres) for the official FreiHAND Codalab server and compute
nothing else. Here the same file is written, and when the evaluation set's ground
truth is given (the FreiHAND_pub_v2_eval release: evaluation_xyz.json,
evaluation_verts.json) the benchmark's own metrics are computed as its eval.py does
(h4w_jax.evaluation.hand_metrics): PA-MPJPE, PA-MPVPE, F@5 mm, F@15 mm (aligned, as the
paper reports them), their unaligned versions and the AUCs.

Run-book
  Files: data/FreiHAND/data/{freihand_eval_coco.json, freihand_eval_data.json, evaluation/},
    data/FreiHAND/rootnet_output/bbox_root_freihand_output.json (upstream's README links);
    optionally data/FreiHAND/FreiHAND_pub_v2_eval/evaluation_{xyz,verts}.json;
    human_model_files/mano/MANO_RIGHT.pkl.
  Command (from the repo root):
    python eval.py --config configs/eval_freihand.py --checkpoint CKPT --out results/
    CKPT: a stage-2 workdir (runs/stage2), its export, or upstream's snapshot_12_hand.pth.tar
    (converted or as it is).
  Hardware and time: the 3960 evaluation crops take a few minutes on one GPU or TPU host;
    not yet measured here.
  Expected (paper, ResNet-50 hand model): PA-MPJPE 7.7 mm, PA-MPVPE 7.7 mm, F@5 0.664,
    F@15 0.971.
  Output: results/FreiHAND/pred.json (zip it for the server), results/FreiHAND_test.json
    (metrics with ground truth), results/FreiHAND_test_per_sample.npz.
"""

import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.task = 'hand'
  c.eval = ml_collections.ConfigDict(dict(
      dataset='FreiHAND', split='test',
      ground_truth='FreiHAND/FreiHAND_pub_v2_eval',   # under data_root; skipped if absent
      published=ml_collections.ConfigDict(dict(pa_mpjpe=7.7, pa_mpvpe=7.7, f_al_5=0.664,
                                               f_al_15=0.971))))
  c.batch_size = 64
  c.data.crop_dtype = 'float32'   # upstream's float crop
  c.data.num_workers = 4
  return c
