"""FreiHAND: right hands with MANO fits (3D set of the hand-only stage 2).

upstream: data/FreiHAND/FreiHAND.py (branch Pose2Pose). Files under `data_root/FreiHAND/`:

  data/freihand_{train,eval}_coco.json   COCO: images (id, file_name, width, height,
                                         db_idx), annotations (id, image_id, bbox xywh)
  data/freihand_{train,eval}_data.json   {str(db_idx): {'cam_param': {focal (2), princpt (2)},
                                         'mano_param': {pose (48), shape (10), trans (3) m}}}
                                         (the eval file needs only cam_param)
  data/<file_name>                       the images
  rootnet_output/bbox_root_freihand_output.json   (test) [{image_id, bbox xywh, root_cam (3)}]

Splits: 'train' keeps every annotation whose box `process_bbox` (aspect 1, x1.25)
accepts, with its fit in the camera frame (no extrinsics) and hand_type 'right'
(never mirrored). FreiHAND trains only the MANO terms: its records have no
joints (upstream's zero joint targets with zero masks). 'test' ('eval') takes
RootNet's box as stored (already square and extended, upstream skips
process_bbox) and keeps the RootNet root depth (`root_depth`, unused by the
evaluation, as upstream's commented-out positional evaluation). Records carry
`db_idx`: the sample's index in the official evaluation set, where
FreiHAND_pub_v2_eval's evaluation_{xyz,verts}.json hold its ground truth.

Deviations, in error paths only: a missing db_idx entry, camera or fit field,
or a box without a RootNet entry raises ValueError naming the file and the
annotation id (upstream: KeyError).
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
from h4w_datasets.mscoco import index_images

log = logging.getLogger(__name__)

INFO = hx.HandDatasetInfo(name='FreiHAND', is_3d=True, has_joints=False)
SPLIT_FILES = {'train': 'train', 'test': 'eval'}
ROOTNET_FILE = Path('rootnet_output') / 'bbox_root_freihand_output.json'
# The official evaluation set's ground truth (FreiHAND_pub_v2_eval), read by eval.py.
EVAL_GT_DIR = 'FreiHAND_pub_v2_eval'
EVAL_GT_FILES = ('evaluation_xyz.json', 'evaluation_verts.json')


def record_from(img_path, img_shape, bbox, cam_param, mano_param, ann_id, img_id, db_idx,
                where: str) -> dict:
  """One FreiHAND sample as a hand record (right hand, camera-frame fit or None)."""
  rec = hx.empty_record()
  rec['img_path'] = os.fspath(img_path)
  rec['img_shape'] = np.asarray(img_shape, np.int32)
  rec['bbox'] = np.asarray(bbox, np.float32)
  rec.update(hx.camera_fields(cam_param, where))
  rec.update(hx.mano_fit_fields(mano_param, where))
  rec['ann_id'], rec['img_id'] = np.int64(ann_id), np.int64(img_id)
  rec['db_idx'] = np.int64(db_idx)
  return rec


class FreiHAND:
  """upstream: FreiHAND(transform, data_split) as records.

  Args:
    data_root: the folder holding `FreiHAND/`.
    split: 'train' or 'test' ('eval' is an alias).
  """

  info = INFO

  def __init__(self, data_root, split: str = 'train'):
    split = 'test' if split == 'eval' else split
    if split not in SPLIT_FILES:
      raise ValueError(f"FreiHAND: split must be 'train' or 'test' ('eval'), got {split!r}")
    self.split = split
    root = Path(data_root) / 'FreiHAND'
    data_dir = root / 'data'
    coco_path = data_dir / f'freihand_{SPLIT_FILES[split]}_coco.json'
    data_path = data_dir / f'freihand_{SPLIT_FILES[split]}_data.json'
    annot = read_json(coco_path)
    data = read_json(data_path)
    images = index_images(annot, coco_path)
    boxes = {}
    if split == 'test':
      rootnet_path = root / ROOTNET_FILE
      for k, entry in enumerate(read_json(rootnet_path)):
        where = f'{rootnet_path} entry {k}'
        boxes[str(hx.field(entry, 'image_id', where))] = (
            hx.as_array(hx.field(entry, 'bbox', where), (4,), where, 'bbox'),
            hx.as_array(hx.field(entry, 'root_cam', where), (3,), where, 'root_cam'))

    self.num_dropped = {'degenerate_bbox': 0}
    rows, seen = [], set()
    anns = annot.get('annotations') if isinstance(annot, dict) else None
    if not isinstance(anns, list):
      raise ValueError(f'{coco_path}: no annotations list')
    for ann in anns:
      ann_id, img, where = checked_annotation(ann, images, coco_path, seen)
      db_idx = str(hx.field(img, 'db_idx', f'{coco_path} image {ann["image_id"]}'))
      entry = data.get(db_idx) if isinstance(data, dict) else None
      if entry is None:
        raise ValueError(f'{where}: db_idx {db_idx} has no entry in {data_path}')
      img_path = data_dir / img['file_name']
      img_shape = (img['height'], img['width'])
      where = f'{data_path} db_idx {db_idx} ({coco_path} annotation {ann_id})'
      cam = hx.field(entry, 'cam_param', where)
      if split == 'train':
        hx.as_array(ann['bbox'], (4,), where, 'bbox')
        # upstream: process_bbox(np.array(ann['bbox'])): float64 maths (int boxes truncate)
        bbox = ht.process_bbox(np.array(ann['bbox']), img['width'], img['height'])
        if bbox is None:
          self.num_dropped['degenerate_bbox'] += 1
          continue
        rows.append(record_from(img_path, img_shape, bbox, cam,
                                hx.field(entry, 'mano_param', where), ann_id, ann['image_id'],
                                db_idx, where))
      else:
        key = str(ann['image_id'])
        if key not in boxes:
          raise ValueError(f'{where}: image {key} has no box in {root / ROOTNET_FILE}')
        bbox, root_cam = boxes[key]
        rec = record_from(img_path, img_shape, bbox, cam, None, ann_id, ann['image_id'],
                          db_idx, where)
        rec['root_depth'] = np.float32(root_cam[2] / 1000)
        rows.append(rec)
    self._table = hx.RecordTable(rows, str(coco_path))
    log.info('FreiHAND %s: %d records, dropped %s', split, len(rows), self.num_dropped)

  def __len__(self) -> int:
    return len(self._table)

  def __getitem__(self, i: int) -> dict:
    return self._table[i]

  @property
  def db_idx(self) -> np.ndarray:
    return self._table.column('db_idx')


# ----------------------------------------------------------------------------- synthetic data

SYNTHETIC_IMAGE_SHAPE = (224, 224)   # FreiHAND's image size


def _coco(images, anns):
  return {'info': {'description': 'synthetic FreiHAND (h4w_datasets)'}, 'images': images,
          'annotations': anns, 'categories': [{'id': 1, 'name': 'hand'}]}


def write_synthetic(data_root, human_model_path, *, num: int = 8, seed: int = 0) -> Path:
  """A mini FreiHAND: `num` train and num // 2 evaluation images of rendered right hands.

  Train: camera-frame MANO fits and COCO boxes around the projected mesh (one
  degenerate box that the reader drops goes to an extra annotation of image 0).
  Eval: RootNet-style boxes (square, x1.25 about the projected joints), and the
  official ground-truth files evaluation_xyz.json / evaluation_verts.json (metres,
  the regressor's 21 joints and the 778 vertices, by db_idx) in FreiHAND_pub_v2_eval/.
  """
  root = Path(data_root) / 'FreiHAND'
  data_dir = root / 'data'
  (data_dir / 'training').mkdir(parents=True, exist_ok=True)
  (data_dir / 'evaluation').mkdir(parents=True, exist_ok=True)
  num_eval = max(1, num // 2)
  scenes = sh.render_hand_scenes(human_model_path, ['right'] * (num + num_eval), seed=seed,
                                 image_shape=SYNTHETIC_IMAGE_SHAPE)
  for split, split_scenes, folder in (('train', scenes[:num], 'training'),
                                      ('eval', scenes[num:], 'evaluation')):
    images, anns, data, rootnet = [], [], {}, []
    xyz, verts = [], []
    for k, scene in enumerate(split_scenes):
      img_id = k + 1
      file_name = f'{folder}/rgb/{k:08d}.jpg'
      (data_dir / file_name).parent.mkdir(parents=True, exist_ok=True)
      cv2.imwrite(os.fspath(data_dir / file_name), scene.image[:, :, ::-1],
                  [cv2.IMWRITE_JPEG_QUALITY, 95])
      height, width = scene.image_shape
      images.append({'id': img_id, 'file_name': file_name, 'width': width, 'height': height,
                     'db_idx': k})
      box = sh.box_around(scene.vertices_img, 0.05)
      anns.append({'id': img_id, 'image_id': img_id, 'bbox': box, 'area': box[2] * box[3],
                   'iscrowd': 0, 'category_id': 1})
      entry = {'cam_param': {'focal': scene.focal.tolist(), 'princpt': scene.princpt.tolist()}}
      if split == 'train':
        entry['mano_param'] = {key: np.asarray(v).reshape(-1).tolist()
                               for key, v in scene.params.items()}
        if k == 0:   # an annotation whose box process_bbox rejects (zero width)
          anns.append({'id': 1000, 'image_id': img_id, 'bbox': [box[0], box[1], 0.0, box[3]],
                       'area': 0.0, 'iscrowd': 0, 'category_id': 1})
      else:
        square = ht.process_bbox(sh.box_around(scene.joints_img, 0.0), width, height)
        rootnet.append({'image_id': img_id, 'bbox': square.tolist(),
                        'root_cam': (scene.joints_cam[0] * 1000).tolist()})
        xyz.append(scene.joints_cam.tolist())
        verts.append(scene.vertices_cam.tolist())
      data[str(k)] = entry
    sh.write_json(data_dir / f'freihand_{split}_coco.json', _coco(images, anns))
    sh.write_json(data_dir / f'freihand_{split}_data.json', data)
    if split == 'eval':
      sh.write_json(root / ROOTNET_FILE, rootnet)
      sh.write_json(root / EVAL_GT_DIR / EVAL_GT_FILES[0], xyz)
      sh.write_json(root / EVAL_GT_DIR / EVAL_GT_FILES[1], verts)
  return root
