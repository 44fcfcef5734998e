"""MSCOCO: COCO-WholeBody keypoints and boxes with NeuralAnnot SMPL-X fits (2D set).

upstream: data/MSCOCO/MSCOCO.py (branch main). Files under `data_root/MSCOCO/`:

  annotations/coco_wholebody_{train,val}_v1.0.json   COCO-WholeBody v1.0
  annotations/MSCOCO_train_SMPLX_all_NeuralAnnot.json
      {str(ann_id): {'smplx_param': {root_pose (3), body_pose (63), lhand_pose (45),
       rhand_pose (45), jaw_pose (3), shape (10), expr (10), trans (3) metres,
       lhand_valid, rhand_valid, face_valid}, 'cam_param': {focal (2), princpt (2)}}}
       fits in the camera frame (no R, t)
  images/{train2017,val2017}/<file_name>

Splits: 'train' reads the train JSON and the fits and skips crowd annotations
and those with num_keypoints == 0; 'test' (alias 'val') reads the val JSON and
keeps every annotation (upstream's test mode reads only the boxes: test records
carry no joints and no fit). Both drop an annotation whose body box
`process_bbox` rejects. Upstream reads the JSON through pycocotools' COCO; this
reader uses the json module with the same order (annotation order of the file).

What the reader does that upstream does per item (its `load_data` and
`merge_joint`):
  * the 134-joint set: COCO body 17, Pelvis = mid-hips with validity
    v_L * v_R > 0, feet 6, two 21-point hands (the hand's own wrist is
    `*_Wrist_Hand`), 68 face points (contour first, renamed Face_56..72, then
    Face_5..55); joint_valid = (v > 0), z = 0;
  * fills: an invalid L_Wrist_Hand / R_Wrist_Hand / Face_18 (nose tip) takes
    the coordinates and validity of L_Wrist / R_Wrist / Nose. Only the Face_18
    fill reaches the targets (the *_Wrist_Hand joints have no SMPL-X name);
  * hand and face boxes: xywh -> xyxy when `*_valid`, else zeros with valid 0
    (upstream's None; the transform uses its dummy box for it);
  * fit flags (quirk Q12/Q15): smplx_valid = a fit exists; smplx_lhand_valid =
    'lhand_pose' in param and param['lhand_valid'] (rhand alike);
    smplx_face_valid = 'jaw_pose' and 'expr' in param and param['face_valid'].
    A part that is not valid is stored as zeros, which is the value upstream's
    process_human_model_output uses for it, so the record alone gives
    upstream's targets. No ankle/wrist or foot masks (unlike Human3.6M, Q11).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from h4w_datasets import db
from h4w_datasets import example as ex
from h4w_datasets import preprocessing as pre
from h4w_datasets import synthetic
from h4w_jax.common import joint_sets as js

log = logging.getLogger(__name__)

_BODY = ('Nose', 'L_Eye', 'R_Eye', 'L_Ear', 'R_Ear', 'L_Shoulder', 'R_Shoulder', 'L_Elbow',
         'R_Elbow', 'L_Wrist', 'R_Wrist', 'L_Hip', 'R_Hip', 'L_Knee', 'R_Knee', 'L_Ankle',
         'R_Ankle')
_FEET = ('L_Big_toe', 'L_Small_toe', 'L_Heel', 'R_Big_toe', 'R_Small_toe', 'R_Heel')
_HAND = tuple(f'{finger}_{i}' for finger in ('Thumb', 'Index', 'Middle', 'Ring', 'Pinky')
              for i in range(1, 5))
_FACE = tuple(f'Face_{i}' for i in range(56, 73)) + tuple(f'Face_{i}' for i in range(5, 56))

JOINT_NAMES = (_BODY + ('Pelvis',) + _FEET
               + ('L_Wrist_Hand',) + tuple('L_' + n for n in _HAND)
               + ('R_Wrist_Hand',) + tuple('R_' + n for n in _HAND) + _FACE)

FLIP_PAIRS = (
    ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (18, 21), (19, 22),
     (20, 23))
    + tuple((24 + i, 45 + i) for i in range(21))
    + ((66, 82), (67, 81), (68, 80), (69, 79), (70, 78), (71, 77), (72, 76), (73, 75),  # contour
       (83, 92), (84, 91), (85, 90), (86, 89), (87, 88),                                # brows
       (97, 101), (98, 100),                                                            # nose
       (102, 111), (103, 110), (104, 109), (105, 108), (106, 113), (107, 112),          # eyes
       (114, 120), (115, 119), (116, 118), (121, 125), (122, 124),                      # mouth
       (126, 130), (127, 129), (131, 133)))                                             # lips

INFO = db.DatasetInfo(name='MSCOCO', joint_names=JOINT_NAMES, flip_pairs=FLIP_PAIRS, is_3d=False)

# (annotation key, number of points) in merge_joint's order; Pelvis goes after the body.
KEYPOINT_KEYS = (('keypoints', 17), ('foot_kpts', 6), ('lefthand_kpts', 21),
                 ('righthand_kpts', 21), ('face_kpts', 68))
# (part, box key, validity key) of the hand/face boxes.
BOX_KEYS = (('lhand', 'lefthand_box', 'lefthand_valid'),
            ('rhand', 'righthand_box', 'righthand_valid'), ('face', 'face_box', 'face_valid'))
# (filled joint, source joint): upstream fills an invalid part joint from the body.
FILLS = (('L_Wrist_Hand', 'L_Wrist'), ('R_Wrist_Hand', 'R_Wrist'), ('Face_18', 'Nose'))

ANNOT_FILES = {'train': 'coco_wholebody_train_v1.0.json', 'test': 'coco_wholebody_val_v1.0.json'}
IMAGE_DIRS = {'train': 'train2017', 'test': 'val2017'}
FIT_FILE = 'MSCOCO_train_SMPLX_all_NeuralAnnot.json'

# NeuralAnnot parameter name -> (record field, length). A missing optional part is zeros.
FIT_PARAMS = {'root_pose': 3, 'body_pose': 63, 'lhand_pose': 45, 'rhand_pose': 45,
              'jaw_pose': 3, 'shape': 10, 'expr': 10, 'trans': 3}
FIT_REQUIRED = ('root_pose', 'body_pose', 'shape', 'trans')


def _vector(value, length: int, where: str, key: str) -> np.ndarray:
  try:
    array = np.asarray(value, np.float32).reshape(-1)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where}: {key!r} is not numeric: {e}') from e
  if array.shape != (length,):
    raise ValueError(f'{where}: {key!r} has {array.size} values, expected {length}')
  if not np.all(np.isfinite(array)):
    raise ValueError(f'{where}: {key!r} has non-finite values')
  return array


def _field(mapping, key: str, where: str):
  if not isinstance(mapping, dict) or key not in mapping:
    raise ValueError(f'{where}: missing {key!r}')
  return mapping[key]


def merge_joint(ann: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
  """upstream: merge_joint + the validity and fill rules of load_data.

  Returns joint_img (134, 3) f32 pixels with z = 0 and joint_valid (134, 1) f32.
  """
  parts = [_vector(_field(ann, key, where), 3 * n, where, key).reshape(n, 3)
           for key, n in KEYPOINT_KEYS]
  body = parts[0]
  lhip, rhip = _BODY.index('L_Hip'), _BODY.index('R_Hip')
  pelvis = (body[lhip] + body[rhip]) * np.float32(0.5)
  pelvis[2] = body[lhip, 2] * body[rhip, 2]
  joint_img = np.concatenate([body, pelvis[None]] + parts[1:]).astype(np.float32)
  joint_valid = (joint_img[:, 2:] > 0).astype(np.float32)
  joint_img[:, 2] = 0
  for part_name, body_name in FILLS:
    part, src = JOINT_NAMES.index(part_name), JOINT_NAMES.index(body_name)
    if joint_valid[part, 0] == 0:
      joint_img[part] = joint_img[src]
      joint_valid[part] = joint_valid[src]
  return joint_img, joint_valid


def parse_fit(entry, where: str) -> dict[str, np.ndarray]:
  """One NeuralAnnot entry -> the record's smplx_* and cam_* fields."""
  param = _field(entry, 'smplx_param', where)
  cam = _field(entry, 'cam_param', where)
  out = {}
  for key, length in FIT_PARAMS.items():
    if key in param:
      out[f'smplx_{key}'] = _vector(param[key], length, where, f'smplx_param.{key}')
    elif key in FIT_REQUIRED:
      raise ValueError(f'{where}: missing smplx_param.{key!r}')
    else:
      out[f'smplx_{key}'] = np.zeros(length, np.float32)
  # upstream: process_human_model_output reads a part's flag only when its pose exists.
  flags = {'lhand': ('lhand_pose',), 'rhand': ('rhand_pose',), 'face': ('jaw_pose', 'expr')}
  for part, keys in flags.items():
    valid = False
    if all(k in param for k in keys):
      valid = bool(_field(param, f'{part}_valid', f'{where} smplx_param'))
    out[f'smplx_{part}_valid'] = np.float32(valid)
    if not valid:
      for k in keys:
        out[f'smplx_{k}'] = np.zeros_like(out[f'smplx_{k}'])
  out['smplx_valid'] = np.float32(1)
  gender = param.get('gender', 'neutral')
  if gender not in ex.GENDERS:
    raise ValueError(f'{where}: smplx_param.gender {gender!r} is not one of {ex.GENDERS}')
  out['smplx_gender'] = np.int32(ex.GENDERS.index(gender))
  out['cam_focal'] = _vector(_field(cam, 'focal', f'{where} cam_param'), 2, where, 'focal')
  out['cam_princpt'] = _vector(_field(cam, 'princpt', f'{where} cam_param'), 2, where,
                               'princpt')
  return out


