"""Hand4Whole's evaluation metrics in JAX: EHF, AGORA and 3DPW, per sample, in mm.

upstream: Hand4Whole_RELEASE (commit c949086) `data/EHF/EHF.py`,
`data/AGORA/AGORA.py` (branch main) and `data/PW3D/PW3D.py` (branch
Pose2Pose) `evaluate()`, with `common/utils/transforms.py rigid_align` for
every "PA" metric. Upstream loops over samples in numpy; here each metric is a
batched, jit-friendly function of predicted and ground-truth meshes
(B, V, 3) in metres that returns a dict of (B,) arrays in millimetres under
upstream's `eval_result` keys. `concat_results`, `summarize` and
`format_table` then do what upstream's test loop and `print_eval_result` do.

    model = metrics.load_eval_model('human_model_files')
    per_sample = metrics.ehf_metrics(pred_mesh, gt_mesh_world, model)   # jitted
    summary = metrics.summarize(metrics.concat_results([per_sample, ...]))
    print(metrics.format_table(summary))

Computation follows the inputs' dtype: float32 meshes give float32 metrics
(upstream's are partly float32 and partly float64; the two agree to about
1e-3 mm), float64 meshes under `jax_enable_x64` give float64.

The AGORA result files for the official evaluation server are written by
`h4w_jax.evaluation.agora_files`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from h4w_jax.common.dataset_constants import EHF_GT_ROTATION
from smplx_jax import extras
from smplx_jax import vertex_ids as vids

_HIGHEST = jax.lax.Precision.HIGHEST


# upstream: human_models.py SMPLX.J_regressor_idx, rows of the SMPL-X
# J_regressor used to translate a part of the prediction onto the GT.
SMPLX_PELVIS, SMPLX_LWRIST, SMPLX_RWRIST, SMPLX_NECK = 0, 20, 21, 12
_ALIGN_ROWS = (SMPLX_PELVIS, SMPLX_LWRIST, SMPLX_RWRIST, SMPLX_NECK)

# SMPL-X J_regressor rows: left-hand joints start at 25, right-hand at 40, 3
# per finger in SMPL-X's finger order.
_SMPLX_HAND_START = {'left': 25, 'right': 40}
_SMPLX_FINGER_ORDER = ('index', 'middle', 'pinky', 'ring', 'thumb')
_SMPLX_WRIST = {'left': SMPLX_LWRIST, 'right': SMPLX_RWRIST}
# upstream: make_hand_regressor's order: wrist, then thumb, index, middle,
# ring, pinky, each as 3 joints plus the fingertip vertex.
_EVAL_FINGER_ORDER = ('thumb', 'index', 'middle', 'ring', 'pinky')

# upstream (Pose2Pose): PW3D.joint_set_h36m. The 17 H36M joints regressed from
# the mesh by J_regressor_h36m_smpl.npy; Pelvis is the root, 14 are scored.
H36M_ROOT_IDX = 0
H36M_EVAL_JOINTS = (1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15, 16)

EHF_KEYS = ('pa_mpvpe_all', 'pa_mpvpe_hand', 'pa_mpvpe_face', 'mpvpe_all', 'mpvpe_hand',
            'mpvpe_face', 'pa_mpjpe_body', 'pa_mpjpe_hand')
AGORA_KEYS = EHF_KEYS[:6]
PW3D_KEYS = ('mpjpe', 'pa_mpjpe', 'mpvpe', 'pa_mpvpe')

# upstream's print_eval_result labels, in its print order.
METRIC_LABELS = {
    'pa_mpvpe_all': 'PA MPVPE (All)', 'pa_mpvpe_hand': 'PA MPVPE (Hands)',
    'pa_mpvpe_face': 'PA MPVPE (Face)', 'mpvpe_all': 'MPVPE (All)',
    'mpvpe_hand': 'MPVPE (Hands)', 'mpvpe_face': 'MPVPE (Face)',
    'pa_mpjpe_body': 'PA MPJPE (Body)', 'pa_mpjpe_hand': 'PA MPJPE (Hands)',
    'mpjpe': 'MPJPE', 'pa_mpjpe': 'PA MPJPE', 'mpvpe': 'MPVPE', 'pa_mpvpe': 'PA MPVPE',
}


# ---------------------------------------------------------------------------
# Regressors and vertex subsets


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EvalModel:
  """What the SMPL-X metrics need from the body model, as a pytree of arrays.

  upstream: human_models.py SMPLX (`J_regressor`, `J_regressor_idx`,
  `j14_regressor`, `orig_hand_regressor`, `hand_vertex_idx`,
  `face_vertex_idx`).
  """
  align_regressor: jax.Array    # (4, V) J_regressor rows: pelvis, lwrist, rwrist, neck
  j14_regressor: jax.Array      # (14, V) SMPLX_to_J14
  hand_regressor: jax.Array     # (2, 21, V) left, right: upstream's orig_hand_regressor
  hand_vertex_ids: jax.Array    # (2, 778) int32 left, right: MANO_SMPLX_vertex_ids
  face_vertex_ids: jax.Array    # (5023,) int32: SMPL-X__FLAME_vertex_ids


def hand_joint_regressor(j_regressor) -> np.ndarray:
  """upstream: SMPLX.make_hand_regressor, as one (2, 21, V) array (left, right).

  Each hand's 21 rows: the wrist joint, then per finger (thumb, index, middle,
  ring, pinky) its 3 SMPL-X joints and a one-hot row picking the fingertip
  vertex (`smplx_jax.vertex_ids.SMPLX`, e.g. lthumb 5361).

  Args:
    j_regressor: (55, V) SMPL-X J_regressor.
  """
  j_regressor = np.asarray(j_regressor)
  num_verts = j_regressor.shape[1]
  hands = []
  for side in ('left', 'right'):
    rows = [j_regressor[_SMPLX_WRIST[side]]]
    for finger in _EVAL_FINGER_ORDER:
      start = _SMPLX_HAND_START[side] + 3 * _SMPLX_FINGER_ORDER.index(finger)
      rows.extend(j_regressor[start:start + 3])
      tip = np.zeros(num_verts, j_regressor.dtype)
      tip[vids.SMPLX[side[0] + finger]] = 1.0
      rows.append(tip)
    hands.append(np.stack(rows))
  return np.stack(hands)


def make_eval_model(j_regressor, j14_regressor, hand_vertex_ids: Mapping[str, np.ndarray],
                    face_vertex_ids, dtype=jnp.float32) -> EvalModel:
  """EvalModel from the SMPL-X J_regressor (55, V) and the Hand4Whole extras.

  `hand_vertex_ids` is {'left_hand': (778,), 'right_hand': (778,)} as
  `smplx_jax.extras.load_hand_vertex_ids` returns it.
  """
  j_regressor = np.asarray(j_regressor)
  if j_regressor.ndim != 2 or j_regressor.shape[0] <= max(_SMPLX_HAND_START.values()) + 14:
    raise ValueError(f'j_regressor must be the SMPL-X (55, V) J_regressor; got {j_regressor.shape}')
  num_verts = j_regressor.shape[1]
  j14 = np.asarray(j14_regressor)
  if j14.shape != (14, num_verts):
    raise ValueError(f'j14_regressor has shape {j14.shape}; expected (14, {num_verts})')
  return EvalModel(
      align_regressor=jnp.asarray(j_regressor[list(_ALIGN_ROWS)], dtype),
      j14_regressor=jnp.asarray(j14, dtype),
      hand_regressor=jnp.asarray(hand_joint_regressor(j_regressor), dtype),
      hand_vertex_ids=jnp.asarray(np.stack([hand_vertex_ids['left_hand'],
                                            hand_vertex_ids['right_hand']]), jnp.int32),
      face_vertex_ids=jnp.asarray(face_vertex_ids, jnp.int32))


def load_eval_model(human_model_path: str | os.PathLike, layer=None,
                    dtype=jnp.float32) -> EvalModel:
  """EvalModel from a human_model_files folder (upstream's layout).

  Reads the neutral SMPL-X J_regressor (from `layer`, a `smplx_jax.SMPLX`,
  when given, else from `smplx/SMPLX_NEUTRAL.npz`) and, from `smplx/`,
  SMPLX_to_J14.pkl, MANO_SMPLX_vertex_ids.pkl and SMPL-X__FLAME_vertex_ids.npy.
  """
  if layer is None:
    import smplx_jax
    layer = smplx_jax.create(human_model_path, 'smplx', gender='neutral', use_pca=False)
  smplx_dir = Path(human_model_path) / 'smplx'
  num_verts = layer.J_regressor.shape[1]
  return make_eval_model(np.asarray(layer.J_regressor),
                         extras.load_j14_regressor(smplx_dir, num_verts),
                         extras.load_hand_vertex_ids(smplx_dir, num_verts),
                         extras.load_face_vertex_ids(smplx_dir, num_verts), dtype)


# ---------------------------------------------------------------------------
# Similarity (Procrustes) alignment


def _weights(shape, dtype, mask):
  """(B, N) weights that sum to 1 per sample (uniform without a mask)."""
  if mask is None:
    return jnp.full(shape, 1.0 / shape[-1], dtype)
  mask = jnp.asarray(mask, dtype)
  return mask / jnp.sum(mask, axis=-1, keepdims=True)


def _det3(m):
  """Determinant of (..., 3, 3) matrices (triple product of the rows)."""
  return jnp.sum(m[..., 0, :] * jnp.cross(m[..., 1, :], m[..., 2, :]), axis=-1)


def _umeyama(pred, target, mask):
  """Shared by similarity_transform and similarity_align (see there)."""
  dtype = jnp.result_type(pred, target, jnp.float32)
  pred, target = jnp.asarray(pred, dtype), jnp.asarray(target, dtype)
  w = _weights(pred.shape[:-1], dtype, mask)

  def centred(x):
    # Two passes: far from the origin (t_z ~ 40 m is common for the virtual
    # camera) a float32 mean is off by ~0.1 mm; the second pass corrects it.
    mu = jnp.einsum('bn,bnc->bc', w, x, precision=_HIGHEST)
    mu = mu + jnp.einsum('bn,bnc->bc', w, x - mu[:, None], precision=_HIGHEST)
    return mu, x - mu[:, None]

  mu_p, p = centred(pred)
  mu_t, t = centred(target)
  cov = jnp.einsum('bn,bni,bnj->bij', w, p, t, precision=_HIGHEST)
  u, s, vt = jnp.linalg.svd(cov)
  rot = jnp.einsum('bki,bjk->bij', vt, u, precision=_HIGHEST)   # V U^T
  flip = jnp.where(_det3(rot) < 0, -1.0, 1.0).astype(dtype)
  sign = jnp.stack([jnp.ones_like(flip), jnp.ones_like(flip), flip], axis=-1)
  s = s * sign
  vt = vt * sign[:, :, None]
  rot = jnp.einsum('bki,bjk->bij', vt, u, precision=_HIGHEST)
  var = jnp.einsum('bn,bnc,bnc->b', w, p, p, precision=_HIGHEST)
  scale = jnp.sum(s, axis=-1) / var
  return scale, rot, mu_p, mu_t, p


def similarity_transform(pred, target, mask=None):
  """Scale, rotation and translation that best map `pred` onto `target`.

  upstream: common/utils/transforms.py rigid_transform_3D (Umeyama): the SVD
  of the cross-covariance H = (A - mean A)^T (B - mean B) / n, R = V U^T; if
  det R < 0 the last singular value and the last row of V^T change sign
  (upstream's reflection fix; det R == 0 is left alone, as upstream); the
  scale is sum(s) / var(A) with var summed over axes, ddof 0.

  Args:
    pred: (B, N, 3) points to move (upstream's A).
    target: (B, N, 3) points to match (upstream's B).
    mask: optional (B, N) point weights (1 keeps, 0 drops); None uses all
      points. A sample with no weight, or with all points equal, gives NaN or
      inf, as upstream's division by zero.
  Returns:
    scale (B,), rot (B, 3, 3) and trans (B, 3) with
    aligned = scale * pred @ rot^T + trans.
  """
  scale, rot, mu_p, mu_t, _ = _umeyama(pred, target, mask)
  trans = mu_t - scale[:, None] * jnp.einsum('bij,bj->bi', rot, mu_p, precision=_HIGHEST)
  return scale, rot, trans


def similarity_align(pred, target, mask=None):
  """upstream: transforms.py rigid_align. `pred` (B, N, 3) moved onto `target`.

  See `similarity_transform`; masked-out points are moved too. Computed as
  scale * rot (pred - mean) + target mean, which equals upstream's
  c R A + t but keeps float32 precision far from the origin.
  """
  scale, rot, _, mu_t, centred = _umeyama(pred, target, mask)
  moved = jnp.einsum('bij,bnj->bni', rot, centred, precision=_HIGHEST)
  return scale[:, None, None] * moved + mu_t[:, None]


def mean_point_error(pred, target, mask=None):
  """Mean Euclidean distance per sample, (B, N, 3) metres -> (B,) millimetres."""
  dist = jnp.sqrt(jnp.sum((pred - target) ** 2, axis=-1))
  if mask is None:
    return jnp.mean(dist, axis=-1) * 1000.0
  return jnp.sum(dist * _weights(dist.shape, dist.dtype, mask), axis=-1) * 1000.0


# ---------------------------------------------------------------------------
# Dataset metrics


def _regress(regressor, vertices):
  """(J, V) x (B, V, 3) -> (B, J, 3)."""
  return jnp.einsum('jv,bvc->bjc', regressor, vertices, precision=_HIGHEST)


def _pa_error(pred, target):
  return mean_point_error(similarity_align(pred, target), target)


def whole_body_metrics(pred, gt, model: EvalModel, with_joints: bool = True):
  """Upstream's SMPL-X metrics of camera-frame meshes, per sample.

  upstream: EHF.evaluate after rotating the GT, and AGORA.evaluate
  (`with_joints=False`). Vertex subsets are compared in two ways:
  - MPVPE: the prediction is translated so that one J_regressor joint
    coincides with the GT's (pelvis for all vertices, the wrist for each
    hand's 778 vertices, the neck for the 5023 face vertices);
  - PA-MPVPE: each subset is similarity-aligned on its own.
  Hands are the mean of the left and right errors. With joints, PA-MPJPE body
  uses the 14 J14 joints and PA-MPJPE hands the 21 joints per hand of
  `model.hand_regressor`, each similarity-aligned.

  Args:
    pred, gt: (B, V, 3) SMPL-X meshes in metres, in the same camera frame.
    model: EvalModel.
    with_joints: add 'pa_mpjpe_body' and 'pa_mpjpe_hand'.
  Returns:
    {key: (B,) mm} for the keys of EHF_KEYS (AGORA_KEYS without joints).
  """
  joint_pred = _regress(model.align_regressor, pred)   # (B, 4, 3)
  joint_gt = _regress(model.align_regressor, gt)

  def translated(part, row):
    return part - joint_pred[:, row, None] + joint_gt[:, row, None]

  res = {
      'pa_mpvpe_all': _pa_error(pred, gt),
      'mpvpe_all': mean_point_error(translated(pred, 0), gt),
  }
  pa_hand, hand = [], []
  for side in range(2):
    ids = model.hand_vertex_ids[side]
    pred_hand, gt_hand = pred[:, ids], gt[:, ids]
    pa_hand.append(_pa_error(pred_hand, gt_hand))
    hand.append(mean_point_error(translated(pred_hand, 1 + side), gt_hand))
  res['pa_mpvpe_hand'] = (pa_hand[0] + pa_hand[1]) / 2
  res['mpvpe_hand'] = (hand[0] + hand[1]) / 2
  pred_face, gt_face = pred[:, model.face_vertex_ids], gt[:, model.face_vertex_ids]
  res['pa_mpvpe_face'] = _pa_error(pred_face, gt_face)
  res['mpvpe_face'] = mean_point_error(translated(pred_face, 3), gt_face)
  if with_joints:
    res['pa_mpjpe_body'] = _pa_error(_regress(model.j14_regressor, pred),
                                     _regress(model.j14_regressor, gt))
    pa_joint = [_pa_error(_regress(model.hand_regressor[side], pred),
                          _regress(model.hand_regressor[side], gt)) for side in range(2)]
    res['pa_mpjpe_hand'] = (pa_joint[0] + pa_joint[1]) / 2
  return {k: res[k] for k in (EHF_KEYS if with_joints else AGORA_KEYS)}


@jax.jit
def ehf_metrics(pred, gt_world, model: EvalModel):
  """upstream: EHF.evaluate. Keys EHF_KEYS, (B,) mm each.

  Args:
    pred: (B, 10475, 3) predicted mesh in the camera frame (upstream's
      `smplx_mesh_cam`: vertices + cam_trans), metres.
    gt_world: (B, 10475, 3) EHF GT mesh as stored (`*_align.ply`); it is
      rotated by EHF_GT_ROTATION into the camera frame first.
    model: EvalModel.
  """
  gt_world = jnp.asarray(gt_world)
  rot = jnp.asarray(EHF_GT_ROTATION, jnp.result_type(gt_world, jnp.float32))
  gt = jnp.einsum('ij,bvj->bvi', rot, gt_world, precision=_HIGHEST)
  return whole_body_metrics(pred, gt, model, with_joints=True)


@jax.jit
def agora_metrics(pred, gt, model: EvalModel):
  """upstream: AGORA.evaluate. Keys AGORA_KEYS, (B,) mm each.

  Same as EHF without the GT rotation and without PA-MPJPE; `pred` and `gt`
  are (B, 10475, 3) camera-frame meshes in metres.
  """
  return whole_body_metrics(pred, gt, model, with_joints=False)


@jax.jit
def pw3d_metrics(pred, gt, h36m_regressor):
  """upstream (Pose2Pose): PW3D.evaluate. Keys PW3D_KEYS, (B,) mm each.

  MPJPE and PA-MPJPE on the 14 H36M eval joints, pelvis-relative (the
  regressor's row H36M_ROOT_IDX); MPVPE and PA-MPVPE on the whole mesh after
  subtracting the same pelvis joint from each mesh. A similarity alignment
  ignores translations, so the PA values do not depend on the pelvis.

  Args:
    pred, gt: (B, V, 3) meshes in metres (SMPL in upstream, V = 6890).
    h36m_regressor: (17, V), upstream's J_regressor_h36m_smpl.npy for SMPL.
  """
  joint_gt = _regress(h36m_regressor, gt)
  joint_pred = _regress(h36m_regressor, pred)
  eval_joints = jnp.asarray(H36M_EVAL_JOINTS)
  joint_gt = (joint_gt - joint_gt[:, H36M_ROOT_IDX, None])[:, eval_joints]
  joint_pred = (joint_pred - joint_pred[:, H36M_ROOT_IDX, None])[:, eval_joints]
  mesh_gt = gt - _regress(h36m_regressor[:1], gt)
  mesh_pred = pred - _regress(h36m_regressor[:1], pred)
  return {
      'mpjpe': mean_point_error(joint_pred, joint_gt),
      'pa_mpjpe': _pa_error(joint_pred, joint_gt),
      'mpvpe': mean_point_error(mesh_pred, mesh_gt),
      'pa_mpvpe': _pa_error(mesh_pred, mesh_gt),
  }


# ---------------------------------------------------------------------------
# Aggregation and printing


def concat_results(batches: Sequence[Mapping[str, jax.Array]],
                   num_samples: int | None = None) -> dict[str, np.ndarray]:
  """Per-batch metric dicts -> one dict of (N,) numpy arrays.

  `num_samples` drops the padding of a last, padded batch (padding at the end).
  """
  if not batches:
    raise ValueError('no metric batches to concatenate')
  keys = list(batches[0])
  out = {k: np.concatenate([np.asarray(b[k]).reshape(-1) for b in batches]) for k in keys}
  if num_samples is not None:
    out = {k: v[:num_samples] for k, v in out.items()}
  return out


def summarize(per_sample: Mapping[str, np.ndarray]) -> dict[str, float]:
  """upstream: print_eval_result's np.mean over samples; JSON-ready floats (mm)."""
  return {k: float(np.mean(np.asarray(v, np.float64))) for k, v in per_sample.items()}


def format_table(summary: Mapping[str, float], title: str | None = None) -> str:
  """Lines as upstream's print_eval_result ('PA MPVPE (All): 50.30 mm'), in
  its order; keys it does not know follow under their own names."""
  known = [k for k in METRIC_LABELS if k in summary]
  rest = [k for k in summary if k not in METRIC_LABELS]
  lines = [title] if title else []
  lines += [f'{METRIC_LABELS.get(k, k)}: {summary[k]:.2f} mm' for k in known + rest]
  return '\n'.join(lines)
