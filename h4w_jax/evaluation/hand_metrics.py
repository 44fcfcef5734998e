"""Hand metrics of stage 2 in JAX: the FreiHAND benchmark and upstream's InterHand2.6M evaluation.

FreiHAND. upstream's FreiHAND.evaluate (Pose2Pose) only writes `pred.json`
([joints, vertices] in metres, joints = the 21-joint regressor @ vertices) for the
official Codalab server, which computes the numbers. `freihand_metrics` follows the
benchmark's own definitions (lmb-freiburg/freihand `eval.py` and
`utils/eval_util.py`), per sample and batched:
  * alignment (`align_w_scale`): both point sets centred and scaled to unit Frobenius
    norm (+1e-8), the rotation and scale of the orthogonal Procrustes problem
    (scipy's orthogonal_procrustes: no determinant fix, a reflection is allowed),
    then the prediction mapped onto the ground truth's scale and centre; keypoints
    and vertices are aligned separately;
  * mean error and AUC (`get_measures(0, 0.05, 100)`): per point the mean over
    samples; PCK(t) with e <= t at 100 thresholds in [0, 5 cm], trapezoid area /
    5 cm; both averaged over the 21 (778) points. With every point visible in every
    sample these are means over samples of per-sample values, which is how they are
    computed here;
  * F-score at 5 and 15 mm on the vertices: P = share of GT vertices whose nearest
    predicted vertex is closer than the threshold (strict), R the reverse,
    F = 2PR / (P + R) (0 when both are 0), averaged over samples, unaligned and
    aligned (the paper's F@5 / F@15 are the aligned ones).
PA-MPJPE = xyz_al_mean3d, PA-MPVPE = mesh_al_mean3d (reported in mm here). The
prediction lives in the crop's virtual camera, so only aligned numbers are meaningful.

InterHand2.6M. upstream's InterHand26M.evaluate / print_eval_result (Pose2Pose),
which as committed fail (B1: `joint_set['joint_num']`); as intended: GT joints are the
annotation's, GT mesh the fit's, both relative to the annotated wrist; the predicted
joints (regressor @ mesh) and mesh relative to the predicted wrist; MPJPE per joint
over the samples where it is valid, then the mean over joints; MPVPE the mean over
samples with a fit. Fixed here: a joint never valid is left out of the mean (B6:
upstream's NaN), and with `unmirror_left` (default in configs/eval_interhand.py) left
hands' predictions are mirrored back (x -> -x) before the comparison (B5: upstream
compares the mirrored prediction with the unmirrored ground truth).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

_HIGHEST = jax.lax.Precision.HIGHEST
AUC_MAX_M = 0.05
AUC_STEPS = 100
F_THRESHOLDS_MM = (5, 15)

FREIHAND_KEYS = ('pa_mpjpe', 'pa_mpvpe', 'f_al_5', 'f_al_15', 'mpjpe', 'mpvpe', 'f_5', 'f_15',
                 'auc_al_joints', 'auc_al_vertices', 'auc_joints', 'auc_vertices')
LABELS = {
    'pa_mpjpe': 'PA-MPJPE (mm)', 'pa_mpvpe': 'PA-MPVPE (mm)', 'f_al_5': 'F@5 mm (aligned)',
    'f_al_15': 'F@15 mm (aligned)', 'mpjpe': 'MPJPE (mm, unaligned)',
    'mpvpe': 'MPVPE (mm, unaligned)', 'f_5': 'F@5 mm (unaligned)', 'f_15': 'F@15 mm (unaligned)',
    'auc_al_joints': 'AUC joints 0-50 mm (aligned)', 'auc_al_vertices': 'AUC vertices (aligned)',
    'auc_joints': 'AUC joints (unaligned)', 'auc_vertices': 'AUC vertices (unaligned)',
    'interhand_mpjpe': 'MPJPE (mm)', 'interhand_mpvpe': 'MPVPE (mm)'}


def align_w_scale(gt, pred):
  """FreiHAND's eval_util.align_w_scale, batched: pred (B, N, 3) aligned onto gt (B, N, 3).

  R, s = orthogonal_procrustes(gt_n, pred_n): with U S V^T the SVD of gt_n^T pred_n,
  R = U V^T and s = sum(S); result = (pred_n R^T) s |gt_c| + mean(gt).
  """
  t_gt, t_pred = gt.mean(1, keepdims=True), pred.mean(1, keepdims=True)
  g, p = gt - t_gt, pred - t_pred
  s_gt = jnp.sqrt(jnp.sum(g * g, axis=(1, 2), keepdims=True)) + 1e-8
  s_pred = jnp.sqrt(jnp.sum(p * p, axis=(1, 2), keepdims=True)) + 1e-8
  g, p = g / s_gt, p / s_pred
  u, sigma, vt = jnp.linalg.svd(jnp.einsum('bni,bnj->bij', g, p, precision=_HIGHEST))
  rot = jnp.einsum('bij,bjk->bik', u, vt, precision=_HIGHEST)
  scale = sigma.sum(-1)[:, None, None]
  return jnp.einsum('bnj,bij->bni', p, rot, precision=_HIGHEST) * scale * s_gt + t_gt


def _auc(errors):
  """(B, N) distances -> (B,) mean over points of trapz(PCK, t) / trapz(1, t) per sample."""
  thresholds = jnp.linspace(0.0, AUC_MAX_M, AUC_STEPS, dtype=errors.dtype)
  hit = (errors[..., None] <= thresholds).astype(errors.dtype)
  area = jnp.sum((hit[..., 1:] + hit[..., :-1]) * jnp.diff(thresholds) / 2, axis=-1)
  return (area / AUC_MAX_M).mean(-1)


def _fscores(gt, pred):
  """{threshold mm: (B,) F-score} from nearest-neighbour distances both ways."""
  d2 = jnp.sum(jnp.square(gt[:, :, None] - pred[:, None]), axis=-1)   # (B, N_gt, N_pred)
  d_gt = jnp.sqrt(d2.min(2))
  d_pred = jnp.sqrt(d2.min(1))
  out = {}
  for mm in F_THRESHOLDS_MM:
    th = mm / 1000
    precision = jnp.mean(d_gt < th, axis=-1)
    recall = jnp.mean(d_pred < th, axis=-1)
    total = precision + recall
    out[mm] = jnp.where(total > 0, 2 * precision * recall / jnp.where(total > 0, total, 1), 0.0)
  return out


def freihand_metrics(xyz_gt, verts_gt, xyz_pred, verts_pred) -> dict[str, jax.Array]:
  """Per-sample FreiHAND benchmark values: joints (B, 21, 3), vertices (B, 778, 3), metres.

  Returns (B,) arrays: errors in mm (pa_mpjpe, pa_mpvpe, mpjpe, mpvpe), F-scores
  (f_5, f_15 unaligned, f_al_5, f_al_15 aligned) and AUCs; their means over samples
  are the benchmark's numbers.
  """
  xyz_al = align_w_scale(xyz_gt, xyz_pred)
  verts_al = align_w_scale(verts_gt, verts_pred)
  dist = lambda a, b: jnp.sqrt(jnp.sum(jnp.square(a - b), axis=-1))
  e_xyz, e_xyz_al = dist(xyz_gt, xyz_pred), dist(xyz_gt, xyz_al)
  e_mesh, e_mesh_al = dist(verts_gt, verts_pred), dist(verts_gt, verts_al)
  f, f_al = _fscores(verts_gt, verts_pred), _fscores(verts_gt, verts_al)
  return {
      'pa_mpjpe': e_xyz_al.mean(-1) * 1000, 'pa_mpvpe': e_mesh_al.mean(-1) * 1000,
      'mpjpe': e_xyz.mean(-1) * 1000, 'mpvpe': e_mesh.mean(-1) * 1000,
      'f_5': f[5], 'f_15': f[15], 'f_al_5': f_al[5], 'f_al_15': f_al[15],
      'auc_joints': _auc(e_xyz), 'auc_al_joints': _auc(e_xyz_al),
      'auc_vertices': _auc(e_mesh), 'auc_al_vertices': _auc(e_mesh_al),
  }


def interhand_metrics(joint_gt, joint_valid, mesh_gt, mesh_valid, joint_pred, mesh_pred, is_left,
                      unmirror_left: bool) -> dict[str, jax.Array]:
  """Per-sample InterHand2.6M errors (upstream's evaluate), metres in, mm out.

  joint_gt (B, 21, 3) wrist-relative; mesh_gt (B, 778, 3) relative to the annotated
  wrist; joint_valid (B, 21); mesh_valid (B,) (the sample has a fit); joint_pred
  (B, 21, 3) the regressed predicted joints and mesh_pred (B, 778, 3), any origin;
  is_left (B,). Returns joint_error (B, 21) mm (0 where not valid), joint_valid,
  mesh_error (B,) mm (mean over vertices), mesh_valid.
  """
  root = joint_pred[:, :1]
  joint_pred, mesh_pred = joint_pred - root, mesh_pred - root
  if unmirror_left:
    mirror = jnp.where(jnp.asarray(is_left)[:, None, None] > 0,
                       jnp.asarray([-1.0, 1.0, 1.0]).astype(joint_pred.dtype), 1.0)
    joint_pred, mesh_pred = joint_pred * mirror, mesh_pred * mirror
  joint_err = jnp.sqrt(jnp.sum(jnp.square(joint_gt - joint_pred), -1)) * 1000
  mesh_err = jnp.sqrt(jnp.sum(jnp.square(mesh_gt - mesh_pred), -1)).mean(-1) * 1000
  return {'joint_error': jnp.where(joint_valid > 0, joint_err, 0.0), 'joint_valid': joint_valid,
          'mesh_error': jnp.where(mesh_valid > 0, mesh_err, 0.0), 'mesh_valid': mesh_valid}


def summarize_freihand(per_sample: Mapping[str, np.ndarray]) -> dict[str, float]:
  return {k: float(np.mean(per_sample[k])) for k in FREIHAND_KEYS if k in per_sample}


def summarize_interhand(per_sample: Mapping[str, np.ndarray]) -> dict[str, float]:
  """upstream's print_eval_result: MPJPE = mean over joints of each joint's mean over the
  samples where it is valid (joints never valid left out: B6); MPVPE = mean over the
  samples with a fit."""
  err, valid = np.asarray(per_sample['joint_error']), np.asarray(per_sample['joint_valid']) > 0
  counts = valid.sum(0)
  per_joint = (err * valid).sum(0)[counts > 0] / counts[counts > 0]
  mesh_valid = np.asarray(per_sample['mesh_valid']) > 0
  mesh = np.asarray(per_sample['mesh_error'])[mesh_valid]
  return {'interhand_mpjpe': float(per_joint.mean()) if per_joint.size else float('nan'),
          'interhand_mpvpe': float(mesh.mean()) if mesh.size else float('nan')}


def format_table(summary: Mapping[str, float], title: str | None = None) -> str:
  width = max(len(LABELS.get(k, k)) for k in summary) if summary else 10
  lines = [title] if title else []
  lines += [f'{LABELS.get(k, k):<{width}}  {v:.4f}' for k, v in summary.items()]
  return '\n'.join(lines)