def index_images(annot: dict, path) -> dict[int, dict]:
  """COCO `images` list -> {id: image} with file_name, width and height checked."""
  images = {}
  for img in _field(annot, 'images', str(path)):
    where = f'{path}: image {img.get("id")!r}'
    for key in ('id', 'file_name', 'width', 'height'):
      _field(img, key, where)
    images[int(img['id'])] = img
  return images


class MSCOCO:
  """upstream: MSCOCO(transform, data_split) as records.

  Args:
    data_root: the folder holding `MSCOCO/`.
    split: 'train' or 'test' (the val JSON; 'val' is accepted as an alias).
  """

  info = INFO

  def __init__(self, data_root, split: str = 'train'):
    if split == 'val':
      split = 'test'
    if split not in ANNOT_FILES:
      raise ValueError(f"MSCOCO: split must be 'train' or 'test' ('val'), got {split!r}")
    self.split = split
    root = Path(data_root) / 'MSCOCO'
    annot_path = root / 'annotations' / ANNOT_FILES[split]
    annot = db.read_json(annot_path)
    fits, fit_path = {}, root / 'annotations' / FIT_FILE
    if split == 'train':
      fits = db.read_json(fit_path)
      if not isinstance(fits, dict):
        raise ValueError(f'{fit_path}: expected an object of fits by annotation id')
    with db.malformed(annot_path, ' images'):
      images = index_images(annot, annot_path)
    image_dir = root / 'images' / IMAGE_DIRS[split]

    self.num_dropped = {'crowd': 0, 'no_keypoints': 0, 'degenerate_bbox': 0}
    keep = []
    seen = set()
    with db.malformed(annot_path, ' annotations'):
      annotations = list(_field(annot, 'annotations', str(annot_path)))
    for k, ann in enumerate(annotations):
      with db.malformed(annot_path, f' annotation #{k}'):
        self._keep(ann, split, images, image_dir, fits, annot_path, fit_path, seen, keep)
    if not keep:
      raise ValueError(f'{annot_path}: no annotation survives the filters ({self.num_dropped})')
    # Flat arrays, one row per kept annotation (no per-item dicts of JSON lists).
    self._img_paths = [k.pop('img_path') for k in keep]
    self._arrays = {key: np.stack([k[key] for k in keep]) for key in keep[0]}
    log.info('MSCOCO %s: %d annotations kept, dropped %s', split, len(keep), self.num_dropped)

  def _keep(self, ann, split, images, image_dir, fits, annot_path, fit_path, seen, keep):
    """upstream's filters for one annotation; appends its record to `keep` if it passes."""
    aid = ann.get('id') if isinstance(ann, dict) else None
    where = f'{annot_path}: annotation {aid!r}'
    aid = int(_field(ann, 'id', where))
    if aid in seen:
      raise ValueError(f'{where}: duplicate annotation id')
    seen.add(aid)
    img_id = int(_field(ann, 'image_id', where))
    where = f'{annot_path}: annotation {aid} (image {img_id})'
    if img_id not in images:
      raise ValueError(f'{where}: image_id not in the images list')
    if split == 'train':
      if _field(ann, 'iscrowd', where):
        self.num_dropped['crowd'] += 1
        return
      if _field(ann, 'num_keypoints', where) == 0:
        self.num_dropped['no_keypoints'] += 1
        return
    img = images[img_id]
    box = _field(ann, 'bbox', where)
    if len(box) != 4:
      raise ValueError(f'{where}: bbox has {len(box)} values, expected 4')
    height, width = db.image_shape(img, where)
    bbox = pre.process_bbox(box, width, height, where=f'{where} bbox')
    if bbox is None:
      self.num_dropped['degenerate_bbox'] += 1
      return
    keep.append(self._parse(ann, img, bbox, image_dir, fits, where, fit_path))

  def _parse(self, ann, img, bbox, image_dir, fits, where, fit_path) -> dict:
    rec = ex.empty_record(INFO.num_joints)
    rec['img_path'] = os.fspath(image_dir / img['file_name'])
    rec['img_shape'] = np.array(db.image_shape(img, where), np.int32)
    rec['bbox'] = np.asarray(bbox, np.float32)
    rec['ann_id'] = np.int64(ann['id'])
    rec['img_id'] = np.int64(ann['image_id'])
    for part, box_key, valid_key in BOX_KEYS:
      if _field(ann, valid_key, where):
        box = _vector(_field(ann, box_key, where), 4, where, box_key)
        rec[f'{part}_bbox'] = np.concatenate([box[:2], box[:2] + box[2:]])
        rec[f'{part}_bbox_valid'] = np.float32(1)
    if self.split == 'train':
      rec['joint_img'], rec['joint_valid'] = merge_joint(ann, where)
      entry = fits.get(str(ann['id']))
      if entry is not None:
        rec.update(parse_fit(entry, f'{fit_path}: annotation {ann["id"]}'))
    return rec

  def __len__(self) -> int:
    return len(self._img_paths)

  def __getitem__(self, i: int) -> dict:
    record = {key: value[i].copy() for key, value in self._arrays.items()}
    record['img_path'] = self._img_paths[i]
    return record


