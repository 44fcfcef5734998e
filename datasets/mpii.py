"""MPII: a 2D training set with NeuralAnnot body fits (upstream: data/MPII/MPII.py).

Files under `<data_root>/MPII/data/` (upstream's layout):

  annotations/train.json        COCO: images (id, file_name, width, height),
                                annotations (id, image_id, bbox xywh, keypoints 16x3)
  annotations/MPII_train_SMPLX_NeuralAnnot.json
      {str(ann_id): {smplx_param: {root_pose, body_pose, shape, trans},
                     cam_param: {focal, princpt}}}, camera frame, body only
  <file_name>                   the images (file_name starts with images/)

Only a train split exists; upstream loads it whatever split it is given, this
reader accepts only 'train'. No annotation is filtered except those whose box
`process_bbox` rejects (counted in num_dropped['bbox']); annotations without
any labelled keypoint are kept, as upstream keeps them. An annotation without
a fit keeps its 2D joints with smplx_valid = 0 (quirk Q15).

joint_valid is the raw third keypoint column, not binarised (quirk Q13: a 2
would weigh double in the loss); `binarize_valid=True` maps it to (v > 0).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from h4w_datasets import db as dbm
from h4w_datasets import example as ex
from h4w_datasets import human36m as h36m
from h4w_datasets import preprocessing as pre
from h4w_datasets import synthetic

JOINT_NAMES = ('R_Ankle', 'R_Knee', 'R_Hip', 'L_Hip', 'L_Knee', 'L_Ankle', 'Pelvis', 'Thorax',
               'Neck', 'Head_top', 'R_Wrist', 'R_Elbow', 'R_Shoulder', 'L_Shoulder', 'L_Elbow',
               'L_Wrist')
INFO = dbm.DatasetInfo(
    name='MPII', joint_names=JOINT_NAMES,
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)), is_3d=False,
    smplx_rotation_invalid=dbm.BODY_FIT_ROTATION_INVALID,
    smplx_joint_invalid=dbm.BODY_FIT_JOINT_INVALID,
    hand_face_box_dummy=dbm.ZERO_BOX)

ANNOT_FILE = 'train.json'
FIT_FILE = 'MPII_train_SMPLX_NeuralAnnot.json'


class MPII:
  """upstream: MPII(transform, 'train'); records instead of tensors.

  Args:
    data_root: the folder that holds `MPII/`.
    split: 'train' (the only split).
    binarize_valid: joint_valid = (v > 0) instead of the raw column (deviation,
      off by default).
  Attributes: info, num_dropped ({'bbox': ...}).
  """

  def __init__(self, data_root: os.PathLike, split: str = 'train', *,
               binarize_valid: bool = False):
    if split != 'train':
      raise ValueError(f"MPII: only the 'train' split exists, got {split!r}")
    self.info = INFO
    self.split = split
    data_dir = Path(data_root) / 'MPII' / 'data'
    annot_path = data_dir / 'annotations' / ANNOT_FILE
    fit_path = data_dir / 'annotations' / FIT_FILE
    data = h36m.read_json(annot_path)
    fits = h36m.read_json(fit_path)
    with dbm.malformed(annot_path, ' (COCO-style images and annotations expected)'):
      images = {img['id']: img for img in data['images']}
      annotations = list(data['annotations'])
    self.num_dropped = {'bbox': 0}
    rows, seen_ids = [], set()
    for k, ann in enumerate(annotations):
      with dbm.malformed(annot_path, f' annotation #{k}'):
        record = self._parse(ann, images, fits, data_dir, annot_path, fit_path, seen_ids,
                             binarize_valid)
      if record is not None:
        rows.append(record)
    self._table = h36m.stack_rows(rows, INFO.num_joints)
    h36m.log_loaded('MPII', split, len(rows), self.num_dropped)

  def _parse(self, ann, images, fits, data_dir, annot_path, fit_path, seen_ids, binarize_valid):
    ann_id, img, where = h36m.checked_annotation(ann, images, annot_path, seen_ids,
                                                 ('image_id', 'bbox', 'keypoints'))
    try:
      file_name = img['file_name']
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f'{where}: image entry lacks {e}') from e
    shape = dbm.image_shape(img, where)
    bbox = pre.process_bbox(ann['bbox'], shape[1], shape[0], where=f'{where} bbox')
    if bbox is None:
      self.num_dropped['bbox'] += 1
      return None
    keypoints = h36m.as_array(ann['keypoints'], (len(JOINT_NAMES), 3), where, 'keypoints')
    valid = keypoints[:, 2:].copy()
    if binarize_valid:
      valid = (valid > 0).astype(np.float32)
    fit = fits.get(str(ann_id))
    record = ex.empty_record(INFO.num_joints)
    if fit is not None:
      fit_where = f'{fit_path} entry {ann_id}'
      if not isinstance(fit, Mapping) or 'smplx_param' not in fit or 'cam_param' not in fit:
        raise ValueError(f'{fit_where}: needs smplx_param and cam_param')
      record.update(h36m.smplx_fit_fields(fit['smplx_param'], fit_where))
      cam = fit['cam_param']
      if not isinstance(cam, Mapping):
        raise ValueError(f'{fit_where}: cam_param is not an object')
      record['cam_focal'] = h36m.as_array(cam.get('focal'), (2,), fit_where, 'focal')
      record['cam_princpt'] = h36m.as_array(cam.get('princpt'), (2,), fit_where, 'princpt')
    joint_img = keypoints.copy()
    joint_img[:, 2] = 0
    record.update(
        img_path=str((data_dir / file_name).absolute()), img_shape=np.array(shape, np.int32),
        bbox=bbox, joint_img=joint_img, joint_valid=valid,
        ann_id=np.int64(ann_id), img_id=np.int64(ann['image_id']))
    ex.check_record(record, INFO.num_joints, where)
    return record

  def __len__(self) -> int:
    return len(self._table['img_path'])

  def __getitem__(self, i: int) -> dict[str, Any]:
    return h36m.record_at(self._table, i)


def write_synthetic(data_root, human_model_path, *, num: int = 8, seed: int = 0) -> Path:
  """Write a mini MPII train split from rendered scenes; returns `data_root/MPII`.

  One annotation per scene (ann_id = image id = 100 * k + scene), keypoints =
  the scene's joints projected with its own camera, every joint labelled (1)
  except: scene 1 marks its head top unlabelled (0, coordinates 0) and its
  right ankle 2 (kept raw by the reader, quirk Q13), scene 2 has no fit
  (2D only). Two extras: a copy of scene 0 with every keypoint unlabelled
  (kept, as upstream keeps it) and one with a zero-height box (dropped).
  """
  if not 0 < num < 100:
    raise ValueError(f'num must be in 1..99, got {num}')
  data_dir = Path(data_root) / 'MPII' / 'data'
  head_ids = h36m.head_top_vertex_ids(human_model_path)
  scenes = synthetic.render_scenes(human_model_path, num, seed=seed,
                                   image_shape=h36m.SYNTHETIC_IMAGE_SHAPE)
  plan = [(i, 'keep') for i in range(num)] + [(0, 'unlabelled'), (min(1, num - 1), 'bbox')]
  images, annotations, fits = [], [], {}
  for k, (i, kind) in enumerate(plan):
    scene = scenes[i]
    ann_id = 100 * k + i
    file_name = f'images/{ann_id:09d}.jpg'
    h36m.write_image(data_dir / file_name, scene.image)
    height, width = scene.image.shape[:2]
    images.append({'id': ann_id, 'file_name': file_name, 'width': width, 'height': height})
    joints = h36m.scene_joints(scene, JOINT_NAMES, head_ids)
    uv = joints[:, :2] / joints[:, 2:] * scene.focal + scene.princpt
    keypoints = np.concatenate([uv, np.ones((len(JOINT_NAMES), 1))], axis=1)
    if kind == 'unlabelled':
      keypoints[:] = 0
    if kind == 'keep' and i == 1:
      keypoints[JOINT_NAMES.index('Head_top')] = 0
      keypoints[JOINT_NAMES.index('R_Ankle'), 2] = 2
    bbox = h36m.tight_box(scene)
    if kind == 'bbox':
      bbox[3] = 0.0
    annotations.append({'id': ann_id, 'image_id': ann_id, 'category_id': 1, 'bbox': bbox,
                        'keypoints': np.round(keypoints, 3).reshape(-1).tolist(),
                        'num_keypoints': int((keypoints[:, 2] > 0).sum())})
    if not (kind == 'keep' and i == 2):
      fits[str(ann_id)] = {
          'smplx_param': {k2: scene.params[k2].tolist()
                          for k2 in ('root_pose', 'body_pose', 'shape', 'trans')},
          'cam_param': {'focal': scene.focal.tolist(), 'princpt': scene.princpt.tolist()}}
  h36m.write_json(data_dir / 'annotations' / ANNOT_FILE,
                  {'images': images, 'annotations': annotations,
                   'categories': [{'id': 1, 'name': 'person'}]})
  h36m.write_json(data_dir / 'annotations' / FIT_FILE, fits)
  return data_dir.parent
