"""MSCOCO hands: COCO-WholeBody hand keypoints and boxes with NeuralAnnot MANO fits (2D set).

upstream: data/MSCOCO/MSCOCO.py with `cfg.parts == 'hand'` (branch Pose2Pose), the
2D set of the hand-only stage 2. The registry gives this reader for 'MSCOCO' when
the task is 'hand' (configs/stage2_hand.py). Files under `data_root/MSCOCO/`:

  annotations/coco_wholebody_{train,val}_v1.0.json   COCO-WholeBody v1.0: per person
      lefthand_valid / righthand_valid (bool), lefthand_box / righthand_box (xywh),
      lefthand_kpts / righthand_kpts (21 x 3: x, y, score; MANO's joint order)
  annotations/MSCOCO_train_MANO_NeuralAnnot.json
      {str(ann_id): {'left'|'right': {'mano_param': {pose (48), shape (10), trans (3) m},
       'cam_param': {focal (2), princpt (2)}} or null}}, fits in the camera frame
  images/{train2017,val2017}/<file_name>

'train': for each annotation and each hand ('left' first, then 'right', as
upstream): skipped when `*hand_valid` is False or `process_bbox` (aspect 1,
x1.25) rejects the box; no crowd or keypoint-count filter; joint_valid =
(score > 0), z = 0. 'test' ('val'): every annotation and hand ('right' first)
with a box process_bbox accepts, without validity check (upstream's test
items carry no joints and no fit).

Fixed (upstream crashes, SPEC_STAGE2 B3): a hand whose fit is null, or an
annotation the fit file does not list (upstream: KeyError at load, TypeError in
__getitem__), is a record without a fit: its MANO targets and masks are 0 (as
InterHand2.6M's hands without a fit); `num_without_fit` counts them.
Malformed input (a missing field, a keypoint list of the wrong length) raises
ValueError naming the file and the annotation id.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from h4w_datasets import hand_example as hx
from h4w_datasets import hand_transforms as ht
from h4w_datasets import synthetic_hands as sh
from h4w_datasets.human36m import checked_annotation, read_json
from h4w_datasets.mscoco import ANNOT_FILES, IMAGE_DIRS, index_images

log = logging.getLogger(__name__)

INFO = hx.HandDatasetInfo(name='MSCOCO', is_3d=False)
FIT_FILE = 'MSCOCO_train_MANO_NeuralAnnot.json'
HAND_ORDER = {'train': ('left', 'right'), 'test': ('right', 'left')}


def record_from(img_path, img_shape, bbox, keypoints, fit_entry, hand_type: str, ann_id,
                img_id, where: str) -> dict:
  """One hand as a record: keypoints (21, 3) (x, y, score) or None (test), the
  NeuralAnnot entry {'mano_param', 'cam_param'} or None."""
  rec = hx.empty_record()
  rec['img_path'] = os.fspath(img_path)
  rec['img_shape'] = np.asarray(img_shape, np.int32)
  rec['bbox'] = np.asarray(bbox, np.float32)
  if keypoints is not None:
    joint_img = hx.as_array(keypoints, (hx.NUM_JOINTS, 3), where, f'{hand_type}hand_kpts').copy()
    rec['joint_valid'] = (joint_img[:, 2:].copy() > 0).astype(np.float32)
    joint_img[:, 2] = 0
    rec['joint_img'] = joint_img
  if fit_entry is not None:
    rec.update(hx.mano_fit_fields(hx.field(fit_entry, 'mano_param', where), where))
    rec.update(hx.camera_fields(hx.field(fit_entry, 'cam_param', where), where))
  rec['is_left'] = np.float32(hand_type == 'left')
  rec['ann_id'], rec['img_id'] = np.int64(ann_id), np.int64(img_id)
  return rec


class MSCOCO:
  """upstream: MSCOCO(transform, data_split) with cfg.parts == 'hand', as records.

  Args:
    data_root: the folder holding `MSCOCO/`.
    split: 'train' or 'test' ('val' is an alias).
  """

  info = INFO

  def __init__(self, data_root, split: str = 'train'):
    split = 'test' if split == 'val' else split
    if split not in ANNOT_FILES:
      raise ValueError(f"MSCOCO (hands): split must be 'train' or 'test' ('val'), got {split!r}")
    self.split = split
    root = Path(data_root) / 'MSCOCO'
    annot_path = root / 'annotations' / ANNOT_FILES[split]
    annot = read_json(annot_path)
    fit_path = root / 'annotations' / FIT_FILE
    fits = read_json(fit_path) if split == 'train' else {}
    images = index_images(annot, annot_path)
    image_dir = root / 'images' / IMAGE_DIRS[split]

    self.num_dropped = {'invalid_hand': 0, 'degenerate_bbox': 0}
    self.num_without_fit = 0
    rows, seen = [], set()
    anns = annot.get('annotations') if isinstance(annot, dict) else None
    if not isinstance(anns, list):
      raise ValueError(f'{annot_path}: no annotations list')
    for ann in anns:
      ann_id, img, where = checked_annotation(ann, images, annot_path, seen)
      for hand_type in HAND_ORDER[split]:
        hand_where = f'{where} {hand_type} hand'
        if split == 'train' and hx.field(ann, f'{hand_type}hand_valid', hand_where) is False:
          self.num_dropped['invalid_hand'] += 1
          continue
        box = hx.field(ann, f'{hand_type}hand_box', hand_where)
        hx.as_array(box, (4,), hand_where, f'{hand_type}hand_box')
        # upstream passes the JSON list: float64 maths, integer boxes truncate (Q2 of main)
        bbox = ht.process_bbox(box, img['width'], img['height'])
        if bbox is None:
          self.num_dropped['degenerate_bbox'] += 1
          continue
        keypoints, fit = None, None
        if split == 'train':
          keypoints = hx.field(ann, f'{hand_type}hand_kpts', hand_where)
          entry = fits.get(str(ann_id)) if isinstance(fits, dict) else None
          fit = entry.get(hand_type) if isinstance(entry, dict) else None
          self.num_without_fit += fit is None
        rows.append(record_from(image_dir / img['file_name'], (img['height'], img['width']),
                                bbox, keypoints, fit, hand_type, ann_id, ann['image_id'],
                                f'{hand_where} ({fit_path})' if fit else hand_where))
    self._table = hx.RecordTable(rows, str(annot_path))
    log.info('MSCOCO hands %s: %d records (%d without a MANO fit), dropped %s', split,
             len(rows), self.num_without_fit, self.num_dropped)

  def __len__(self) -> int:
    return len(self._table)

  def __getitem__(self, i: int) -> dict:
    return self._table[i]


# ----------------------------------------------------------------------------- synthetic data

SYNTHETIC_IMAGE_SHAPE = (240, 320)


def _hand_fields(scene, rng, valid: bool) -> dict:
  kpts = np.concatenate([scene.joints_img, np.full((21, 1), 2.0)], axis=1)
  kpts[rng.random(21) < 0.15, 2] = 0.0
  kpts[kpts[:, 2] == 0, :2] = 0.0
  return {'kpts': np.round(kpts, 2).reshape(-1).tolist(),
          'box': sh.box_around(scene.vertices_img, 0.1), 'valid': valid}


def write_synthetic(data_root, human_model_path, *, num: int = 8, seed: int = 0) -> Path:
  """A mini MSCOCO for the hand model: `num` train and num // 2 val images, one person
  annotation each with a rendered right and left hand (COCO-WholeBody fields; the body
  fields are placeholders). Variations by image k: the left hand is unannotated
  (lefthand_valid False) when k % 4 == 1; the right hand's fit is null when k % 4 == 2;
  the annotation is missing from the fit file when k % 4 == 3 (both without a fit).
  """
  root = Path(data_root) / 'MSCOCO'
  num_val = max(1, num // 2)
  images_hands = sh.render_hand_images(human_model_path, [['right', 'left']] * (num + num_val),
                                       seed=seed, image_shape=SYNTHETIC_IMAGE_SHAPE,
                                       focal_range=(2.4, 3.0))
  rng = np.random.default_rng(seed + 3)
  fits = {}
  for split, chunk, first_id in (('train', images_hands[:num], 1),
                                 ('test', images_hands[num:], 100001)):
    image_dir = root / 'images' / IMAGE_DIRS[split]
    image_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for k, hands in enumerate(chunk):
      img_id = first_id + k
      file_name = f'{img_id:012d}.jpg'
      cv2.imwrite(os.fspath(image_dir / file_name), hands[0].image[:, :, ::-1],
                  [cv2.IMWRITE_JPEG_QUALITY, 95])
      height, width = hands[0].image_shape
      images.append({'id': img_id, 'file_name': file_name, 'width': width, 'height': height})
      ann = {'id': 10 * img_id, 'image_id': img_id, 'iscrowd': 0, 'category_id': 1,
             'num_keypoints': 0, 'keypoints': [0.0] * 51, 'foot_kpts': [0.0] * 18,
             'face_kpts': [0.0] * 204, 'face_box': [0.0] * 4, 'face_valid': False,
             'foot_valid': False}
      people_boxes = []
      entry = {}
      for scene in hands:
        side = scene.hand_type
        valid = not (side == 'left' and k % 4 == 1)
        fields = _hand_fields(scene, rng, valid)
        if not valid:
          fields = {'kpts': [0.0] * 63, 'box': [0.0] * 4, 'valid': False}
        ann[f'{side}hand_kpts'] = fields['kpts']
        ann[f'{side}hand_box'] = fields['box']
        ann[f'{side}hand_valid'] = fields['valid']
        people_boxes.append(sh.box_around(scene.vertices_img, 0.2))
        fit = {'mano_param': {key: np.asarray(v).reshape(-1).tolist()
                              for key, v in scene.params.items()},
               'cam_param': {'focal': scene.focal.tolist(), 'princpt': scene.princpt.tolist()}}
        entry[side] = None if (side == 'right' and k % 4 == 2) else fit
      lo = np.min([b[:2] for b in people_boxes], 0)
      hi = np.max([np.add(b[:2], b[2:]) for b in people_boxes], 0)
      ann['bbox'] = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
      ann['area'] = ann['bbox'][2] * ann['bbox'][3]
      anns.append(ann)
      if split == 'train' and k % 4 != 3:
        fits[str(ann['id'])] = entry
    sh.write_json(root / 'annotations' / ANNOT_FILES[split],
                  {'info': {'description': 'synthetic COCO-WholeBody hands (h4w_datasets)'},
                   'licenses': [], 'images': images, 'annotations': anns,
                   'categories': [{'id': 1, 'name': 'person'}]})
  sh.write_json(root / 'annotations' / FIT_FILE, fits)
  return root