# ----------------------------------------------------------------------------- synthetic data

# Where each COCO-WholeBody point comes from among the 137 SMPL-X joint names.
_SOURCE_NAMES = (_BODY + _FEET + ('L_Wrist',) + tuple('L_' + n for n in _HAND)
                 + ('R_Wrist',) + tuple('R_' + n for n in _HAND) + _FACE)


def _wholebody_points(scene) -> np.ndarray:
  """(133, 2) COCO-WholeBody points (body, feet, hands, face) of a scene, pixels."""
  idx = [js.JOINT_IDX[js.JOINT_NAMES.index(n)] for n in _SOURCE_NAMES]
  return np.asarray(scene.joints_img, np.float64)[idx]


def _box_around(points: np.ndarray, margin: float) -> list[float]:
  lo, hi = points.min(axis=0), points.max(axis=0)
  pad = (hi - lo) * margin
  lo, hi = lo - pad, hi + pad
  return [float(v) for v in (lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])]


def _project(points_cam, scene) -> np.ndarray:
  return points_cam[:, :2] / points_cam[:, 2:] * scene.focal + scene.princpt


def _person(scene, k: int, rng) -> tuple[dict, Optional[dict]]:
  """One COCO-WholeBody person annotation (without ids) and its fit (or None).

  Variations by k: no fit when k % 4 == 2; the left hand is unannotated (box and
  fit flag) when k % 4 == 1; the right hand and the face fit flags are off when
  k % 4 == 3; Face_18 is unlabelled when k % 3 == 0 (the nose fill); the left
  hip is unlabelled when k == 5 (no pelvis).
  """
  points = _wholebody_points(scene)
  vis = np.full(len(points), 2.0)
  vis[rng.random(len(points)) < 0.1] = 1.0
  vis[3] = 0.0  # L_Ear: unlabelled in every person
  if k % 3 == 0:
    vis[17 + 6 + 42 + 30] = 0.0  # Face_18 (nose tip)
  if k == 5:
    vis[_BODY.index('L_Hip')] = 0.0
  lhand = slice(23, 44)
  rhand = slice(44, 65)
  lhand_valid = k % 4 != 1
  if not lhand_valid:
    vis[lhand] = 0.0
  kpts = np.concatenate([points, vis[:, None]], axis=1)
  kpts[vis == 0, :2] = 0.0
  kpts = np.round(kpts, 2)

  def flat(a):
    return [float(v) for v in a.reshape(-1)]

  verts_img = _project(np.asarray(scene.vertices_cam, np.float64), scene)
  ann = {
      'iscrowd': 0, 'category_id': 1, 'segmentation': [], 'area': 0.0,
      'bbox': _box_around(verts_img, 0.02),
      'num_keypoints': int((kpts[:17, 2] > 0).sum()),
      'keypoints': flat(kpts[:17]), 'foot_kpts': flat(kpts[17:23]),
      'lefthand_kpts': flat(kpts[lhand]), 'righthand_kpts': flat(kpts[rhand]),
      'face_kpts': flat(kpts[65:]),
      'lefthand_box': _box_around(points[lhand], 0.1) if lhand_valid else [0.0] * 4,
      'righthand_box': _box_around(points[rhand], 0.1),
      'face_box': _box_around(points[65:], 0.1),
      'lefthand_valid': lhand_valid, 'righthand_valid': True, 'face_valid': True,
      'foot_valid': True,
  }
  ann['area'] = ann['bbox'][2] * ann['bbox'][3]
  if k % 4 == 2:
    return ann, None
  p = scene.params
  fit = {
      'smplx_param': {key: [float(v) for v in np.asarray(p[key]).reshape(-1)]
                      for key in FIT_PARAMS},
      'cam_param': {'focal': [float(v) for v in scene.focal],
                    'princpt': [float(v) for v in scene.princpt]},
  }
  fit['smplx_param'].update(lhand_valid=bool(k % 4 != 1), rhand_valid=bool(k % 4 != 3),
                            face_valid=bool(k % 4 != 3))
  return ann, fit


