"""Evaluate the hand-only model (stage 2) on InterHand2.6M: upstream's MPJPE and MPVPE.

upstream: Pose2Pose InterHand26M.evaluate + print_eval_result, which as committed cannot
run (B1: a missing joint_num; B2: the test split's __getitem__ fails). As intended:
each hand crop (left hands mirrored into right ones, as in training) is predicted; the
predicted joints (the 21-joint regressor on the mesh) and mesh relative to the predicted
wrist are compared with the annotated joints and the fit's mesh relative to the
annotated wrist; MPJPE averages each joint over the samples where it is valid, then over
the joints; MPVPE averages over the hands that have a fit.

Fixes, documented flags: `eval.unmirror_left_hands` (True) mirrors left hands'
predictions back before the comparison; upstream compares the mirrored prediction with
the unmirrored ground truth (B5), set False for that. A joint never valid is left out of
the MPJPE mean (upstream: NaN, B6).

Run-book
  Files: data/InterHand26M/{annotations/<split>/InterHand2.6M_<split>_{data,camera,
    joint_3d,MANO_NeuralAnnot}.json, images/<split>/} (the dataset's release layout);
    human_model_files/mano/MANO_{LEFT,RIGHT}.pkl.
  Command:
    python eval.py --config configs/eval_interhand.py --checkpoint CKPT --out results/
    (--config.eval.split=val for the validation split)
  Hardware and time: the test split has hundreds of thousands of hands (5 fps release); one
    GPU or TPU host; not yet measured here.
  Expected: upstream published no InterHand2.6M number for this model.
  Output: results/InterHand26M_<split>.json, results/InterHand26M_<split>_per_sample.npz.
"""

import ml_collections

from configs import default


def get_config():
  c = default.get_config()
  c.task = 'hand'
  c.eval = ml_collections.ConfigDict(dict(
      dataset='InterHand26M', split='test', unmirror_left_hands=True,
      published=ml_collections.ConfigDict()))
  c.batch_size = 64
  c.data.crop_dtype = 'float32'
  c.data.num_workers = 4
  return c
