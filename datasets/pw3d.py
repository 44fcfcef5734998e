"""3DPW (test set for MPJPE / PA-MPJPE): reader and synthetic writer.

upstream: data/PW3D/PW3D.py (branch main; the metrics are the Pose2Pose
branch's, `h4w_jax.evaluation.metrics.pw3d_metrics`). On disk, under `data_root`:

  PW3D/data/3DPW_{train,validation,test}.json   COCO format
    images: id, sequence, file_name, width, height,
            cam_param {focal (2,), princpt (2,)} (pixels)
    annotations: id, image_id, bbox (xywh pixels),
            smpl_param {pose (72,), shape (10,), trans (3,) metres, gender?}
  PW3D/data/imageFiles/<sequence>/<file_name>

The fits are SMPL in the camera frame (no extrinsics). 3DPW has no SMPL-X fit
and upstream supervises nothing with it, so a record's joint and SMPL-X fields
stay empty (all validity flags 0); it carries the SMPL ground truth instead:

  smpl_pose (72,) f32, smpl_shape (10,) f32, smpl_trans (3,) f32 metres,
  smpl_gender () int32 (example.GENDERS index)

from which the evaluation builds the GT mesh with the SMPL layer of that
gender, neutral when the annotation has no `gender` (upstream's
process_human_model_output 'smpl' branch). Boxes go through process_bbox;
annotations whose box is degenerate are dropped as upstream drops them and
counted in `num_dropped['bbox']`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from h4w_datasets import db
from h4w_datasets import example as ex
from h4w_datasets import preprocessing as pre

_log = logging.getLogger(__name__)

# upstream: human_models.py SMPL.orig_joints_name / orig_flip_pairs.
SMPL_JOINT_NAMES = (
    'Pelvis', 'L_Hip', 'R_Hip', 'Spine_1', 'L_Knee', 'R_Knee', 'Spine_2', 'L_Ankle', 'R_Ankle',
    'Spine_3', 'L_Foot', 'R_Foot', 'Neck', 'L_Collar', 'R_Collar', 'Head', 'L_Shoulder',
    'R_Shoulder', 'L_Elbow', 'R_Elbow', 'L_Wrist', 'R_Wrist', 'L_Hand', 'R_Hand')
SMPL_FLIP_PAIRS = ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21),
                   (22, 23))

# 3D ground truth, but only an evaluation set upstream: nothing here is supervised.
INFO = db.DatasetInfo(name='PW3D', joint_names=SMPL_JOINT_NAMES, flip_pairs=SMPL_FLIP_PAIRS,
                      is_3d=True)

SPLITS = ('train', 'validation', 'test')
SMPL_PARAM_SIZES = {'pose': 72, 'shape': 10, 'trans': 3}

# upstream (Pose2Pose): PW3D.joint_set_h36m's regressor, which the 3DPW metrics need.
H36M_REGRESSOR = Path('Human36M') / 'J_regressor_h36m_smpl.npy'


def _annotation_path(data_root, split) -> Path:
  return Path(data_root) / 'PW3D' / 'data' / f'3DPW_{split}.json'


def _vector(value, size, where, key) -> np.ndarray:
  try:
    out = np.asarray(value, np.float32).reshape(-1)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where}: {key!r} is not numeric: {e}') from e
  if out.shape != (size,) or not np.all(np.isfinite(out)):
    raise ValueError(f'{where}: {key!r} must be {size} finite numbers, got shape {out.shape}')
  return out


class PW3D:
  """upstream: PW3D(transform, data_split). Records in annotation order.

  Args:
    data_root: the folder that holds `PW3D/` (upstream's `data/`).
    split: 'train', 'validation' or 'test'.
  """

  def __init__(self, data_root, split: str):
    if split not in SPLITS:
      raise ValueError(f'PW3D split must be one of {SPLITS}, got {split!r}')
    self.info = INFO
    self.split = split
    path = _annotation_path(data_root, split)
    content = db.read_json(path)
    image_dir = path.parent / 'imageFiles'

    images = {}
    with db.malformed(path, ' (an object with images and annotations expected)'):
      image_entries = list(content.get('images', []))
      annotation_entries = list(content.get('annotations', []))
    for k, img in enumerate(image_entries):
      with db.malformed(path, f' image #{k}'):
        where = f"{path} image id {img.get('id')}"
        try:
          cam = img['cam_param']
          images[img['id']] = {
              'path': str(image_dir / img['sequence'] / img['file_name']),
              'shape': db.image_shape(img, where),
              'focal': _vector(cam['focal'], 2, where, 'cam_param.focal'),
              'princpt': _vector(cam['princpt'], 2, where, 'cam_param.princpt'),
          }
        except KeyError as e:
          raise ValueError(f'{where}: missing key {e}') from e

    self.num_dropped = {'bbox': 0}
    paths, rows = [], []
    for k, ann in enumerate(annotation_entries):
      with db.malformed(path, f' annotation #{k}'):
        where = f"{path} annotation id {ann.get('id')}"
        try:
          img = images[ann['image_id']]
          param = ann['smpl_param']
          smpl = {key: _vector(param[key], n, where, f'smpl_param.{key}')
                  for key, n in SMPL_PARAM_SIZES.items()}
          box = _vector(ann['bbox'], 4, where, 'bbox')
          ann_id = int(ann['id'])
        except KeyError as e:
          raise ValueError(f'{where}: missing key {e}') from e
        gender = param.get('gender', 'neutral')
        if gender not in ex.GENDERS:
          raise ValueError(f'{where}: smpl_param.gender must be one of {ex.GENDERS}, '
                           f'got {gender!r}')
        height, width = img['shape']
        bbox = pre.process_bbox(box, width, height, where=f'{where} bbox')
        if bbox is None:
          self.num_dropped['bbox'] += 1
          continue
        paths.append(img['path'])
        rows.append((bbox, img['shape'], img['focal'], img['princpt'], smpl['pose'],
                     smpl['shape'], smpl['trans'], ex.GENDERS.index(gender), ann_id,
                     int(ann['image_id'])))

    self._img_path = paths
    columns = list(zip(*rows)) if rows else [[]] * 10
    self._bbox = np.asarray(columns[0], np.float32).reshape(-1, 4)
    self._img_shape = np.asarray(columns[1], np.int32).reshape(-1, 2)
    self._focal = np.asarray(columns[2], np.float32).reshape(-1, 2)
    self._princpt = np.asarray(columns[3], np.float32).reshape(-1, 2)
    self._pose = np.asarray(columns[4], np.float32).reshape(-1, 72)
    self._shape = np.asarray(columns[5], np.float32).reshape(-1, 10)
    self._trans = np.asarray(columns[6], np.float32).reshape(-1, 3)
    self._gender = np.asarray(columns[7], np.int32)
    self._ann_id = np.asarray(columns[8], np.int64)
    self._img_id = np.asarray(columns[9], np.int64)
    _log.info('PW3D %s: %d records from %s, dropped %s', split, len(paths), path,
              self.num_dropped)

  def __len__(self) -> int:
    return len(self._img_path)

  def __getitem__(self, i: int) -> dict:
    if not 0 <= i < len(self):
      raise IndexError(f'PW3D {self.split}: index {i} out of range [0, {len(self)})')
    record = ex.empty_record(INFO.num_joints)
    record.update(
        img_path=self._img_path[i], img_shape=self._img_shape[i].copy(),
        bbox=self._bbox[i].copy(), cam_focal=self._focal[i].copy(),
        cam_princpt=self._princpt[i].copy(), ann_id=self._ann_id[i], img_id=self._img_id[i],
        smpl_pose=self._pose[i].copy(), smpl_shape=self._shape[i].copy(),
        smpl_trans=self._trans[i].copy(), smpl_gender=self._gender[i])
    return record


# ---------------------------------------------------------------------------
# Synthetic mini dataset

# People alternate between two sequences per split, two frames each.
_SEQUENCES = ('courtyard_synth_00', 'downtown_synth_01')


def _h36m_regressor(smpl_regressor: np.ndarray, template: np.ndarray) -> np.ndarray:
  """A plausible (17, 6890) H36M-from-SMPL regressor: SMPL joint rows, a head-top vertex."""
  rows = {'Pelvis': [0], 'R_Hip': [2], 'R_Knee': [5], 'R_Ankle': [8], 'L_Hip': [1],
          'L_Knee': [4], 'L_Ankle': [7], 'Torso': [3, 6], 'Neck': [12], 'Head': [15],
          'L_Shoulder': [16], 'L_Elbow': [18], 'L_Wrist': [20], 'R_Shoulder': [17],
          'R_Elbow': [19], 'R_Wrist': [21]}
  names = ('Pelvis', 'R_Hip', 'R_Knee', 'R_Ankle', 'L_Hip', 'L_Knee', 'L_Ankle', 'Torso', 'Neck',
           'Head', 'Head_top', 'L_Shoulder', 'L_Elbow', 'L_Wrist', 'R_Shoulder', 'R_Elbow',
           'R_Wrist')
  out = np.zeros((len(names), smpl_regressor.shape[1]), np.float32)
  for k, name in enumerate(names):
    if name == 'Head_top':
      out[k, int(np.argmax(template[:, 1]))] = 1   # the template's highest vertex (y up)
    else:
      out[k] = smpl_regressor[rows[name]].mean(axis=0)
  return out


def write_synthetic(data_root, human_model_path, *, num: int = 8, seed: int = 0) -> Path:
  """Write `num` rendered SMPL people per split in 3DPW's layout under data_root/PW3D.

  Genders alternate male / female; the last person of each split is neutral and
  its annotation has no `gender` key (the reader's fallback). Every split gets
  one extra annotation with a zero-width box, which the reader drops. Also
  writes data_root/Human36M/J_regressor_h36m_smpl.npy (the 3DPW metrics'
  regressor) when it is not there yet. Images are 320x240 (H, W) JPEGs.
  """
  import cv2
  import smplx_jax
  from h4w_datasets import synthetic

  data_root = Path(data_root)
  out_dir = data_root / 'PW3D' / 'data'
  genders = ['male' if k % 2 == 0 else 'female' for k in range(num - 1)] + ['neutral']
  by_gender = {}
  for offset, gender in enumerate(ex.GENDERS):
    count = genders.count(gender)
    if count:
      by_gender[gender] = iter(synthetic.render_scenes(
          human_model_path, count, seed=seed + 100 * offset, image_shape=(320, 240),
          model_type='smpl', gender=gender))
  scenes = [next(by_gender[g]) for g in genders]

  image_id = ann_id = 0
  for split in SPLITS:
    images, annotations = [], []
    for k, scene in enumerate(scenes):
      sequence = f'{split}_{_SEQUENCES[k % 2]}'
      file_name = f'image_{k // 2:05d}.jpg'
      img_dir = out_dir / 'imageFiles' / sequence
      os.makedirs(img_dir, exist_ok=True)
      cv2.imwrite(str(img_dir / file_name), scene.image[:, :, ::-1],
                  [cv2.IMWRITE_JPEG_QUALITY, 95])
      height, width = scene.image_shape
      images.append({'id': image_id, 'file_name': file_name, 'sequence': sequence,
                     'width': width, 'height': height,
                     'cam_param': {'focal': scene.focal.tolist(),
                                   'princpt': scene.princpt.tolist()}})
      param = {k: scene.params[k].tolist() for k in SMPL_PARAM_SIZES}
      if scene.gender != 'neutral':
        param['gender'] = scene.gender
      bbox = pre.get_bbox(scene.joints_img, np.ones(len(scene.joints_img)))
      annotations.append({'id': ann_id, 'image_id': image_id, 'bbox': bbox.tolist(),
                          'smpl_param': param})
      ann_id += 1
      image_id += 1
    # A second "person" on the first image whose box has no width: dropped.
    annotations.append({'id': ann_id, 'image_id': images[0]['id'], 'bbox': [20.0, 30.0, 0.0, 50.0],
                        'smpl_param': annotations[0]['smpl_param']})
    ann_id += 1
    with open(_annotation_path(data_root, split), 'w') as f:
      json.dump({'images': images, 'annotations': annotations}, f)

  regressor_path = data_root / H36M_REGRESSOR
  if not regressor_path.exists():
    model = smplx_jax.create(human_model_path, 'smpl', gender='neutral')
    os.makedirs(regressor_path.parent, exist_ok=True)
    np.save(regressor_path, _h36m_regressor(np.asarray(model.J_regressor, np.float32),
                                            np.asarray(model.v_template, np.float32)))
  return data_root