def _dropped_annotations(scene) -> list[dict]:
  """Annotations the train filters remove: crowd, no keypoints, a zero-width box."""
  base, _ = _person(scene, 0, np.random.default_rng(0))
  crowd = dict(base, iscrowd=1)
  empty = dict(base, num_keypoints=0,
               **{key: [0.0] * (3 * n) for key, n in KEYPOINT_KEYS})
  degenerate = dict(base, bbox=[base['bbox'][0], base['bbox'][1], 0.0, base['bbox'][3]])
  return [crowd, empty, degenerate]


def write_synthetic(data_root, human_model_path, *, num: int = 8, seed: int = 0) -> Path:
  """Write a mini MSCOCO: `num` train images and num // 2 val images, one person each.

  Each split also gets the three annotations its filters drop (crowd, no
  keypoints, zero-width box) on its first images; the train split keeps
  `num` people, the val split num // 2 + 2 (it keeps crowd and keypoint-less
  annotations, as upstream's test mode does). Fits go to every train person
  except k % 4 == 2.
  """
  root = Path(data_root) / 'MSCOCO'
  num_val = max(1, num // 2)
  scenes = synthetic.render_scenes(human_model_path, num + num_val, seed=seed)
  rng = np.random.default_rng(seed + 1)
  (root / 'annotations').mkdir(parents=True, exist_ok=True)
  fits = {}
  for split, split_scenes, first_id in (('train', scenes[:num], 1),
                                        ('test', scenes[num:], 100001)):
    image_dir = root / 'images' / IMAGE_DIRS[split]
    image_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    aid = 10 * first_id
    for k, scene in enumerate(split_scenes):
      img_id = first_id + k
      file_name = f'{img_id:012d}.jpg'
      cv2.imwrite(os.fspath(image_dir / file_name), scene.image[:, :, ::-1],
                  [cv2.IMWRITE_JPEG_QUALITY, 95])
      height, width = scene.image_shape
      images.append({'id': img_id, 'file_name': file_name, 'width': width, 'height': height,
                     'license': 1, 'coco_url': '', 'flickr_url': '', 'date_captured': ''})
      ann, fit = _person(scene, k, rng)
      extra = _dropped_annotations(scene) if k == 1 else []
      for a in [ann] + extra:
        aid += 1
        anns.append(dict(a, id=aid, image_id=img_id))
      if fit is not None and split == 'train':
        fits[str(anns[-1 - len(extra)]['id'])] = fit
    annot = {'info': {'description': 'synthetic COCO-WholeBody v1.0'}, 'licenses': [],
             'images': images, 'annotations': anns,
             'categories': [{'id': 1, 'name': 'person', 'supercategory': 'person'}]}
    with open(root / 'annotations' / ANNOT_FILES[split], 'w') as f:
      json.dump(annot, f)
  with open(root / 'annotations' / FIT_FILE, 'w') as f:
    json.dump(fits, f)
  return root
